"""Splits and image transforms: split_indices, resize_images, convert_channels, scale, unscale, random_flip."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from .base import SPLITS, DataError

__all__ = ["split_indices", "resize_images", "convert_channels", "scale", "unscale", "random_flip"]


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
    """Map data in [0, 1] to the model's range: "[-1,1]" (x -> 2x - 1, score_sde_pytorch's centred data) or "[0,1]"."""
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
