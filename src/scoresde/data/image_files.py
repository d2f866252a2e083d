"""Image data sets decoded from picture files with PIL: image_folder, celeba and hf_dataset (Hugging Face)."""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .base import SPLITS, DataError
from .transforms import split_indices

__all__ = ["IMAGE_EXTENSIONS", "image_folder", "celeba", "hf_dataset"]


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def _list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _fit_image(im, resolution: int | None, channels: int, crop: int | None) -> np.ndarray:
    """A PIL image as uint8 (C, H, W): converted, optionally centre-cropped to ``crop`` then resized so
    the shorter side is ``resolution`` and centre-cropped to a square."""
    from PIL import Image

    im = im.convert("RGB" if channels == 3 else "L")
    if crop is not None:  # score_sde_pytorch's CelebA central crop, before resizing
        w, h = im.size
        c = min(crop, w, h)
        left, top = (w - c) // 2, (h - c) // 2
        im = im.crop((left, top, left + c, top + c))
    if resolution is not None:
        w, h = im.size
        s = resolution / min(w, h)
        nw, nh = max(resolution, round(w * s)), max(resolution, round(h * s))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.Resampling.BILINEAR)  # PIL's resize is antialiased
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
        im = im.crop((left, top, left + resolution, top + resolution))
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _load_image(path: Path, resolution: int | None, channels: int, crop: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _fit_image(im, resolution, channels, crop)
    except OSError as e:
        raise DataError(f"cannot read image {path} ({e})") from None


def _stack_images(paths: Sequence[Path], resolution: int | None, channels: int, crop: int | None,
                  what: str) -> Tensor:
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    arrays = [_load_image(p, resolution, channels, crop) for p in paths]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        sizes = ", ".join(f"{h}x{w}" for _, h, w in sorted(shapes)[:3])
        raise DataError(f"{what}: images have different sizes ({sizes}{', ...' if len(shapes) > 3 else ''}); "
                        f"pass resolution= to resize and centre-crop them")
    if not arrays:
        return torch.zeros(0, channels, resolution or 0, resolution or 0)
    return torch.from_numpy(np.stack(arrays).astype(np.float32) / 255.0)


def image_folder(root: str | Path | None, split: str = "all", resolution: int | None = None, *,
                 channels: int = 3, test_fraction: float = 0.1, seed: int = 0, limit: int | None = None,
                 ) -> tuple[Tensor, Tensor | None]:
    """All ``*.png/*.jpg/*.jpeg/*.bmp`` files under ``root`` (recursively, in sorted order).

    If every image lies inside a first-level subfolder, the subfolders are classes: labels are indices
    into their sorted names; otherwise labels are ``None``. With ``resolution`` each image's shorter side
    is resized to it and the centre square cropped; without, all images must share one size.
    ``channels`` 3 reads RGB, 1 grayscale. ``split`` picks a seeded (stratified) part before any image
    is decoded; ``limit`` keeps the first ``limit`` files of that part.
    """
    if root is None:
        raise DataError("folder needs root=<folder of .png/.jpg/.jpeg/.bmp images, optionally in class subfolders>")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; put .png/.jpg/.jpeg/.bmp images there "
                        f"(optionally in one subfolder per class)")
    paths = _list_images(root)
    if not paths:
        raise DataError(f"no .png/.jpg/.jpeg/.bmp images found under {root}")
    rel = [p.relative_to(root).parts for p in paths]
    labels = None
    if all(len(r) >= 2 for r in rel):
        classes = sorted({r[0] for r in rel})
        labels = torch.tensor([classes.index(r[0]) for r in rel], dtype=torch.int64)
    if split == "all":
        idx = torch.arange(len(paths))  # a folder read whole keeps its sorted order
    else:
        idx = split_indices(len(paths), split, test_fraction, seed, labels=labels)
    if limit is not None:
        idx = idx[:limit]
    x = _stack_images([paths[i] for i in idx.tolist()], resolution, channels, None, str(root))
    return x, (labels[idx] if labels is not None else None)


def _celeba_partition(root: Path) -> dict[str, int] | None:
    for p in (root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt",
              root.parent / "list_eval_partition.txt"):
        if p.is_file():
            out = {}
            for line in p.read_text().split("\n"):
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    out[parts[0]] = int(parts[1])
            return out
    return None


def celeba(root: str | Path | None, split: str = "train", resolution: int = 64, *, crop: int = 140,
           test_fraction: float = 0.1, seed: int = 0, limit: int | None = None) -> tuple[Tensor, None]:
    """CelebA from its aligned JPEGs: ``root/img_align_celeba/*.jpg`` (or the JPEGs in ``root``).

    As in score_sde_pytorch, each 178x218 image is centre-cropped to ``crop`` (140) pixels and then resized
    to ``resolution``. If ``list_eval_partition.txt`` is next to the images, its official split is used
    (train = 0, test = 2); otherwise a seeded split. Returns (N, 3, R, R) in [0, 1] and no labels.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    where = "<root>/img_align_celeba/*.jpg"
    if root is None:
        raise DataError(f"celeba needs root=<folder> holding {where}")
    root = Path(root)
    d = root / "img_align_celeba"
    d = d / "img_align_celeba" if (d / "img_align_celeba").is_dir() else d  # the Kaggle zip nests it
    if not d.is_dir():
        d = root
    if not root.is_dir() or not (paths := _list_images(d)):
        raise DataError(f"celeba: no images found in {root / 'img_align_celeba'}; put the aligned JPEGs in {where}")
    part = _celeba_partition(root)
    if part is not None and split != "all":
        want = 0 if split == "train" else 2
        paths = [p for p in paths if part.get(p.name, -1) == want]
    elif split != "all":
        paths = [paths[i] for i in split_indices(len(paths), split, test_fraction, seed).tolist()]
    if limit is not None:
        paths = paths[:limit]
    return _stack_images(paths, resolution, 3, crop, str(d)), None


def hf_dataset(path: str | Path | None, split: str = "train", resolution: int | None = None, *,
               channels: int = 3, image_key: str | None = None, label_key: str | None = None,
               test_fraction: float = 0.1, seed: int = 0, limit: int | None = None) -> tuple[Tensor, Tensor | None]:
    """A Hugging Face data set saved with ``save_to_disk``, read by ``datasets.load_from_disk`` only.

    Nothing touches the network (offline mode is switched on before the import). A DatasetDict is
    indexed by ``split`` ("all" concatenates its parts); a single Dataset is split with a seed. The
    image column is ``image_key`` or the first of image/img/pixel_values; labels from label/labels.
    """
    if path is None:
        raise DataError("hf needs root=<folder written by datasets' save_to_disk>")
    path = Path(path)
    if not path.exists():
        raise DataError(f"hf: {path} does not exist; save the data set there with datasets' save_to_disk")
    import os

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        datasets = importlib.import_module("datasets")
    except ImportError:
        raise DataError("reading a Hugging Face data set needs the datasets package: pip install datasets") from None
    try:
        obj = datasets.load_from_disk(str(path))
    except Exception as e:  # the library raises many kinds; report them as one
        raise DataError(f"hf: cannot load {path} with datasets.load_from_disk ({type(e).__name__}: {e})") from None
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    parts, pre_split = [obj], False
    if isinstance(obj, dict) or (hasattr(obj, "keys") and not hasattr(obj, "column_names")):
        names = list(obj.keys())
        if split == "all":
            parts = [obj[k] for k in names]
        elif split in names:
            parts = [obj[split]]
        else:
            raise DataError(f"hf: {path} has splits {', '.join(names)}, not {split!r}")
        pre_split = True
    images, labels = [], []
    for ds in parts:
        cols = list(ds.column_names)
        ik = image_key or next((k for k in ("image", "img", "pixel_values") if k in cols), None)
        if ik is None or ik not in cols:
            raise DataError(f"hf: no image column in {path} (columns {', '.join(cols)}); pass image_key=")
        lk = label_key or next((k for k in ("label", "labels") if k in cols), None)
        images += list(ds[ik])
        if lk is not None:
            labels += [int(v) for v in ds[lk]]
    y = torch.tensor(labels, dtype=torch.int64) if len(labels) == len(images) and labels else None
    idx = torch.arange(len(images)) if pre_split else split_indices(len(images), split, test_fraction, seed, y)
    if limit is not None:
        idx = idx[:limit]
    arrays = [_hf_image(images[i], resolution, channels) for i in idx.tolist()]
    if len({a.shape for a in arrays}) > 1:
        raise DataError(f"hf: images in {path} have different sizes; pass resolution=")
    x = torch.from_numpy(np.stack(arrays).astype(np.float32) / 255.0) if arrays else torch.zeros(0, channels, 0, 0)
    return x, (y[idx] if y is not None else None)


def _hf_image(item, resolution: int | None, channels: int) -> np.ndarray:
    from PIL import Image

    if not isinstance(item, Image.Image):  # an array (H, W), (H, W, C) or (C, H, W)
        a = np.asarray(item)
        if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
            a = a.transpose(1, 2, 0)
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(a * 255.0 if a.max() <= 1.0 else a, 0, 255).round()
        item = Image.fromarray(a.astype(np.uint8).squeeze())
    return _fit_image(item, resolution, channels, None)
