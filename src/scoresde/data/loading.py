"""Loading by name and batching: get_dataset dispatches on a data-set name; batches is a seeded batch iterator."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from .arrays import load_array
from .base import DATASET_NAMES, SPLITS, TOY_NAMES, DataError, _gen
from .image_files import celeba, hf_dataset, image_folder
from .images import cifar10, fashion_mnist, mnist, mnist5k, sklearn_digits
from .toys import toy_data
from .transforms import convert_channels, random_flip, resize_images, split_indices

__all__ = ["get_dataset", "batches"]


def _take(x: Tensor, y: Tensor | None, idx: Tensor) -> tuple[Tensor, Tensor | None]:
    return x[idx], (y[idx] if y is not None else None)


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
        # train, test and all are independent draws: generator seeds seed + 1_000_003 * (0, 1, 2)
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
