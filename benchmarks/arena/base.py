"""What every part of the arena shares: the counting model, a contestant entry, a run's context and result."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from scoresde.brownian import NoiseSource
from scoresde.parameterization import ScoreModel
from scoresde.seeding import PEER_NOISE


class Counted(ScoreModel):
    """An inner score model's predictions, supplied through :meth:`predict`, timed and counted by the row.

    NFE is :attr:`nfe` of :class:`ScoreModel` itself (one per batched call of ``output``/``score``/``eps``/
    ``denoised``); this class adds ``sample_evals`` (rows evaluated: per-sample NFE for samplers that step
    samples individually) and ``model_time`` (seconds spent inside the inner model's ``predict``).
    """

    def __init__(self, inner: ScoreModel):
        super().__init__(inner.sde, inner.prediction)
        self.inner = inner
        self.reset()

    def reset(self) -> None:
        self.nfe, self.sample_evals, self.model_time = 0, 0, 0.0

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        self.sample_evals += x.shape[0]
        t0 = time.perf_counter()
        out = self.inner.predict(x, t)
        self.model_time += time.perf_counter() - t0
        return out


@dataclass
class Context:
    """What a contestant's run gets: the counted model, x_T (first draw of each sample's stream), the noise."""

    model: Counted
    x: Tensor
    noise: NoiseSource
    peer_seed: int          # the seed of a peer that draws its own noise (its contestant's seed stream)


@dataclass
class Run:
    x_ve: Tensor            # the state at the last noisy level, in VE space (x / alpha)
    sigma_end: float        # its sigma~
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Contestant:
    """One sampler of the arena: ``run(ctx, setting) -> Run``, the setting being ``swept`` (steps or rtol)."""

    name: str
    family: str                               # scoresde | k-diffusion | diffusers
    note: str
    run: Callable[[Context, Any], Run]
    swept: str = "steps"                      # steps: fixed-step sweep from NFE budgets | rtol: adaptive
    nfe_per_step: int = 1                     # turns a problem's NFE budgets into step counts
    max_steps: int | None = None              # the most steps it takes (diffusers: its 1000 training timesteps)
    sde: bool = True                          # integrates the reverse SDE (False: a probability-flow ODE solver)
    variant: bool = False                     # a variant for a side study, left out of the "best of" verdicts
    seed_stream: int = PEER_NOISE             # scoresde.seeding stream of ctx.peer_seed

    def setting_text(self, p: Any) -> str:
        return f"rtol {p:g}" if self.swept == "rtol" else f"{p} steps"


@dataclass
class Result:
    problem: str
    sampler: str
    setting: Any
    setting_text: str
    nfe_batch: int          # batched model calls
    nfe_sample: float       # model rows per sample
    wall: float
    model_time: float
    quality: dict[str, float]
    ok: bool
    info: dict[str, Any]
