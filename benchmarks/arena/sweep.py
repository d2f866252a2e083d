"""Running the arena: one run of a contestant at one setting, its sweep, a problem's sweeps, side studies.

A sweep is defined by its settings only (never by the time it takes): the problem's explicit list for a
sampler, else its NFE budgets turned into steps (fixed-step samplers) or its rtol list (adaptive ones).
It stops once the target holds at two consecutive settings, or once a run's NFE exceeds 2.5 x the
largest budget; both rules are deterministic.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scoresde.brownian import NoiseSource
from scoresde.seeding import sample_seed

from .base import Contestant, Context, Counted, Result
from .problems import Instance

Log = Callable[[str], None]


def _like(v: Tensor, x: Tensor) -> Tensor:
    """A per-sample (or scalar) coefficient broadcast against x, in x's dtype."""
    v = v.to(device=x.device, dtype=x.dtype)
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def settings(inst: Instance, c: Contestant) -> list:
    """The settings ``c`` is swept over on ``inst`` (empty: it does not run there)."""
    if c.name in inst.problem.exclude:
        return []
    explicit = inst.problem.settings
    if explicit is not None:
        return list(explicit[c.name][inst.quick]) if c.name in explicit else []
    if c.swept == "rtol":
        return list(inst.tols)
    k = c.nfe_per_step
    return sorted({max(1, round(b / k)) for b in inst.budgets if c.max_steps is None or b / k <= c.max_steps})


class Runner:
    """Runs contestants on one problem instance; every run is counted by one :class:`Counted` model."""

    def __init__(self, inst: Instance, seed: int, log: Log):
        self.inst, self.seed, self.log = inst, seed, log
        self.counted = Counted(inst.setup.model)
        self.cache: dict[tuple[str, Any], Result] = {}
        self.reference: dict[str, float] | None = None

    def one(self, c: Contestant, setting: Any) -> Result:
        """``c`` at ``setting`` from the same x_T (the first draw of each sample's seeded stream); cached."""
        key = (c.name, setting)
        if key in self.cache:
            return self.cache[key]
        inst, counted = self.inst, self.counted
        noise = NoiseSource(self.seed, inst.setup.shape, range(inst.n), dtype=inst.setup.dtype)
        x_T = counted.sde.prior_sample(noise.draw())
        ctx = Context(counted, x_T, noise, int(sample_seed(self.seed, 0, stream=c.seed_stream) % 2**31))
        counted.reset()
        t0 = time.perf_counter()
        with torch.no_grad():
            run = c.run(ctx, setting)
            x_out = run.x_ve
            if inst.problem.final_denoise:
                t_end = counted.sde.t_from_sigma_tilde(torch.tensor(run.sigma_end, dtype=torch.float64))
                x_out = counted.denoised(run.x_ve * _like(counted.sde.alpha(t_end), run.x_ve), t_end.expand(inst.n))
        wall = time.perf_counter() - t0
        q = inst.setup.judge(x_out, run.sigma_end)
        r = Result(inst.name, c.name, setting, c.setting_text(setting), counted.nfe, counted.sample_evals / inst.n,
                   wall, counted.model_time, q, inst.problem.target(q, self.reference), run.info)
        self.cache[key] = r
        return r

    def set_reference(self, contestants: Sequence[Contestant]) -> None:
        """Run the problem's reference first: the target of every run is relative to its quality."""
        if self.inst.problem.reference is None:
            return
        name, setting = self.inst.problem.reference
        c = next((c for c in contestants if c.name == name), None)
        if c is None:
            self.log(f"  reference {name} not available: no run meets the target")
            return
        try:
            r = self.one(c, setting)
        except Exception as e:  # noqa: BLE001 - reported; no run meets the target then
            self.log(f"  reference {name} {c.setting_text(setting)}: FAILED {type(e).__name__}: {e}")
            return
        self.reference = r.quality
        r.ok = self.inst.problem.target(r.quality, self.reference)

    def _line(self, c: Contestant, r: Result) -> str:
        qs = " ".join(f"{k}={r.quality.get(k, math.nan):.4g}" for k, _ in self.inst.problem.columns)
        return (f"  {c.name:22s} p={r.setting:<7g} NFE {r.nfe_sample:7.1f} (batch {r.nfe_batch:5d})  {qs}  "
                f"{'OK' if r.ok else '  '}  {r.wall:6.2f}s model {r.model_time:6.2f}s")

    def sweep(self, c: Contestant) -> list[Result]:
        out, met = [], 0
        limit = 2.5 * max(self.inst.budgets, default=math.inf)
        for p in settings(self.inst, c):
            try:
                r = self.one(c, p)
            except Exception as e:  # noqa: BLE001 - a sampler that fails is reported, not fatal
                self.log(f"  {c.name} setting {p}: FAILED {type(e).__name__}: {e}")
                break
            out.append(r)
            self.log(self._line(c, r))
            met = met + 1 if r.ok else 0
            if met >= 2 or r.nfe_sample > limit:
                break
        return out


def run_problem(inst: Instance, contestants: Sequence[Contestant], seed: int, log: Log
                ) -> tuple[Runner, dict[str, list[Result]]]:
    runner = Runner(inst, seed, log)
    runner.set_reference(contestants)
    by = {c.name: runner.sweep(c) for c in contestants if settings(inst, c)}
    return runner, by


@dataclass(frozen=True)
class Study:
    """A side table: some samplers at some settings on one problem (runs it shares with the sweeps are reused)."""

    title: str
    problem: str
    samplers: tuple[str, ...]
    settings: tuple
    label: tuple[str, dict[str, str]]              # (header, sampler -> row label)
    columns: tuple[tuple[str, str], ...]


STUDIES = (
    Study("GGF bias on gmm8: light-mode weight (truth 1/12 = 0.0833)", "gmm8", ("ggf", "ggf-fresh"), (0.05, 0.01),
          ("noise mode", {"ggf": "bridge", "ggf-fresh": "fresh"}),
          (("light", "light-mode weight"), ("tv", "mode TV"), ("spread", "spread"))),
)


def run_study(study: Study, runner: Runner, contestants: Sequence[Contestant]) -> list[Result]:
    by = {c.name: c for c in contestants}
    out = []
    for p in study.settings:
        for name in study.samplers:
            r = runner.one(by[name], p)
            runner.log(f"  {study.problem} study: {name} {r.setting_text}: "
                       + " ".join(f"{k} {r.quality[k]:.4g}" for k, _ in study.columns) + f" NFE {r.nfe_sample:.1f}")
            out.append(r)
    return out


def nfe_to_target(results: Sequence[Result], per: str = "sample") -> tuple[str, float]:
    """The first setting from which the target holds at two consecutive settings (robust to a lucky hit).

    A target met only at the sweep's last setting counts too (marked '~'); '>N': not reached, N the largest NFE.
    """
    key = (lambda r: r.nfe_sample) if per == "sample" else (lambda r: r.nfe_batch)
    for i, r in enumerate(results):
        if r.ok and i + 1 < len(results) and results[i + 1].ok:
            return f"{key(r):.0f}", key(r)
    if results and results[-1].ok:
        return f"~{key(results[-1]):.0f}", key(results[-1])
    return f">{max((key(r) for r in results), default=0):.0f}", math.inf
