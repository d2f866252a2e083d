"""k-diffusion style entry points: ``sample_X(model, x, sigmas, extra_args=None, callback=None, disable=None, ...)``.

``model(x, sigma, **extra_args)`` is a denoiser D in VE space (x = x_0 + sigma n), ``sigmas`` a decreasing
1-D tensor, possibly ending in 0. Each entry point views the sigmas as the times of :class:`SigmaSDE`
(a VE SDE with t = sigma, alpha = 1), wraps the denoiser in a :class:`~scoresde.parameterization.DenoiserModel`
over it and runs the scoresde solver on that grid, so both share one implementation. A step to sigma = 0
is the denoiser's output (one NFE). ``noise_sampler(sigma, sigma_next)`` (default ``torch.randn_like``) is
called once per Brownian sub-interval; SEEDS calls it for each stage's sub-interval, so a Brownian-tree
sampler gives increments of one path.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..parameterization import DenoiserModel
from ..sde import SigmaSDE
from .base import progress_from_disable
from .edm import edm_heun
from .exponential import ddim, dpmpp_2m, etd_erk
from .seeds import seeds

__all__ = [
    "SigmaSDE",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_edm_heun",
    "sample_etd_erk_1",
    "sample_etd_erk_2",
    "sample_etd_erk_3",
    "sample_seeds_1",
    "sample_seeds_2",
    "sample_seeds_3",
]


def _setup(model: Callable[..., Tensor], x: Tensor, sigmas: Tensor, extra_args: dict | None):
    sigmas = torch.as_tensor(sigmas).detach().to(torch.float64).reshape(-1)
    if sigmas.numel() < 2 or not bool((sigmas[1:] < sigmas[:-1]).all()) or bool((sigmas < 0).any()):
        raise ValueError("sigmas must be a 1-D decreasing tensor of at least 2 noise levels >= 0")
    sde = SigmaSDE(float(sigmas[0]), float(sigmas[-1]))
    return DenoiserModel(model, sde, extra_args), sigmas


def _draw(x: Tensor, noise_sampler: Callable[[Tensor, Tensor], Tensor] | None):
    if noise_sampler is None:
        return lambda s, sn: torch.randn_like(x)
    return noise_sampler


def _kw(callback, disable) -> dict[str, Any]:
    return {"callback": callback, "progress": progress_from_disable(disable)}


def _seeds(order):
    def sampler(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                noise_sampler=None):
        m, g = _setup(model, x, sigmas, extra_args)
        return seeds(m, x, order=order, steps=len(g) - 1, grid=g, eta=eta, s_noise=s_noise,
                     draw=_draw(x, noise_sampler), **_kw(callback, disable)).samples

    sampler.__name__ = f"sample_seeds_{order}"
    sampler.__doc__ = (f"SEEDS-{order} (Gonzalez et al. 2023) on a k-diffusion sigma schedule; "
                       f"{order} NFE a step (1 for a final step to sigma = 0).")
    return sampler


def _etd(order):
    def sampler(model, x, sigmas, extra_args=None, callback=None, disable=None):
        m, g = _setup(model, x, sigmas, extra_args)
        return etd_erk(m, x, order=order, steps=len(g) - 1, grid=g, **_kw(callback, disable)).samples

    sampler.__name__ = f"sample_etd_erk_{order}"
    sampler.__doc__ = f"ETD-ERK-{order} = DPM-Solver++ singlestep order {order} (Lu et al. 2022b) on a sigma schedule."
    return sampler


sample_seeds_1, sample_seeds_2, sample_seeds_3 = _seeds(1), _seeds(2), _seeds(3)
sample_etd_erk_1, sample_etd_erk_2, sample_etd_erk_3 = _etd(1), _etd(2), _etd(3)


def sample_dpmpp_2m(model: Callable[..., Tensor], x: Tensor, sigmas: Tensor, extra_args: dict | None = None,
                    callback: Callable[[dict], None] | None = None, disable: bool | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b Alg. 2) on a sigma schedule; 1 NFE a step."""
    m, g = _setup(model, x, sigmas, extra_args)
    return dpmpp_2m(m, x, steps=len(g) - 1, grid=g, **_kw(callback, disable)).samples


def sample_ddim(model: Callable[..., Tensor], x: Tensor, sigmas: Tensor, extra_args: dict | None = None,
                callback: Callable[[dict], None] | None = None, disable: bool | None = None, eta: float = 0.0,
                s_noise: float = 1.0, noise_sampler: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
    """DDIM(eta) (Song, Meng & Ermon 2021 eq. 12) on a sigma schedule; eta = 1 is the ancestral step."""
    m, g = _setup(model, x, sigmas, extra_args)
    return ddim(m, x, steps=len(g) - 1, grid=g, eta=eta, s_noise=s_noise, draw=_draw(x, noise_sampler),
                **_kw(callback, disable)).samples


def sample_edm_heun(model: Callable[..., Tensor], x: Tensor, sigmas: Tensor, extra_args: dict | None = None,
                    callback: Callable[[dict], None] | None = None, disable: bool | None = None,
                    s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0,
                    noise_sampler: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
    """EDM Heun with churn (Karras et al. 2022 Alg. 2) on a sigma schedule (k-diffusion's sample_heun)."""
    m, g = _setup(model, x, sigmas, extra_args)
    return edm_heun(m, x, steps=len(g) - 1, grid=g, S_churn=s_churn, S_tmin=s_tmin, S_tmax=s_tmax, S_noise=s_noise,
                    draw=_draw(x, noise_sampler), **_kw(callback, disable)).samples
