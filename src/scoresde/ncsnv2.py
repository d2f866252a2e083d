"""NCSNv2's rules for choosing the noise levels and the Langevin step size from the data (Song & Ermon 2020).

* Technique 1 (initial noise scale): sigma_1 = the largest Euclidean distance between two training points.
* Technique 2 (other noise scales): a geometric sequence sigma_i = sigma_1 gamma^-(i-1) whose ratio gamma
  satisfies Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) = 0.5 (D: data dimension).
* Technique 4 (step size): annealed Langevin with alpha_i = eps sigma_i^2 / sigma_L^2 and T steps per level,
  eps chosen so that f(eps) = (1 - eps/sigma_L^2)^(2T) (gamma^2 - 2 eps / (sigma_L^2 - sigma_L^2 (1 - eps/sigma_L^2)^2))
  + 2 eps / (sigma_L^2 - sigma_L^2 (1 - eps/sigma_L^2)^2) is as close to 1 as it gets (the variance a level's
  chain reaches, relative to sigma_i^2, for a single data point).
* Technique 5: an exponential moving average of the weights (:class:`scoresde.ema.EMA`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["max_pairwise_distance", "ratio_criterion", "geometric_ratio", "num_noise_levels", "noise_levels",
           "step_size_criterion", "langevin_step_size", "ald_snr"]


def max_pairwise_distance(data: Tensor, chunk: int = 1024) -> float:
    """sigma_1 of Technique 1: max_ij ||x_i - x_j||_2 over the data points (rows, flattened), in float64."""
    x = data.reshape(data.shape[0], -1).double()
    if x.shape[0] < 2:
        raise ValueError("the largest pairwise distance needs at least two data points")
    sq = (x**2).sum(-1)
    best = 0.0
    for lo in range(0, x.shape[0], chunk):
        d2 = sq[lo:lo + chunk, None] + sq[None, :] - 2 * x[lo:lo + chunk] @ x.T
        best = max(best, float(d2.max()))
    return math.sqrt(max(best, 0.0))


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def ratio_criterion(gamma: float, dim: int) -> float:
    """Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) of Technique 2 (Song & Ermon 2020)."""
    c = math.sqrt(2 * dim) * (gamma - 1)
    return _phi(c + 3 * gamma) - _phi(c - 3 * gamma)


def geometric_ratio(dim: int, target: float = 0.5) -> float:
    """The ratio gamma > 1 with ratio_criterion(gamma, D) = target (Technique 2), by bisection (decreasing in gamma)."""
    if dim < 1 or not 0 < target < ratio_criterion(1.0, dim):
        raise ValueError(f"need dim >= 1 and 0 < target < {ratio_criterion(1.0, max(dim, 1)):.4f}")
    lo, hi = 1.0, 2.0
    while ratio_criterion(hi, dim) > target:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ratio_criterion(mid, dim) > target else (lo, mid)
    return 0.5 * (lo + hi)


def num_noise_levels(sigma_max: float, sigma_min: float, gamma: float) -> int:
    """L = the fewest levels of a geometric sequence from sigma_max down to sigma_min with ratio at most gamma."""
    if not 0 < sigma_min < sigma_max or not gamma > 1:
        raise ValueError("need 0 < sigma_min < sigma_max and gamma > 1")
    return math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma) - 1e-9) + 1


def noise_levels(sigma_max: float, sigma_min: float, num: int) -> Tensor:
    """The geometric sequence sigma_1 = sigma_max > ... > sigma_L = sigma_min (float64)."""
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), num, dtype=torch.float64))


def step_size_criterion(eps: float, sigma_min: float, gamma: float, steps: int) -> float:
    """f(eps) of Technique 4 (Song & Ermon 2020, eq. 4): the relative variance after ``steps`` Langevin steps."""
    s2 = sigma_min**2
    u = eps / s2
    stationary = 2 * eps / (s2 - s2 * (1 - u) ** 2)
    return (1 - u) ** (2 * steps) * (gamma**2 - stationary) + stationary


def langevin_step_size(sigma_min: float, gamma: float, steps: int, grid: int = 4000) -> float:
    """eps of Technique 4: argmin |f(eps) - 1| over 0 < eps < sigma_L^2 (a log grid, then golden-section refinement)."""
    s2 = sigma_min**2

    def loss(log_u: float) -> float:
        return abs(step_size_criterion(math.exp(log_u) * s2, sigma_min, gamma, steps) - 1)

    logs = [math.log(1e-8) + i * (math.log(1 - 1e-9) - math.log(1e-8)) / (grid - 1) for i in range(grid)]
    k = min(range(grid), key=lambda i: loss(logs[i]))
    a, b = logs[max(k - 1, 0)], logs[min(k + 1, grid - 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(100):
        c, d = b - g * (b - a), a + g * (b - a)
        if loss(c) < loss(d):
            b = d
        else:
            a = c
    return math.exp(0.5 * (a + b)) * s2


def ald_snr(eps: float, sigma_min: float) -> float:
    """The ``snr`` of :func:`scoresde.samplers.annealed_langevin` (step 2 (snr sigma_i)^2) that takes NCSNv2's step
    alpha_i = eps sigma_i^2 / sigma_L^2: snr = sqrt(eps / 2) / sigma_L."""
    return math.sqrt(eps / 2) / sigma_min
