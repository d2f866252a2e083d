"""2-D toy data sets: toy_data draws seeded points of gmm, swiss_roll, moons, checkerboard and rings."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import TOY_NAMES, DataError, _gen

__all__ = ["RING_RADII", "toy_data"]

RING_RADII = (0.25, 0.5, 0.75, 1.0)
GMM_MODES, GMM_RADIUS, GMM_STD = 8, 1.0, 0.05


def _gmm8(std: float) -> tuple[Tensor, Tensor, Tensor]:
    """Weights, means and stds (float64) of the 8-mode ring: modes k at angle 2 pi k / 8 on the circle of
    radius 1, weights alternating 1/6 and 1/12, every std ``std`` - the mixture of
    ``scoresde.exact.load_problem("gmm8")``, built here without the SDE machinery."""
    w = torch.tensor([1 / 6, 1 / 12] * (GMM_MODES // 2), dtype=torch.float64)
    ang = torch.arange(GMM_MODES, dtype=torch.float64) * 2 * math.pi / GMM_MODES
    means = GMM_RADIUS * torch.stack([torch.cos(ang), torch.sin(ang)], -1)
    return w / w.sum(), means, torch.full((GMM_MODES,), float(std), dtype=torch.float64)


def _sample_gmm(n: int, std: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` points and their modes: the mode from the weights, then isotropic Gaussian noise (float64)."""
    weights, means, stds = _gmm8(std)
    k = torch.multinomial(weights, n, replacement=True, generator=g)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return means[k] + stds[k, None] * z, k


def toy_data(name: str, n: int, generator: torch.Generator | None = None, *, noise: float | None = None,
             return_labels: bool = False, dtype: torch.dtype = torch.float32) -> Tensor | tuple[Tensor, Tensor]:
    """Draw ``n`` points of a 2-D toy distribution, scaled to roughly [-1, 1]^2.

    * ``gmm``: 8 modes on the unit circle, weights alternating 1/6 and 1/12, std 0.05 (the same mixture
      as ``scoresde.exact.load_problem("gmm8")``); labels = mode;
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
        x, y = _sample_gmm(n, GMM_STD if noise is None else noise, g)
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
