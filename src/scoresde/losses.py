"""Denoising score-matching losses (Song et al. ICLR 2021 eq. 7; Song & Ermon 2019; Ho et al. 2020).

Every loss is ``loss(model, x0, u, noise, **options)``: u holds one uniform [0, 1) number per sample
(it picks the time or noise level) and noise one standard-normal tensor shaped like x0. Passing the
randomness in makes a training step a pure function of (weights, batch, draws): a resumed run or a
data-parallel run that slices the global draws reproduces the single-process run exactly.
:func:`draw` makes both from a generator. The minimiser of each loss is the true score.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from ._tensor import like
from .parameterization import ScoreModel
from .sde import DiscreteForm

__all__ = ["draw", "dsm_loss", "smld_loss", "ddpm_loss"]

Reduce = Literal["mean", "sum"]
TimeSampling = Literal["uniform", "lognormal"]


def draw(x0: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(u, noise) for a batch shaped like x0: u ~ U[0, 1) float64 per sample, noise ~ N(0, I)."""
    u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    return u, noise


def _reduce(per_elem: Tensor, reduce: Reduce) -> Tensor:
    flat = per_elem.reshape(per_elem.shape[0], -1)
    if reduce == "mean":
        return flat.mean(-1)
    if reduce == "sum":
        return flat.sum(-1)
    raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")


def dsm_loss(model: ScoreModel, x0: Tensor, u: Tensor, noise: Tensor, *, t_min: float = 1e-5,
             reduce: Reduce = "mean", likelihood_weighting: bool = False, t_sampling: TimeSampling = "uniform",
             p_mean: float = -1.2, p_std: float = 1.2, sigma_data: float | None = None) -> Tensor:
    """Continuous denoising score matching (Song et al. eq. 7) with a choice of time density and weighting.

    Time density: ``uniform`` t = t_min + (T - t_min) u (the seed's); ``lognormal`` draws the VE-equivalent
    noise level sigma~ = sigma_t / alpha_t with log sigma~ ~ N(p_mean, p_std^2) (Karras et al. 2022, EDM
    Table 1) and maps it to t = sigma~^-1, clamped to [t_min, T]. Why: under the VP SDE uniform t puts half
    the batch at sigma~ > 3.4, where the denoiser only has to output the data mean; EDM's density spends it
    around sigma~ ~ 0.3, where digits get their strokes.
    Weighting, per unit of ||eps_hat - n||^2: default 1 (lambda(t) = sigma_t^2); ``likelihood_weighting``
    g(t)^2 / sigma_t^2 (Song et al. 2021b, the likelihood bound); ``sigma_data`` 1 + sigma~^2 / sigma_data^2,
    which is EDM's lambda = (sigma~^2 + sigma_data^2) / (sigma~ sigma_data)^2 on the x0 error, since
    ||eps_hat - n|| = ||x0_hat - x0|| / sigma~ (with sigma_data = 1 it is the v-prediction loss).
    """
    sde = model.sde
    if t_sampling == "uniform":
        t = t_min + (sde.T - t_min) * u
    elif t_sampling == "lognormal":
        # u in [0, 1): the inverse normal CDF of 0 is -inf, which the clamp sends to t_min
        log_sigma = p_mean + p_std * math.sqrt(2.0) * torch.erfinv(2 * u - 1)
        t = sde.t_from_sigma_tilde(torch.exp(log_sigma)).clamp(t_min, sde.T)
    else:
        raise ValueError(f"t_sampling must be 'uniform' or 'lognormal', got {t_sampling!r}")
    xt = sde.marginal_sample(x0, t, noise)
    per = (model.eps(xt, t) - noise) ** 2
    if likelihood_weighting:
        per = per * like(sde.diffusion(t) ** 2 / sde.sigma(t) ** 2, x0)
    elif sigma_data is not None:
        per = per * like(1 + (sde.sigma_tilde(t) / sigma_data) ** 2, x0)
    return _reduce(per, reduce).mean()


def _level(u: Tensor, n: int) -> Tensor:
    return (u * n).long().clamp(max=n - 1).cpu()


def _chain(model: ScoreModel, loss: str):
    sde = model.sde
    if not isinstance(sde, DiscreteForm):
        raise TypeError(f"{loss} needs an SDE with a discrete form (VE: SMLD, VP: DDPM); {type(sde).__name__} has none")
    return sde.discrete()


def smld_loss(model: ScoreModel, x0: Tensor, u: Tensor, noise: Tensor, *, reduce: Reduce = "sum") -> Tensor:
    """SMLD / NCSN loss over the N discrete noise levels (Song & Ermon 2019 eq. 6), weight sigma_i^2.

    Level i = floor(u N); the model is queried at the matching VE time t_i = i / (N - 1).
    """
    chain = _chain(model, "smld_loss")
    i = _level(u, chain.N)
    t = chain.times()[i].to(x0.device)
    _, sigma = chain.marginal(i)
    xt = x0 + like(sigma.to(x0.device), x0) * noise
    return _reduce((model.eps(xt, t) - noise) ** 2, reduce).mean()  # sigma_i s + n = n - eps_hat


def ddpm_loss(model: ScoreModel, x0: Tensor, u: Tensor, noise: Tensor, *, reduce: Reduce = "sum") -> Tensor:
    """DDPM's simple loss E ||eps_hat(x_i, i) - n||^2 over the N discrete steps (Ho et al. eq. 14).

    Step i = floor(u N); the model is queried at the matching VP time t_i = (i + 1) / N.
    """
    chain = _chain(model, "ddpm_loss")
    i = _level(u, chain.N)
    t = chain.times()[i].to(x0.device)
    alpha, sigma = chain.marginal(i)
    xt = like(alpha.to(x0.device), x0) * x0 + like(sigma.to(x0.device), x0) * noise
    return _reduce((model.eps(xt, t) - noise) ** 2, reduce).mean()
