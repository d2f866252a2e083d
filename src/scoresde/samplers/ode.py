"""Probability-flow ODE sampler (Song et al. ICLR 2021, eq. 13) on torchdiffeq.

dx/dt = f(x, t) - g(t)^2 score(x, t) / 2, integrated from T to t_end: adaptive dopri5 with
rtol/atol, or a fixed-step Euler / Heun / RK4 grid (float64 times). The step sizes of the
adaptive solver are shared by the batch, so an adaptive sample depends on its batch at the level
of the tolerance; the fixed-step methods are exactly batch-invariant.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchdiffeq import odeint

from .._tensor import as_time
from ..brownian import NoiseSource
from ..parameterization import ScoreModel
from ..schedules import uniform_time
from .base import SampleResult, progress_bar

__all__ = ["ode_sample", "ODE_METHODS", "probability_flow"]

#: our method names -> torchdiffeq's (the fixed-step ones take a float64 grid)
ODE_METHODS = {"dopri5": "dopri5", "euler": "euler", "heun": "heun2", "rk4": "rk4"}
_ADAPTIVE = {"dopri5"}


def probability_flow(model: ScoreModel, bar=None):
    """The probability-flow velocity v(t, x) as torchdiffeq calls it (scalar t)."""

    def velocity(t: Tensor, x: Tensor) -> Tensor:
        tt = as_time(t.detach().double(), x)
        if bar is not None:
            bar.update()
        return model.sde.probability_flow_drift(x, tt, model.score(x, tt))

    return velocity


def ode_sample(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, method: str = "dopri5",
               rtol: float = 1e-5, atol: float = 1e-5, steps: int = 100, t_end: float | None = None,
               grid: Tensor | None = None, denoise: bool = False, progress: bool = False) -> SampleResult:
    """Integrate the probability-flow ODE from x_T at T to t_end; NFE is the number of score calls.

    ``denoise`` adds one Tweedie step x <- D(x, t_end) (one more NFE). ``noise`` is unused (the ODE
    is deterministic given x_T) and accepted for a uniform sampler signature.
    """
    if method not in ODE_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; expected one of {', '.join(ODE_METHODS)}")
    sde = model.sde
    t_end = sde.t_end if t_end is None else float(t_end)
    start = model.nfe
    with torch.no_grad(), progress_bar(None, progress, f"ode {method} (NFE)") as bar:
        f = probability_flow(model, bar)
        if method in _ADAPTIVE:
            if rtol <= 0 or atol <= 0:
                raise ValueError("rtol and atol must be > 0")
            ts = torch.tensor([sde.T, t_end], dtype=torch.float64)
            # step_t makes the solver land on t_end instead of stepping past it (and past t = 0, where
            # the SDE is undefined); a first step inside [t_end, T] avoids probing times outside it
            opts = {"step_t": ts[1:], "first_step": 0.01 * (sde.T - t_end)}
            x = odeint(f, x, ts, rtol=rtol, atol=atol, method="dopri5", options=opts)[-1]
        else:
            if grid is None:
                grid = uniform_time(sde, steps, t_end)
            g = grid.to(torch.float64)
            ts = torch.stack([g[0], g[-1]])
            x = odeint(f, x, ts, method=ODE_METHODS[method],
                       options={"grid_constructor": lambda *_: g})[-1]
        if denoise:
            x = model.denoised(x, as_time(t_end, x))
    return SampleResult(x, model.nfe - start, info={"method": method})
