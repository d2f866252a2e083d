"""Loop pieces shared by the fixed-grid samplers (exponential family, SEEDS, DDIM, EDM): grids, noise draws,
the (alpha, sigma, lambda) coefficients, the phi functions and the step loop that honours the sampler contract
of :mod:`.base` (no autograd, callback keys, progress bar, ``denoise`` as one counted Tweedie step).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .._tensor import as_time
from ..brownian import NoiseSource
from ..parameterization import ScoreModel
from ..schedules import edm_rho, log_snr_uniform, quadratic_time, uniform_time
from ..sde import SDE
from .base import SampleResult, callback_state, progress_bar

__all__ = ["GRIDS", "PREDICTIONS", "Draw", "check_prediction", "check_steps", "coefs", "declare_orders",
           "fixed_order", "make_grid", "noise_draw", "phi1", "phi2", "psi", "run_steps"]

#: grid names accepted by every sampler of this family
GRIDS = ("logsnr", "time", "quadratic", "edm")

#: the two forms of the exponential integrators: expand the denoiser D ("data") or the noise prediction ("noise")
PREDICTIONS = ("data", "noise")

#: a source of standard-normal noise for the sub-interval [sigma_from, sigma_to] (VE sigmas) of a step
Draw = Callable[[Tensor, Tensor], Tensor]

#: ``step(x, i, t_s, t_t) -> (x_t, denoised)`` or ``(x_t, denoised, extra)``, extra: more callback keys
Step = Callable[[Tensor, int, Tensor, Tensor], tuple]


def make_grid(sde: SDE, steps: int, grid: str | Tensor = "logsnr", t_end: float | None = None,
              rho: float = 7.0) -> Tensor:
    """The float64 time grid T -> t_end of ``steps`` steps: "logsnr" | "time" | "quadratic" | "edm" (rho), or a tensor."""
    if isinstance(grid, Tensor):
        g = grid.detach().to(torch.float64).reshape(-1)
        if g.numel() < 2 or not bool((g[1:] < g[:-1]).all()) or bool((g < 0).any()):
            raise ValueError("a grid must be a 1-D tensor of at least 2 decreasing times >= 0")
        return g
    builders = {"logsnr": log_snr_uniform, "time": uniform_time, "quadratic": quadratic_time,
                "edm": lambda s, n, e: edm_rho(s, n, e, rho=rho)}
    if grid not in builders:
        raise ValueError(f"unknown grid {grid!r}; expected one of {', '.join(GRIDS)} or a tensor of times")
    return builders[grid](sde, steps, t_end)


def check_steps(steps: int) -> None:
    if int(steps) < 1:
        raise ValueError(f"the number of steps must be >= 1, got {steps}")


def check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be 'data' or 'noise', got {prediction!r}")


def declare_orders(deterministic: int, weak: int | None = None):
    """Decorator recording a sampler's convergence orders as ``fn.order_deterministic`` / ``fn.order_weak``.

    ``deterministic``: global order of its noise-free form; ``weak``: weak order with noise (None: no noisy form).
    """

    def deco(fn):
        fn.order_deterministic, fn.order_weak = int(deterministic), None if weak is None else int(weak)
        return fn

    return deco


def fixed_order(sampler: Callable[..., SampleResult], order: int, name: str, doc: str, deterministic: int,
                weak: int | None = None, defaults: Mapping[str, Any] | None = None) -> Callable[..., SampleResult]:
    """``sampler`` with ``order`` fixed (seeds_2, etd_erk_3, ...), named, documented, carrying its declared orders.

    ``defaults`` replace the sampler's own defaults for this order (e.g. the grid measured best for it); the
    wrapper's signature shows them, so ``inspect.signature`` (and the sampler registry) reads the effective ones.
    """
    defaults = dict(defaults or {})
    sig = inspect.signature(sampler)
    unknown = set(defaults) - set(sig.parameters)
    if unknown:
        raise TypeError(f"{sampler.__name__} has no parameter {sorted(unknown)[0]}")

    @declare_orders(deterministic, weak)
    def fixed(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, **kw) -> SampleResult:
        return sampler(model, x, noise, order=order, **{**defaults, **kw})

    fixed.__name__ = fixed.__qualname__ = name
    fixed.__doc__ = doc
    fixed.__signature__ = sig.replace(parameters=[
        p.replace(default=defaults[p.name]) if p.name in defaults else p
        for p in sig.parameters.values() if p.name != "order"])
    return fixed


def noise_draw(noise: NoiseSource | None, needed: bool) -> Draw:
    """A :data:`Draw` taking the next per-sample draw of a NoiseSource (its interval arguments unused)."""
    if needed and noise is None:
        raise ValueError("a stochastic sampler (eta > 0) needs a NoiseSource")

    def draw(sigma_from: Tensor, sigma_to: Tensor) -> Tensor:
        return noise.draw()

    return draw


def coefs(sde: SDE, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(alpha_t, sigma_t, lambda_t) in float64; lambda = +inf where sigma_t = 0."""
    alpha, sigma = sde.marginal(t)
    return alpha, sigma, torch.log(alpha) - torch.log(sigma)


def phi1(h: Tensor) -> Tensor:
    """1 - e^{-h} = int_0^1 h e^{-h (1 - u)} du."""
    return -torch.expm1(-h)


def phi2(h: Tensor) -> Tensor:
    """(h - 1 + e^{-h}) / h = int_0^1 h e^{-h (1 - u)} u du, with a series near 0."""
    small = h.abs() < 1e-4
    hs = torch.where(small, torch.ones_like(h), h)
    return torch.where(small, h / 2 - h**2 / 6 + h**3 / 24, (torch.expm1(-hs) + hs) / hs)


def psi(h: Tensor) -> Tensor:
    """(e^h - 1 - h) / h, the noise-form second-order weight, with a series near 0."""
    small = h.abs() < 1e-4
    hs = torch.where(small, torch.ones_like(h), h)
    return torch.where(small, h / 2 + h**2 / 6 + h**3 / 24, (torch.expm1(hs) - hs) / hs)


def run_steps(model: ScoreModel, x: Tensor, grid: Tensor, step: Step, *, denoise: bool, progress: bool, desc: str,
              callback: Callable[[dict], None] | None = None, info: dict | None = None) -> SampleResult:
    """Run ``step`` over the grid under ``torch.no_grad()``; optional final Tweedie denoise (one NFE).

    The callback gets :func:`~.base.callback_state` with t = grid[i] and the state x before step i; a step
    returning a third item (a dict, e.g. ``{"sigma_hat": ...}``) adds or overrides keys of it.
    """
    start = model.nfe
    with torch.no_grad(), progress_bar(len(grid) - 1, progress, desc) as bar:
        for i in range(len(grid) - 1):
            x_new, d, *extra = step(x, i, as_time(grid[i], x), as_time(grid[i + 1], x))
            if callback is not None:
                callback(callback_state(i, x, grid[i], model.sde, d, **(extra[0] if extra else {})))
            x = x_new
            bar.update()
        if denoise and float(model.sde.sigma(grid[-1])) > 0:
            x = model.denoised(x, as_time(grid[-1], x))
    return SampleResult(x, model.nfe - start, info=dict(info or {}, grid=grid))
