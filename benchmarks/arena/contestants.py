"""scoresde's samplers in the arena, built from the sampler registry, and the roster of every contestant.

An entry names a registry sampler (``scoresde.samplers.registry.SAMPLERS``), its fixed options (the
command line's / configs' names) and the option the sweep sets (``steps``, or ``rtol`` for the adaptive
ones, with options tied to it such as atol = 0.156 rtol). ``resolve`` turns them into the call; every
scoresde sampler stops at the last noisy level t_end (``denoise`` off where the sampler has one).
Adding a scoresde sampler is one :class:`Ours` entry in :data:`SCORESDE`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scoresde.samplers.registry import SAMPLERS, resolve
from scoresde.samplers.seeds import MEASURED_DEFAULTS as SEEDS_MEASURED

from . import peers
from .base import Contestant, Context, Run


@dataclass(frozen=True)
class Ours:
    name: str                                   # the arena's name (tables, --samplers)
    sampler: str                                # its name in the registry
    options: Mapping[str, Any]                  # fixed registry options
    note: str
    swept: str = "steps"                        # the registry option the sweep sets
    tied: Mapping[str, float] = field(default_factory=dict)   # option = factor x the swept value
    nfe_per_step: int = 1
    sde: bool = True                            # False: an ODE solver, not in the "best SDE sampler" verdicts
    variant: bool = False

    def call(self, value: Any):
        return resolve(self.sampler, {**self.options, self.swept: value,
                                      **{k: value * f for k, f in self.tied.items()}})

    def contestant(self) -> Contestant:
        self.call(1 if self.swept == "steps" else 0.1)  # the registry accepts the entry (ValueError otherwise)

        def run(ctx: Context, value: Any) -> Run:
            fn, kwargs = self.call(value)
            res = fn(ctx.model, ctx.x, ctx.noise, **kwargs)
            sde = ctx.model.sde
            info = {k: res.info[k] for k in ("rejected", "accepted") if k in res.info}
            return Run(res.samples / float(sde.alpha(sde.t_end)), float(sde.sigma_tilde(sde.t_end)), info)

        return Contestant(self.name, "scoresde", self.note, run, self.swept, self.nfe_per_step, sde=self.sde,
                          variant=self.variant)


NO_DENOISE = {"denoise": False}
#: PC ends on its last noisy state too (not score_sde_pytorch's noise-free last mean)
PC_END = {"final_mean": False, **NO_DENOISE}

#: the grid of the multistep entries (ms2 / ms3's default, chosen by benchmarks/grids.py, results/grids.md)
MS_GRID = "logsnr"
MS_WEIGHT = {2: ", phi1 weight", 3: ", full I_2 weight"}

SEEDS_DEFAULT_TEXT = {k: "eta {eta:g}, {grid} grid (registry default)".format(**{"eta": 1.0, "grid": "logsnr", **d})
                      for k, d in SEEDS_MEASURED.items()}

#: scoresde's samplers in the arena
SCORESDE = (
    Ours("em", "pc", {"predictor": "euler_maruyama", "corrector": "none", **PC_END}, "Euler-Maruyama, uniform t"),
    Ours("pc", "pc", {"predictor": "reverse_diffusion", "corrector": "langevin", "snr": 0.01, **PC_END},
         "reverse diffusion + Langevin (snr 0.01, batch-averaged norms), uniform t", nfe_per_step=2),
    # SEEDS at the registry's measured defaults (benchmarks/grids.py): SEEDS-1 log-SNR, eta 1; SEEDS-2/3 quadratic,
    # eta 0.5
    *(Ours(f"seeds-{k}", f"seeds{k}", dict(NO_DENOISE), f"SEEDS-{k}, {SEEDS_DEFAULT_TEXT[k]}", nfe_per_step=k)
      for k in (1, 2, 3)),
    *(Ours(f"ms{k}-sde", f"ms{k}", {"eta": 1.0, "grid": MS_GRID, **NO_DENOISE},
           f"multistep stochastic exponential (order {k}, 1 NFE/step{MS_WEIGHT[k]}), eta 1, {MS_GRID} grid")
      for k in (2, 3)),
    *(Ours(f"ms{k}-ode", f"ms{k}", {"eta": 0.0, "grid": MS_GRID, **NO_DENOISE},
           f"ms{k} at eta 0 (DPM-Solver++({k}M) ODE{MS_WEIGHT[k]}), {MS_GRID} grid", sde=False) for k in (2, 3)),
    Ours("ggf", "ggf", {"noise_mode": "bridge", **NO_DENOISE},
         "Gotta Go Fast, Brownian-bridge retries, atol = 0.156 rtol (0.0078 at rtol 0.05)", swept="rtol",
         tied={"atol": 0.156}, nfe_per_step=2),
    Ours("ggf-fresh", "ggf", {"noise_mode": "fresh", **NO_DENOISE},
         "Gotta Go Fast with the paper's fresh noise after a rejection", swept="rtol", tied={"atol": 0.156},
         nfe_per_step=2, variant=True),
    Ours("ggf-noise", "ggf", {"noise_mode": "bridge", "tolerance": "noise", **NO_DENOISE},
         "Gotta Go Fast, bridge retries, tolerance relative to the noise level, atol = 0.01 rtol", swept="rtol",
         tied={"atol": 0.01}, nfe_per_step=2),
    Ours("adaptive", "adaptive", {"eta": 1.0, **NO_DENOISE},
         "adaptive exponential SDE solver (SEEDS-1/2 pair, noise-relative tolerance, bridge retries), eta 1",
         swept="rtol", tied={"atol": 0.01}, nfe_per_step=2),
    Ours("adaptive-ode", "adaptive", {"eta": 0.0, **NO_DENOISE},
         "adaptive exponential solver at eta 0 (an adaptive DPM-Solver-12)", swept="rtol", tied={"atol": 0.01},
         nfe_per_step=2, sde=False),
)


def roster(notes: list[str]) -> list[Contestant]:
    """Every available contestant: scoresde's, then each installed peer family's; what is skipped goes to notes."""
    out = []
    for e in SCORESDE:
        try:
            out.append(e.contestant())
        except (ValueError, KeyError) as err:
            notes.append(f"{e.name} skipped: registry sampler {e.sampler!r} rejects its entry ({err}); "
                         f"registry samplers: {', '.join(SAMPLERS)}")
    for family, load, entries in peers.FAMILIES:
        try:
            lib = load()
        except Exception as err:  # noqa: BLE001 - a missing or broken peer is a note, not a failure
            notes.append(f"{family} skipped ({type(err).__name__}: {err})")
            continue
        out += [e.contestant(lib) for e in entries]
    return out
