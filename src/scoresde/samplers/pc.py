"""Predictor-corrector samplers of Song et al. (ICLR 2021, Algorithms 2-4).

A predictor moves x from t to t_next < t along the reverse SDE; a corrector runs Markov-chain
steps towards p_t at fixed t. Predictors: ``predictor(model, x, t, t_next, z) -> (x, x_mean)``;
correctors: ``corrector(model, x, t, z, snr) -> (x, x_mean)``, one inner step. Each returns the
noisy state and its noise-free mean (score_sde_pytorch's final "noise removal" returns the last
mean: ``final_mean``). Every model call is one NFE; ``none`` predictors and correctors cost nothing.

The discrete notions come from the SDE's :class:`~scoresde.sde.Discretized` mixin where it has one
(reverse diffusion's step, eq. 47: SMLD for VE, DDPM for VP; Langevin's alpha_i), else
Euler-Maruyama and alpha_i = 1.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._tensor import as_time, flat_norm, like
from ..brownian import NoiseSource
from ..parameterization import ScoreModel
from ..schedules import uniform_time
from ..sde import SDE, Discretized, euler_maruyama_discretization
from .base import SampleResult, callback_state, progress_bar

__all__ = ["euler_maruyama", "reverse_diffusion", "ancestral_sampling", "langevin", "annealed_langevin",
           "pc_sample", "default_snr", "Predictor", "Corrector"]

Predictor = Callable[[ScoreModel, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
Corrector = Callable[[ScoreModel, Tensor, Tensor, Tensor, float], tuple[Tensor, Tensor]]


def _discretize(sde: SDE, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
    """(f_i, G_i) of the forward step over [t_next, t]: the SDE's own discretisation, else Euler-Maruyama."""
    if isinstance(sde, Discretized):
        return sde.discretize(x, t, t_next)
    return euler_maruyama_discretization(sde, x, t, t_next)


def _corrector_alpha(sde: SDE, t: Tensor) -> Tensor:
    """alpha_i of the Langevin step size: the SDE's own discretisation (1 - beta_i for VP / sub-VP), else 1."""
    if isinstance(sde, Discretized):
        return sde.corrector_alpha(t)
    return torch.ones_like(torch.as_tensor(t, dtype=torch.float64))


def default_snr(sde: SDE) -> float:
    """The corrector's signal-to-noise ratio of score_sde_pytorch's configs: 0.16 for a variance-exploding
    SDE (alpha_t = 1: VE), 0.01 otherwise (VP, sub-VP)."""
    return 0.16 if float(sde.log_alpha(torch.as_tensor(sde.T, dtype=torch.float64))) == 0.0 else 0.01


def euler_maruyama(model: ScoreModel, x: Tensor, t: Tensor, t_next: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """Euler-Maruyama step of the reverse SDE dx = [f - g^2 score] dt + g dw (Song et al. eq. 6)."""
    sde = model.sde
    dt = t_next - t  # negative
    x_mean = x + sde.reverse_drift(x, t, model.score(x, t)) * like(dt, x)
    return x_mean + like(sde.diffusion(t) * torch.sqrt(-dt), x) * z, x_mean


def reverse_diffusion(model: ScoreModel, x: Tensor, t: Tensor, t_next: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """Reverse diffusion step x <- x - f_i + G_i^2 score + G_i z of the discretised SDE (Song et al. eq. 47)."""
    f, g = _discretize(model.sde, x, t, t_next)
    g = like(g, x)
    x_mean = x - f + g**2 * model.score(x, t)
    return x_mean + g * z, x_mean


def ancestral_sampling(model: ScoreModel, x: Tensor, t: Tensor, t_next: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """Ancestral step: the Gaussian posterior q(x_next | x_t, x_0 = D(x_t)) (Ho et al. eq. 7; Song et al. App. F).

    With a = alpha_t / alpha_next and s^2 = sigma_t^2 - a^2 sigma_next^2 (the transition from
    t_next to t): mean = (a sigma_next^2 x + alpha_next s^2 D) / sigma_t^2, variance
    s^2 sigma_next^2 / sigma_t^2. For VE this is exactly SMLD's ancestral step
    x + (sigma_t^2 - sigma_next^2) score; for VP it is DDPM's posterior-mean step.
    """
    sde = model.sde
    a_t, s_t = sde.marginal(t)
    a_n, s_n = sde.marginal(t_next)
    a = a_t / a_n
    s2 = s_t**2 - a**2 * s_n**2
    denoised = model.denoised(x, t)
    x_mean = like(a * s_n**2 / s_t**2, x) * x + like(a_n * s2 / s_t**2, x) * denoised
    return x_mean + like(torch.sqrt(s2 * s_n**2 / s_t**2), x) * z, x_mean


def langevin(model: ScoreModel, x: Tensor, t: Tensor, z: Tensor, snr: float) -> tuple[Tensor, Tensor]:
    """Langevin corrector step with target signal-to-noise ratio (Song et al. Algorithm 5).

    langevin_step = 2 alpha_i (snr ||z|| / ||score||)^2, x <- x + langevin_step score + sqrt(2 langevin_step) z.
    As in score_sde_pytorch, the two norms are averaged over the batch: with per-sample norms the step explodes where
    ||score|| -> 0 at a mode. This makes the step size, and so each sample, depend on its batch.
    """
    score = model.score(x, t)
    ratio = flat_norm(z).mean() / flat_norm(score).mean()
    step = 2 * _corrector_alpha(model.sde, t) * (snr * ratio.double()) ** 2
    x_mean = x + like(step, x) * score
    return x_mean + like(torch.sqrt(2 * step), x) * z, x_mean


def annealed_langevin(model: ScoreModel, x: Tensor, t: Tensor, z: Tensor, snr: float) -> tuple[Tensor, Tensor]:
    """Annealed Langevin dynamics step (Song & Ermon 2019): langevin_step = 2 alpha_i (snr sigma_t)^2, per sample."""
    sde = model.sde
    step = 2 * _corrector_alpha(sde, t) * (snr * sde.sigma(t)) ** 2
    x_mean = x + like(step, x) * model.score(x, t)
    return x_mean + like(torch.sqrt(2 * step), x) * z, x_mean


def pc_sample(model: ScoreModel, x: Tensor, noise: NoiseSource, *, steps: int = 1000,
              predictor: Predictor | None = reverse_diffusion, corrector: Corrector | None = langevin,
              snr: float | None = None, n_corrector: int = 1, t_end: float | None = None, grid: Tensor | None = None,
              final_mean: bool = True, denoise: bool = False, progress: bool = False,
              callback: Callable[[dict[str, Any]], None] | None = None) -> SampleResult:
    """Predictor-corrector sampling from x_T over ``steps`` predictor steps (Song et al. Algorithm 1).

    At each grid time t_i: ``n_corrector`` corrector steps at t_i, then one predictor step to
    t_{i+1}; the grid defaults to uniform in t from T to t_end. ``snr`` (the corrector's target
    signal-to-noise ratio) defaults to :func:`default_snr`: 0.16 for VE, 0.01 for VP / sub-VP.

    ``final_mean`` returns the last step's noise-free mean instead of its noisy state
    (score_sde_pytorch's final noise removal, no extra NFE); ``denoise`` then adds one Tweedie step
    x <- D(x, t_end) (one more NFE) to whichever of the two is returned. NFE = steps * (predictor !=
    None) + steps * n_corrector * (corrector != None) + denoise.

    ``callback(state)`` is called after each step i (its correctors and predictor) with
    :func:`~.base.callback_state`'s keys: x and t before the step, ``denoised`` None, and ``t_next``.
    Runs under ``torch.no_grad()``.
    """
    if grid is None:
        grid = uniform_time(model.sde, steps, t_end)
    if n_corrector < 0:
        raise ValueError("n_corrector must be >= 0")
    if corrector is None:
        n_corrector = 0
    if snr is None:
        snr = default_snr(model.sde)
    start = model.nfe
    x_mean = x
    with torch.no_grad(), progress_bar(len(grid) - 1, progress, "pc") as bar:
        for i in range(len(grid) - 1):
            t, t_next = as_time(grid[i], x), as_time(grid[i + 1], x)
            x_start = x
            for _ in range(n_corrector):
                x, x_mean = corrector(model, x, t, noise.draw(), snr)
            if predictor is not None:
                x, x_mean = predictor(model, x, t, t_next, noise.draw())
            if callback is not None:
                callback(callback_state(i, x_start, t, model.sde, None, t_next=t_next))
            bar.update()
        out = x_mean if final_mean else x
        if denoise:
            out = model.denoised(out, as_time(grid[-1], out))
    return SampleResult(out, model.nfe - start)
