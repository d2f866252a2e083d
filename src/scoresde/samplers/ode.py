"""Probability-flow ODE sampler (Song et al. ICLR 2021, eq. 13) on torchdiffeq.

dx/dt = f(x, t) - g(t)^2 score(x, t) / 2, integrated from T to t_end: adaptive dopri5 with
rtol/atol, or a fixed-step Euler / Heun / RK4 grid (float64 times). The step sizes of the
adaptive solver are shared by the batch, so an adaptive sample depends on its batch at the level
of the tolerance; the fixed-step methods are exactly batch-invariant.

Callbacks and the progress bar go through torchdiffeq's step callbacks: a fixed-step method
reports each step (bar: steps); dopri5 reports each attempt, accepted or rejected (bar: time).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchdiffeq import odeint

from .._tensor import as_time
from ..brownian import NoiseSource
from ..parameterization import ScoreModel
from ..schedules import uniform_time
from .base import SampleResult, callback_state, progress_bar

__all__ = ["ode_sample", "ODE_METHODS", "probability_flow"]

#: our method names -> torchdiffeq's (the fixed-step ones take a float64 grid)
ODE_METHODS = {"dopri5": "dopri5", "euler": "euler", "heun": "heun2", "rk4": "rk4"}
_ADAPTIVE = {"dopri5"}


def probability_flow(model: ScoreModel):
    """The probability-flow velocity v(t, x) as torchdiffeq calls it (scalar t)."""

    def velocity(t: Tensor, x: Tensor) -> Tensor:
        tt = as_time(t.detach().double(), x)
        return model.sde.probability_flow_drift(x, tt, model.score(x, tt))

    return velocity


def ode_sample(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, method: str = "dopri5",
               rtol: float = 1e-5, atol: float = 1e-5, steps: int = 100, t_end: float | None = None,
               grid: Tensor | None = None, denoise: bool = False, progress: bool = False,
               callback: Callable[[dict[str, Any]], None] | None = None) -> SampleResult:
    """Integrate the probability-flow ODE from x_T at T to t_end; NFE is the number of score calls.

    ``denoise`` adds one Tweedie step x <- D(x, t_end) (one more NFE). ``noise`` is unused (the ODE
    is deterministic given x_T) and accepted for a uniform sampler signature.

    ``callback(state)`` gets :func:`~.base.callback_state`'s keys (x and t before the step, ``denoised``
    None): for a fixed-step method after each step i (extra ``t_next``), for dopri5 after each
    attempt i (extras ``h``, the attempted step, and ``accepted``). Runs under ``torch.no_grad()``.
    """
    if method not in ODE_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; expected one of {', '.join(ODE_METHODS)}")
    sde = model.sde
    t_end = sde.t_end if t_end is None else float(t_end)
    start = model.nfe
    adaptive = method in _ADAPTIVE
    if adaptive:
        if rtol <= 0 or atol <= 0:
            raise ValueError("rtol and atol must be > 0")
    elif grid is None:
        grid = uniform_time(sde, steps, t_end)
    total = round(sde.T - t_end, 6) if adaptive else len(grid) - 1
    with torch.no_grad(), progress_bar(total, progress, f"ode {method}" + (" t" if adaptive else "")) as bar:
        f = probability_flow(model)
        if adaptive:
            attempts = [0]

            def attempt(accepted: bool):
                def report(t0: Tensor, y0: Tensor, dt: Tensor) -> None:
                    t0, h = float(t0), float(dt)  # time runs down: dt > 0 is the step size
                    if callback is not None:
                        callback(callback_state(attempts[0], y0, as_time(t0, y0), sde, None, h=h, accepted=accepted))
                    attempts[0] += 1
                    if accepted:
                        bar.update(round(sde.T - (t0 - h), 6) - bar.n)

                return report

            f.callback_accept_step, f.callback_reject_step = attempt(True), attempt(False)
            ts = torch.tensor([sde.T, t_end], dtype=torch.float64)
            # step_t makes the solver land on t_end instead of stepping past it (and past t = 0, where
            # the SDE is undefined); a first step inside [t_end, T] avoids probing times outside it
            opts = {"step_t": ts[1:], "first_step": 0.01 * (sde.T - t_end)}
            x = odeint(f, x, ts, rtol=rtol, atol=atol, method="dopri5", options=opts)[-1]
        else:
            g = grid.to(torch.float64)
            # torchdiffeq calls callback_step as each step starts; step i is reported once it is done
            pending: list[tuple[int, Tensor]] = []
            started = [0]

            def flush() -> None:
                if pending:
                    i, y0 = pending.pop()
                    if callback is not None:
                        callback(callback_state(i, y0, as_time(g[i], y0), sde, None, t_next=as_time(g[i + 1], y0)))
                    bar.update()

            def step_started(t0: Tensor, y0: Tensor, dt: Tensor) -> None:
                flush()
                pending.append((started[0], y0))
                started[0] += 1

            f.callback_step = step_started
            ts = torch.stack([g[0], g[-1]])
            x = odeint(f, x, ts, method=ODE_METHODS[method],
                       options={"grid_constructor": lambda *_: g})[-1]
            flush()
        if denoise:
            x = model.denoised(x, as_time(t_end, x))
    return SampleResult(x, model.nfe - start, info={"method": method})
