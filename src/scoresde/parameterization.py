"""The model contract: score, noise (eps), data (denoiser) and v predictions, converted for any SDE.

With x_t = alpha_t x_0 + sigma_t eps:

    score = -eps / sigma_t = (alpha_t D - x) / sigma_t^2,
    v = a eps - s x_0 with (a, s) = (alpha_t, sigma_t) / sqrt(alpha_t^2 + sigma_t^2),

and ``scaled_score`` = score * sigma_t (= -eps), the output of score_sde_pytorch's VE networks before their
``scale_by_sigma`` division. Samplers only ever call :meth:`ScoreModel.score`,
:meth:`ScoreModel.denoised` or :meth:`ScoreModel.eps`; each call is one network evaluation and is
counted in :attr:`ScoreModel.nfe` - there and nowhere else: subclasses supply predictions
(:meth:`ScoreModel.predict`, or :meth:`ScoreModel.predict_for` for a model that can answer some kinds
directly) and never count.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from ._tensor import as_time, like
from .sde import SDE, DiscreteForm, Discretized

Prediction = Literal["score", "eps", "data", "v", "scaled_score"]
PREDICTIONS: tuple[str, ...] = ("score", "eps", "data", "v", "scaled_score")

__all__ = [
    "PREDICTIONS", "convert", "ScoreModel", "NetworkModel", "DenoiserModel", "to_denoiser",
    "continuous_time", "scaled_time", "noise_level", "discrete_index", "reversed_index", "ddpm_index",
    "log_noise_level",
]


def _to_eps(value: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, kind: str) -> Tensor:
    if kind == "eps":
        return value
    if kind == "score":
        return -sigma * value
    if kind == "scaled_score":
        return -value
    if kind == "data":
        return (x - alpha * value) / sigma
    if kind == "v":
        r = torch.sqrt(alpha**2 + sigma**2)
        return (sigma * x / r + alpha * value) / r
    raise ValueError(f"unknown prediction {kind!r}; expected one of {', '.join(PREDICTIONS)}")


def _from_eps(eps: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, kind: str) -> Tensor:
    if kind == "eps":
        return eps
    if kind == "score":
        return -eps / sigma
    if kind == "scaled_score":
        return -eps
    if kind == "data":
        return (x - sigma * eps) / alpha
    if kind == "v":
        r = torch.sqrt(alpha**2 + sigma**2)
        x0 = (x - sigma * eps) / alpha
        return (alpha * eps - sigma * x0) / r
    raise ValueError(f"unknown prediction {kind!r}; expected one of {', '.join(PREDICTIONS)}")


def convert(value: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, source: str, target: str) -> Tensor:
    """Convert a prediction of kind ``source`` at (x, alpha_t, sigma_t) into kind ``target``.

    ``alpha`` and ``sigma`` broadcast against x (use :func:`scoresde._tensor.like`).
    Conversions between data and score are done directly, which keeps them exact at small sigma.
    """
    if source == target:
        if source not in PREDICTIONS:
            raise ValueError(f"unknown prediction {source!r}; expected one of {', '.join(PREDICTIONS)}")
        return value
    if source == "data" and target == "score":
        return (alpha * value - x) / sigma**2
    if source == "score" and target == "data":
        return (x + sigma**2 * value) / alpha
    return _from_eps(_to_eps(value, x, alpha, sigma, source), x, alpha, sigma, target)


class ScoreModel:
    """A score model over an SDE: the one interface every sampler sees.

    Subclasses implement :meth:`predict` (the raw output, of kind :attr:`prediction`, at per-sample
    float64 times t), and may override :meth:`predict_for`. :attr:`nfe` counts calls of the underlying
    function; it is incremented in :meth:`output` only, once per call of :meth:`score`, :meth:`denoised`
    or :meth:`eps`.
    """

    #: network evaluations one call costs (2 for classifier-free guidance: a conditional and an unconditional one)
    evaluations_per_call: int = 1

    def __init__(self, sde: SDE, prediction: Prediction):
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; expected one of {', '.join(PREDICTIONS)}")
        self.sde = sde
        self.prediction = prediction
        self.nfe = 0

    def predict(self, x: Tensor, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_for(self, x: Tensor, t: Tensor, kind: Prediction) -> tuple[Tensor, Prediction]:
        """(raw prediction, its kind) for a request of ``kind`` at per-sample float64 times t.

        The default is ``(predict(x, t), prediction)``. A model that can give some kinds directly (a
        closed-form denoiser, exact where converting the score would lose digits) overrides this; it
        supplies the value only and must not count it (:meth:`output` does).
        """
        return self.predict(x, t), self.prediction

    def output(self, x: Tensor, t: Tensor | float, kind: Prediction) -> Tensor:
        """The model's prediction at (x, t) converted to ``kind``; one call (``evaluations_per_call`` NFE)."""
        t = as_time(t, x)
        self.nfe += self.evaluations_per_call
        raw, raw_kind = self.predict_for(x, t, kind)
        alpha, sigma = self.sde.marginal(t)
        return convert(raw, x, like(alpha, x), like(sigma, x), raw_kind, kind)

    def score(self, x: Tensor, t: Tensor | float) -> Tensor:
        """grad_x log p_t(x)."""
        return self.output(x, t, "score")

    def denoised(self, x: Tensor, t: Tensor | float) -> Tensor:
        """E[x_0 | x_t = x] (the denoiser D)."""
        return self.output(x, t, "data")

    def eps(self, x: Tensor, t: Tensor | float) -> Tensor:
        """E[n | x_t = x], the noise prediction."""
        return self.output(x, t, "eps")


# ---- time conditioning: what a network is fed as its time input ------------------------------
TimeInput = Callable[[Tensor, SDE], Tensor]


def continuous_time(t: Tensor, sde: SDE) -> Tensor:
    """Feed t itself."""
    return t


def scaled_time(scale: float = 999.0) -> TimeInput:
    """Feed scale * t (score_sde_pytorch's VP networks: 999 t, also t (N - 1) for discrete DDPM)."""

    def fn(t: Tensor, sde: SDE) -> Tensor:
        return t * scale

    fn.__name__ = f"scaled_time_{scale:g}"
    return fn


def noise_level(t: Tensor, sde: SDE) -> Tensor:
    """Feed sigma_t (score_sde_pytorch's continuous VE networks)."""
    return sde.sigma(t)


def log_noise_level(t: Tensor, sde: SDE) -> Tensor:
    """Feed log(sigma_tilde) / 4 (EDM's c_noise)."""
    return 0.25 * torch.log(sde.sigma_tilde(t))


def discrete_index(t: Tensor, sde: SDE) -> Tensor:
    """Feed the discrete level index round(t (N - 1) / T) (score_sde_pytorch's discrete SMLD / DDPM networks).

    Needs an SDE with a step count N (:class:`~scoresde.sde.Discretized`: VE, VP, sub-VP).
    """
    if not isinstance(sde, Discretized):
        raise TypeError(f"discrete_index needs an SDE with N discretisation steps; {type(sde).__name__} has none")
    return torch.round(t * (sde.N - 1) / sde.T)


def reversed_index(t: Tensor, sde: SDE) -> Tensor:
    """Feed round((T - t) (N - 1) / T): score_sde_pytorch's discrete VE label, 0 at the largest noise level.

    Its SMLD networks (NCSN, NCSNv2, discrete NCSN++) index their noise levels sigma_max -> sigma_min.
    """
    if not isinstance(sde, Discretized):
        raise TypeError(f"reversed_index needs an SDE with N discretisation steps; {type(sde).__name__} has none")
    return torch.round((sde.T - t) * (sde.N - 1) / sde.T)


def ddpm_index(t: Tensor, sde: SDE) -> Tensor:
    """Feed the fractional DDPM step i whose noise level sqrt(1 - abar_i) is sigma_t (Ho et al. 2020's labels).

    Interpolated linearly in log sigma between the steps of the SDE's discrete chain (k-diffusion's
    ``sigma_to_t``), clamped to [0, N - 1]: at the chain's own levels the label is exactly i. This is how a
    discretely trained DDPM network (score_sde's ``ddpm`` loss: label i at level abar_i) is queried at any t.
    """
    from .sde import DDPMChain

    chain = sde.discrete() if isinstance(sde, DiscreteForm) else None
    if not isinstance(chain, DDPMChain):
        raise TypeError(f"ddpm_index needs a VP SDE with a discrete DDPM chain; {type(sde).__name__} has none")
    log_s = torch.log(chain.marginal(torch.arange(chain.N))[1]).to(t.device)  # increasing in i
    x = torch.log(sde.sigma(t).to(torch.float64)).clamp(log_s[0], log_s[-1])
    j = torch.searchsorted(log_s, x).clamp(1, chain.N - 1)
    lo, hi = log_s[j - 1], log_s[j]
    return (j - 1).to(torch.float64) + (x - lo) / (hi - lo)


class NetworkModel(ScoreModel):
    """A network ``net(x, c)`` turned into a score model: c = time_input(t, sde), output of kind ``prediction``.

    score_sde_pytorch's conventions: VP eps-nets ``NetworkModel(net, vp, "eps", scaled_time(999))``;
    VE nets with scale_by_sigma ``NetworkModel(net, ve, "scaled_score", noise_level)``.
    """

    def __init__(self, net: nn.Module | Callable[[Tensor, Tensor], Tensor], sde: SDE, prediction: Prediction = "eps",
                 time_input: TimeInput = continuous_time):
        super().__init__(sde, prediction)
        self.net = net
        self.time_input = time_input

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        c = self.time_input(t, self.sde).to(dtype=x.dtype if x.is_floating_point() else torch.float32)
        return self.net(x, c)


class DenoiserModel(ScoreModel):
    """A k-diffusion / EDM style denoiser ``D(x_ve, sigma, **extra_args)`` (VE space) seen as a score model over ``sde``.

    x_t = alpha_t x_ve with sigma = sigma_tilde(t) (a per-sample vector in x's dtype); D returns the clean data
    estimate. ``extra_args`` (k-diffusion's conditioning keywords) are passed on every call.
    """

    def __init__(self, denoiser: Callable[..., Tensor], sde: SDE, extra_args: dict | None = None):
        super().__init__(sde, "data")
        self.denoiser = denoiser
        self.extra_args = dict(extra_args or {})

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        alpha = like(self.sde.alpha(t), x)
        return self.denoiser(x / alpha, self.sde.sigma_tilde(t).to(x.dtype), **self.extra_args)


def to_denoiser(model: ScoreModel) -> Callable[[Tensor, Tensor], Tensor]:
    """The k-diffusion view of a score model: ``D(x, sigma)`` with x in VE space and sigma = sigma_tilde."""

    def denoiser(x: Tensor, sigma: Tensor | float) -> Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        t = model.sde.t_from_sigma_tilde(sigma)
        alpha = like(model.sde.alpha(t), x)
        return model.denoised(alpha * x, t)

    return denoiser
