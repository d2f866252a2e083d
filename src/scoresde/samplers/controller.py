"""Step-size controllers for adaptive solvers: per-sample accept/reject decisions and next step sizes.

A controller sees, for each sample still integrating, the scaled error estimate E (E <= 1 means
within tolerance), the step size h just attempted and the time left before the end. ``propose``
returns the accept mask and the next step size, with the rules shared by every controller:

* accept iff E <= 1, or h is already at the floor ``h_min`` (a forced accept, so no loop stalls);
  a non-finite E counts as a rejection;
* the next h is at least ``h_min``, a rejected step shrinks by at least ``max_reject_factor``,
  and h never runs past the end time (a sample that reached it gets h = 0).

:class:`GGFController` is the rule of Jolicoeur-Martineau et al. (2021, "Gotta Go Fast", Algorithm 1):
h <- theta h E^(-r) (optionally with a growth cap ``factor_max``). :class:`PIDController` is a PID step-size controller (Soederlind 2002/2003, in
the form used by diffrax): h <- safety h E_n^(-b1/k) E_(n-1)^(-b2/k) E_(n-2)^(-b3/k).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["GGFController", "PIDController", "StepSizeController"]


class StepSizeController:
    """Base class: subclasses give the step-size factor; the shared accept and clipping rules live here."""

    def __init__(self, h_min: float = 0.0, max_reject_factor: float = 0.9):
        if not h_min >= 0 or not math.isfinite(h_min):
            raise ValueError(f"h_min must be finite and >= 0, got {h_min}")
        if not 0 < max_reject_factor < 1:
            raise ValueError(f"max_reject_factor must lie in (0, 1), got {max_reject_factor}")
        self.h_min, self.max_reject_factor = float(h_min), float(max_reject_factor)

    def reset(self, batch_size: int) -> None:
        """Forget any per-sample history (called by the solver before a run)."""

    def factor(self, error: Tensor, accept: Tensor, rows: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The multiplier of h for each sample (error > 0, finite or inf)."""
        raise NotImplementedError

    def propose(self, error: Tensor, h: Tensor, remaining: Tensor,
                rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(accept mask, next step size) per sample.

        ``error``: scaled error estimates E; ``h``: the steps just attempted; ``remaining``: time left
        before the attempt (t - t_end); ``rows``: the samples' positions in the batch (for controllers
        with per-sample history; default 0..n-1).
        """
        error = torch.nan_to_num(error.double(), nan=math.inf, posinf=math.inf)
        h, remaining = h.double(), remaining.double()
        if rows is None:
            rows = torch.arange(error.shape[0])
        forced = h <= self.h_min * (1 + 1e-12)
        accept = (error <= 1) | forced
        f = self.factor(error.clamp_min(1e-12), accept, rows)
        f = torch.where(accept, f, f.clamp_max(self.max_reject_factor))
        h_next = (h * f).clamp_min(self.h_min)
        left = torch.where(accept, remaining - h, remaining)
        h_next = torch.where(left > 0, torch.minimum(h_next, left), torch.zeros_like(h_next))
        return accept, h_next


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

    def factor(self, error: Tensor, accept: Tensor, rows: Tensor) -> Tensor:
        f = self.theta * error.pow(-self.r)
        return f if self.factor_max is None else f.clamp_max(self.factor_max)


class PIDController(StepSizeController):
    """PID step-size control (Soederlind 2003; diffrax's PIDController), per sample.

    factor = safety * E_n^(-b1/k) * E_(n-1)^(-b2/k) * E_(n-2)^(-b3/k), with b1 = pcoeff + icoeff + dcoeff,
    b2 = -(pcoeff + 2 dcoeff), b3 = dcoeff, k = ``order`` (the error estimate's order + 1 for an ODE
    pair); clipped to [factormin, factormax]. The history E_(n-1), E_(n-2) holds accepted errors only
    (1 before the first); a rejected step uses the integral term alone, safety E_n^(-1/k), capped at 1.
    pcoeff = dcoeff = 0, icoeff = 1 is the plain I controller (GGF's rule with r = 1/k, theta = safety).
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
        self._prev = torch.ones(0, 2, dtype=torch.float64)  # (E_(n-1), E_(n-2)) per sample

    def reset(self, batch_size: int) -> None:
        self._prev = torch.ones(int(batch_size), 2, dtype=torch.float64)

    def factor(self, error: Tensor, accept: Tensor, rows: Tensor) -> Tensor:
        if rows.numel() and int(rows.max()) >= self._prev.shape[0]:
            raise RuntimeError("PIDController.reset(batch_size) must be called before a run")
        k = self.order
        b1 = self.pcoeff + self.icoeff + self.dcoeff
        b2, b3 = -(self.pcoeff + 2 * self.dcoeff), self.dcoeff
        prev = self._prev[rows]
        e = error.clamp_max(1e300)
        pid = self.safety * e.pow(-b1 / k) * prev[:, 0].pow(-b2 / k) * prev[:, 1].pow(-b3 / k)
        on_reject = (self.safety * e.pow(-1 / k)).clamp_max(1.0)
        f = torch.where(accept, pid, on_reject).clamp(self.factormin, self.factormax)
        # accepted errors enter the history
        new_prev = torch.where(accept[:, None], torch.stack([e, prev[:, 0]], 1), prev)
        self._prev[rows] = new_prev
        return f
