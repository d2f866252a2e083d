"""Small tensor helpers shared by every module."""
from __future__ import annotations

import torch
from torch import Tensor


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so a per-sample vector broadcasts against an ndim tensor."""
    if v.ndim > ndim:
        raise ValueError(f"cannot broadcast a {v.ndim}-d tensor to {ndim} dims")
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def like(v: Tensor, x: Tensor) -> Tensor:
    """Broadcast a per-sample (or scalar) coefficient against x, in x's dtype and device."""
    return append_dims(v.to(device=x.device, dtype=x.dtype), x.ndim)


def as_time(t: Tensor | float, x: Tensor) -> Tensor:
    """Return t as a float64 per-sample vector of shape (batch,), on x's device."""
    t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
    return t


def flat_norm(x: Tensor) -> Tensor:
    """Per-sample Euclidean norm over all non-batch dims."""
    return x.reshape(x.shape[0], -1).norm(dim=-1)
