"""Time grids for samplers, in float64: N steps give N + 1 times from T down to t_end.

uniform in t (Song et al.), quadratic in t (DDIM), uniform in log-SNR (DPM-Solver), and EDM's
rho-spaced noise levels (Karras et al. 2022, eq. 5) mapped back to t through the SDE.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .sde import SDE

__all__ = ["uniform_time", "quadratic_time", "log_snr_uniform", "edm_rho"]


def _check(steps: int, t_end: float, T: float) -> None:
    if int(steps) < 1:
        raise ValueError(f"the number of steps must be >= 1, got {steps}")
    if not 0 <= t_end < T:
        raise ValueError(f"the end time must lie in [0, T={T}), got {t_end}")


def uniform_time(sde: SDE, steps: int, t_end: float | None = None) -> Tensor:
    """t_i = T - i (T - t_end) / N."""
    t_end = sde.t_end if t_end is None else float(t_end)
    _check(steps, t_end, sde.T)
    return torch.linspace(sde.T, t_end, int(steps) + 1, dtype=torch.float64)


def quadratic_time(sde: SDE, steps: int, t_end: float | None = None) -> Tensor:
    """t_i = t_end + (T - t_end) (1 - i / N)^2: dense near the data end."""
    t_end = sde.t_end if t_end is None else float(t_end)
    _check(steps, t_end, sde.T)
    u = torch.linspace(1, 0, int(steps) + 1, dtype=torch.float64)
    return t_end + (sde.T - t_end) * u**2


def log_snr_uniform(sde: SDE, steps: int, t_end: float | None = None) -> Tensor:
    """lambda_t uniform between lambda(T) and lambda(t_end) (DPM-Solver's grid)."""
    t_end = sde.t_end if t_end is None else float(t_end)
    _check(steps, t_end, sde.T)
    lam_T, lam_eps = float(sde.log_snr(sde.T)), float(sde.log_snr(t_end))
    if not (math.isfinite(lam_T) and math.isfinite(lam_eps)):
        raise ValueError(f"log-SNR is infinite at the grid's ends (t_end={t_end}); use t_end > 0")
    lam = torch.linspace(lam_T, lam_eps, int(steps) + 1, dtype=torch.float64)
    t = sde.t_from_log_snr(lam)
    t[0], t[-1] = sde.T, t_end
    return t


def edm_rho(sde: SDE, steps: int, t_end: float | None = None, rho: float = 7.0,
            sigma_min: float | None = None, sigma_max: float | None = None) -> Tensor:
    """EDM's sigma_i = (s_max^(1/rho) + i/N (s_min^(1/rho) - s_max^(1/rho)))^rho, as times of the SDE.

    The sigma range defaults to the SDE's own [sigma_tilde(t_end), sigma_tilde(T)].
    """
    t_end = sde.t_end if t_end is None else float(t_end)
    _check(steps, t_end, sde.T)
    s_max = float(sde.sigma_tilde(sde.T)) if sigma_max is None else float(sigma_max)
    s_min = float(sde.sigma_tilde(t_end)) if sigma_min is None else float(sigma_min)
    u = torch.linspace(0, 1, int(steps) + 1, dtype=torch.float64)
    sig = (s_max ** (1 / rho) + u * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    t = sde.t_from_sigma_tilde(sig)
    if sigma_max is None:
        t[0] = sde.T
    if sigma_min is None:
        t[-1] = t_end
    return t
