"""Step-size controllers for adaptive solvers: per-sample accept/reject decisions and next step sizes.

A controller is a fixed rule; everything a run changes lives in a :class:`ControllerState` that the
solver passes in and gets back (diffrax style), never on the controller::

    state = controller.init(batch_size, h_min=floor)
    accept, h_next, state = controller.propose(state, error, h, remaining, rows)

so one controller serves any number of runs, concurrent or not. ``propose`` sees, for each sample still
integrating, the scaled error estimate E (E <= 1 means within tolerance), the step size h just
attempted and the time left before the end, and returns the accept mask and the next step size,
with the rules shared by every controller:

* accept iff E <= 1, or h is already at the floor ``state.h_min`` (a forced accept, so no loop stalls);
  a non-finite E counts as a rejection;
* the next h is at least ``state.h_min``, a rejected step shrinks by at least ``max_reject_factor``,
  and h never runs past the end time (a sample that reached it gets h = 0).

The floor of a run is the larger of the controller's own ``h_min`` and the ``h_min`` given to ``init``.

:class:`GGFController` is the rule of Jolicoeur-Martineau et al. (2021, "Gotta Go Fast", Algorithm 1):
h <- theta h E^(-r) (optionally with a growth cap ``factor_max``). :class:`PIDController` is a PID step-size
controller (Soederlind 2002/2003, in the form used by diffrax): h <- safety h E_n^(-b1/k) E_(n-1)^(-b2/k) E_(n-2)^(-b3/k).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

__all__ = ["ControllerState", "GGFController", "PIDController", "StepSizeController"]


@dataclass(frozen=True)
class ControllerState:
    """What a run's controller carries from one attempt to the next.

    ``h_min``: the run's step-size floor; ``history``: per-sample history of controllers that keep one
    (PID: the accepted errors (E_(n-1), E_(n-2)), shape (batch, 2)), else None.
    """

    h_min: float
    history: Tensor | None = None


class StepSizeController:
    """Base class: subclasses give the step-size factor; the shared accept and clipping rules live here."""

    def __init__(self, h_min: float = 0.0, max_reject_factor: float = 0.9):
        if not h_min >= 0 or not math.isfinite(h_min):
            raise ValueError(f"h_min must be finite and >= 0, got {h_min}")
        if not 0 < max_reject_factor < 1:
            raise ValueError(f"max_reject_factor must lie in (0, 1), got {max_reject_factor}")
        self.h_min, self.max_reject_factor = float(h_min), float(max_reject_factor)

    def init(self, batch_size: int, h_min: float = 0.0) -> ControllerState:
        """The state at the start of a run over ``batch_size`` samples, floor max(self.h_min, h_min)."""
        if not h_min >= 0 or not math.isfinite(h_min):
            raise ValueError(f"h_min must be finite and >= 0, got {h_min}")
        return ControllerState(max(self.h_min, float(h_min)), self._init_history(int(batch_size)))

    def _init_history(self, batch_size: int) -> Tensor | None:
        return None

    def reset(self, state: ControllerState, rows: Tensor) -> ControllerState:
        """A new state whose ``rows`` start afresh (a slot handed to a new sample); ``state`` is left as it is."""
        if state.history is None or rows.numel() == 0:
            return state
        fresh = self._init_history(int(rows.numel()))
        return replace(state, history=state.history.index_put((rows,), fresh))

    def factor(self, state: ControllerState, error: Tensor, accept: Tensor,
               rows: Tensor) -> tuple[Tensor, ControllerState]:  # pragma: no cover - abstract
        """(the multiplier of h for each sample (error > 0, finite or inf), the updated state)."""
        raise NotImplementedError

    def propose(self, state: ControllerState, error: Tensor, h: Tensor, remaining: Tensor,
                rows: Tensor | None = None) -> tuple[Tensor, Tensor, ControllerState]:
        """(accept mask, next step size, new state) per sample; ``state`` itself is left as it is.

        ``error``: scaled error estimates E; ``h``: the steps just attempted; ``remaining``: time left
        before the attempt (t - t_end); ``rows``: the samples' positions in the batch (for controllers
        with per-sample history; default 0..n-1).
        """
        error = torch.nan_to_num(error.double(), nan=math.inf, posinf=math.inf)
        h, remaining = h.double(), remaining.double()
        if rows is None:
            rows = torch.arange(error.shape[0])
        forced = h <= state.h_min * (1 + 1e-12)
        accept = (error <= 1) | forced
        f, state = self.factor(state, error.clamp_min(1e-12), accept, rows)
        f = torch.where(accept, f, f.clamp_max(self.max_reject_factor))
        h_next = (h * f).clamp_min(state.h_min)
        left = torch.where(accept, remaining - h, remaining)
        h_next = torch.where(left > 0, torch.minimum(h_next, left), torch.zeros_like(h_next))
        return accept, h_next, state


class GGFController(StepSizeController):
    """Gotta Go Fast's rule (Jolicoeur-Martineau et al. 2021, Alg. 1): h <- min(t - t_end, theta h E^(-r))."""

    def __init__(self, theta: float = 0.9, r: float = 0.9, h_min: float = 0.0, factor_max: float | None = None):
        super().__init__(h_min)
        if not 0 < theta < 1 or not r > 0:
            raise ValueError(f"GGF needs 0 < theta < 1 and r > 0, got theta={theta}, r={r}")
        if factor_max is not None and not factor_max > 1:
            raise ValueError(f"factor_max must be > 1 (or None: unbounded, as in the paper), got {factor_max}")
        self.theta, self.r = float(theta), float(r)
        self.factor_max = None if factor_max is None else float(factor_max)

    def factor(self, state: ControllerState, error: Tensor, accept: Tensor,
               rows: Tensor) -> tuple[Tensor, ControllerState]:
        f = self.theta * error.pow(-self.r)
        return (f if self.factor_max is None else f.clamp_max(self.factor_max)), state


class PIDController(StepSizeController):
    """PID step-size control (Soederlind 2003; diffrax's PIDController), per sample.

    factor = safety * E_n^(-b1/k) * E_(n-1)^(-b2/k) * E_(n-2)^(-b3/k), with b1 = pcoeff + icoeff + dcoeff,
    b2 = -(pcoeff + 2 dcoeff), b3 = dcoeff, k = ``order`` (the error estimate's order + 1 for an ODE
    pair); clipped to [factormin, factormax]. The history E_(n-1), E_(n-2) (in the state) holds accepted
    errors only (1 before the first); a rejected step uses the integral term alone, safety E_n^(-1/k),
    capped at 1. pcoeff = dcoeff = 0, icoeff = 1 is the plain I controller (GGF's rule with r = 1/k,
    theta = safety).
    """

    def __init__(self, pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0, order: float = 1.0,
                 safety: float = 0.9, factormin: float = 0.2, factormax: float = 10.0, h_min: float = 0.0):
        super().__init__(h_min)
        if not order > 0 or not 0 < safety <= 1 or not 0 < factormin < 1 < factormax:
            raise ValueError("PID needs order > 0, 0 < safety <= 1 and 0 < factormin < 1 < factormax; got "
                             f"order={order}, safety={safety}, factormin={factormin}, factormax={factormax}")
        self.pcoeff, self.icoeff, self.dcoeff = float(pcoeff), float(icoeff), float(dcoeff)
        self.order, self.safety = float(order), float(safety)
        self.factormin, self.factormax = float(factormin), float(factormax)

    def _init_history(self, batch_size: int) -> Tensor:
        return torch.ones(batch_size, 2, dtype=torch.float64)  # (E_(n-1), E_(n-2)) per sample

    def factor(self, state: ControllerState, error: Tensor, accept: Tensor,
               rows: Tensor) -> tuple[Tensor, ControllerState]:
        hist = state.history
        if hist is None or (rows.numel() and int(rows.max()) >= hist.shape[0]):
            raise ValueError("PIDController: the state does not cover these rows; "
                             "start the run with state = controller.init(batch_size)")
        k = self.order
        b1 = self.pcoeff + self.icoeff + self.dcoeff
        b2, b3 = -(self.pcoeff + 2 * self.dcoeff), self.dcoeff
        prev = hist[rows]
        e = error.clamp_max(1e300)
        pid = self.safety * e.pow(-b1 / k) * prev[:, 0].pow(-b2 / k) * prev[:, 1].pow(-b3 / k)
        on_reject = (self.safety * e.pow(-1 / k)).clamp_max(1.0)
        f = torch.where(accept, pid, on_reject).clamp(self.factormin, self.factormax)
        # accepted errors enter the history (of a new state: the old one is left as it is)
        new_prev = torch.where(accept[:, None], torch.stack([e, prev[:, 0]], 1), prev)
        return f, replace(state, history=hist.index_put((rows,), new_prev))
