"""k-diffusion / EDM style denoisers ``D(x, sigma, **extra)`` as scoresde score models.

A denoiser in k-diffusion's convention (k-diffusion's ``Denoiser`` / ``VDenoiser`` / ``CompVisDenoiser``
wrappers, an EDM-preconditioned net, any closed-form E[x_0 | x_0 + sigma n = x]) is a function of the VE-space
state and its noise level sigma (Karras et al. 2022, eq. 2-3). Seen over the VE SDE sigma(t) = sigma_min
(sigma_max / sigma_min)^t (Song et al. 2021) it is a score model, score = (D - x) / sigma^2, so every scoresde
sampler (PC, ODE, GGF, SEEDS ...), the likelihood and the guidance wrappers run on it. The wrapping is
:class:`~scoresde.parameterization.DenoiserModel`, the same one the k-diffusion-style entry points of
:mod:`scoresde.samplers.kdiffusion` (``sample_seeds_2(model, x, sigmas)`` ...) and ``sample_ggf`` use.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..parameterization import DenoiserModel
from ..sde import SDE, VESDE, SigmaSDE

__all__ = ["from_denoiser"]


def from_denoiser(denoiser: Callable[..., Tensor], sigma_min: float | None = None, sigma_max: float | None = None, *,
                  sde: str | SDE = "ve", extra_args: dict | None = None, t_end: float | None = None) -> DenoiserModel:
    """A k-diffusion denoiser ``denoiser(x, sigma, **extra_args)`` as a score model (Karras et al. 2022 eq. 3).

    ``sde``: "ve" (default) - the VE SDE from ``sigma_min`` to ``sigma_max`` (sigma_min, sigma_max default to
    ``denoiser.sigma_min`` / ``denoiser.sigma_max``, which k-diffusion's wrappers carry); "sigma" - the same VE
    process indexed by t = sigma (:class:`~scoresde.sde.SigmaSDE`, the time axis of the k-diffusion entry points:
    a grid of times is a list of sigmas); or any :class:`~scoresde.sde.SDE` (VP, sub-VP ...: the denoiser is then
    asked at sigma_tilde(t) with x / alpha_t, which must stay in the range it was trained on). ``t_end``: the end
    time of sampling (default: t = 0, i.e. sigma_min, for "ve"; sigma_min for "sigma").
    """
    if isinstance(sde, SDE):
        return DenoiserModel(denoiser, sde, extra_args)
    if sigma_min is None:
        sigma_min = getattr(denoiser, "sigma_min", None)
    if sigma_max is None:
        sigma_max = getattr(denoiser, "sigma_max", None)
    if sigma_min is None or sigma_max is None:
        raise ValueError("from_denoiser needs sigma_min and sigma_max (or a denoiser with those attributes)")
    sigma_min, sigma_max = float(sigma_min), float(sigma_max)
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"from_denoiser needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if sde == "ve":
        return DenoiserModel(denoiser, VESDE(sigma_min, sigma_max, t_end=0.0 if t_end is None else t_end), extra_args)
    if sde == "sigma":
        s = SigmaSDE(sigma_max, sigma_min)
        if t_end is not None:
            s.t_end = float(t_end)
        return DenoiserModel(denoiser, s, extra_args)
    raise ValueError(f"sde must be 've', 'sigma' or an SDE object, got {sde!r}")
