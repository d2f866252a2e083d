"""The arena's problems and their judges: one :class:`Problem` entry in :data:`PROBLEMS` per problem.

A problem says everything the sweep and the report need about it: how to build its model (lazily: data
are loaded only when it runs), its sample count, its sweep lists, its judge and target, its table
columns and plot, whether a counted final denoise follows the last noisy level, whether it runs only
some samplers at given settings, and whether its target is relative to a reference run.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scoresde.exact import EmpiricalDistribution, ExactScoreModel, GaussianMixture, load_problem
from scoresde.parameterization import ScoreModel
from scoresde.quality import mixture_report
from scoresde.sde import VPSDE

ROOT = Path(__file__).resolve().parents[2]

Judge = Callable[[Tensor, float], dict[str, float]]
#: target(quality, reference quality or None) -> met
Target = Callable[[dict[str, float], "dict[str, float] | None"], bool]


class Unavailable(Exception):
    """A problem that cannot run here (e.g. no trained model); the arena skips it with this note."""


@dataclass
class Setup:
    model: ScoreModel
    shape: tuple[int, ...]
    dtype: torch.dtype
    judge: Judge
    title_fields: dict[str, Any] = field(default_factory=dict)   # filled into Problem.title
    header: list[str] = field(default_factory=list)               # lines above its table


@dataclass(frozen=True)
class Problem:
    name: str
    title: str                                   # format string: {n} and the setup's title_fields
    setup: Callable[[int], Setup]                # n -> Setup; raises Unavailable
    n: tuple[int, int]                           # samples (full run, --quick)
    target: Target
    target_text: str
    columns: tuple[tuple[str, str], ...]         # (quality key, header) of its table
    plot: tuple[tuple[str, str, float | None], ...]  # two (quality key, axis label, target line); "spread": |s-1|
    budgets: tuple[Sequence[int], Sequence[int]] = ((), ())      # NFE budgets of fixed-step sweeps (full, quick)
    tols: tuple[Sequence[float], Sequence[float]] = ((), ())     # rtol of adaptive sweeps (full, quick)
    #: only these samplers, at these settings (full, quick); None: every sampler over budgets / tols
    settings: Mapping[str, tuple[Sequence, Sequence]] | None = None
    exclude: tuple[str, ...] = ()                # samplers not swept here (a reference run still runs)
    reference: tuple[str, Any] | None = None     # (sampler, setting) whose quality the target is relative to
    final_denoise: bool = False                  # one counted x <- D(x, sigma_end) after the last noisy level
    verdicts: bool = True                        # the targets T1-T3 are computed on it
    overhead_rank: int | None = None             # the overhead column: the run problem of lowest rank (0: T4's)


# ---------------------------------------------------------------------------- judges
def _pooled_spread(judge_mix: GaussianMixture, x: Tensor, label: Tensor) -> float:
    """sqrt(sum of squared distances to the assigned means / sum of their expected values)."""
    d2 = ((x - judge_mix.means[label]) ** 2).sum(-1)
    expect = judge_mix.dim * judge_mix.stds[label] ** 2
    return float((d2.sum() / expect.sum()).sqrt())


def mixture_judge(problem: GaussianMixture) -> Judge:
    """Mode-weight TV and pooled spread ratio against the closed-form marginal at sigma_end (VE space)."""

    def judge(x_ve: Tensor, sigma_end: float) -> dict[str, float]:
        mix = GaussianMixture(problem.weights, problem.means, torch.sqrt(problem.stds**2 + sigma_end**2))
        x = x_ve.reshape(x_ve.shape[0], -1).double()
        if not bool(torch.isfinite(x).all()):
            return {"tv": math.nan, "tv_noise": math.nan, "tv_ratio": math.inf, "spread": math.inf, "light": math.nan}
        rep = mixture_report(mix, x)
        label = mix.responsibilities(x).argmax(-1)
        light = problem.weights < problem.weights.max()
        return {"tv": rep.tv, "tv_noise": rep.tv_noise, "tv_ratio": rep.tv / rep.tv_noise,
                "spread": _pooled_spread(mix, x, label), "light": float(rep.weights[light].mean())}

    return judge


def empirical_judge(points: Tensor, labels: Tensor) -> Judge:
    """Uniformity of the hit training points (class TV, distinct points) and the spread ratio at sigma_end."""
    flat = points.reshape(points.shape[0], -1).double()
    sq = (flat**2).sum(-1)
    m = flat.shape[0]

    def judge(x_ve: Tensor, sigma_end: float) -> dict[str, float]:
        x = x_ve.reshape(x_ve.shape[0], -1).double()
        n = x.shape[0]
        if not bool(torch.isfinite(x).all()):
            return {"class_tv": math.nan, "tv_noise": math.nan, "tv_ratio": math.inf, "spread": math.inf,
                    "distinct": math.nan}
        d2 = (x**2).sum(-1, keepdim=True) - 2 * x @ flat.T + sq
        idx = d2.argmin(-1)
        hist = torch.bincount(labels[idx], minlength=10).double() / n
        tv = 0.5 * float((hist - 0.1).abs().sum())
        floor = 0.5 * 10 * math.sqrt(2 * 0.1 * 0.9 / (math.pi * n))
        spread = math.sqrt(float(d2.gather(1, idx[:, None]).clamp_min(0).sum()) / (n * x.shape[1] * sigma_end**2))
        distinct = idx.unique().numel() / (m * (1 - (1 - 1 / m) ** n))
        return {"class_tv": tv, "tv_noise": floor, "tv_ratio": tv / floor, "spread": spread, "distinct": distinct}

    return judge


def within_floor(q: dict[str, float], ref: dict[str, float] | None = None) -> bool:
    """TV <= 1.5 x its Monte-Carlo floor and |spread - 1| <= 0.05."""
    return q["tv_ratio"] <= 1.5 and abs(q["spread"] - 1) <= 0.05


def near_reference(q: dict[str, float], ref: dict[str, float] | None) -> bool:
    """FD <= 1.1 x the reference's and class TV <= the reference's + 0.03."""
    return ref is not None and q["fd"] <= 1.1 * ref["fd"] and q["class_tv"] <= ref["class_tv"] + 0.03


# ---------------------------------------------------------------------------- setups
def exact_mixture(name: str) -> Callable[[int], Setup]:
    def setup(n: int) -> Setup:
        prob = load_problem(name)
        return Setup(ExactScoreModel(prob, VPSDE()), tuple(prob.shape), torch.float64, mixture_judge(prob))

    return setup


def mnist_empirical(per_class: int = 100) -> Callable[[int], Setup]:
    def setup(n: int) -> Setup:
        from scoresde.data import mnist5k

        x, y = mnist5k("train")
        g = torch.Generator().manual_seed(0)
        perm = torch.randperm(x.shape[0], generator=g)
        keep = torch.cat([perm[y[perm] == c][:per_class] for c in range(10)])
        pts, lab = x[keep] * 2 - 1, y[keep]
        return Setup(ExactScoreModel(EmpiricalDistribution(pts), VPSDE()), tuple(pts.shape[1:]), torch.float64,
                     empirical_judge(pts, lab))

    return setup


def trained_mnist(workdir: Path) -> Callable[[int], Setup]:
    def setup(n: int) -> Setup:
        if not (workdir / "checkpoints").is_dir():
            where = workdir.relative_to(ROOT) if workdir.is_relative_to(ROOT) else workdir
            raise Unavailable(f"no trained model in {where} (train one: scoresde train --workdir {where})")
        from scoresde.data import mnist5k
        from scoresde.metrics import digit_report, load_digit_classifier
        from scoresde.workdir import model_from_workdir

        model, _cfg, shape, step = model_from_workdir(workdir, device="cpu")
        judge_net = load_digit_classifier(progress=False)
        x_test, y_test = mnist5k("test")
        real = digit_report(x_test[:n], judge_net, y_test[:n])

        def judge(x: Tensor, sigma_end: float) -> dict[str, float]:
            rep = digit_report(((x.float() + 1) / 2).clamp(0, 1), judge_net)
            return {"fd": float(rep.fd), "class_tv": float(rep.class_tv)}

        return Setup(model, tuple(shape), torch.float32, judge, {"step": step},
                     [f"Real held-out digits at the same N: FD {float(real.fd):.3f}, class TV {float(real.class_tv):.3f}."])

    return setup


# ---------------------------------------------------------------------------- the problems
FINE = (4, 6, 8, 10, 14, 20, 28, 40, 56, 80, 113, 160, 226, 320, 453, 640, 905, 1280)
TOLS = (2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002)
MIX_COLUMNS = (("tv", "mode TV"), ("tv_noise", "TV floor"), ("spread", "spread"))
FLOOR_PLOT = (("tv_ratio", "TV / Monte-Carlo floor", 1.5), ("spread", "|spread - 1|", 0.05))
FLOOR_TEXT = "{} <= 1.5 x floor and |spread - 1| <= 0.05"

#: not swept on the U-Net (each costs a minute a seed there): the uniform-t first-order baselines (EM runs once, as the
#: reference at 200 steps; PC needs hundreds of NFE on every toy problem), GGF with the paper's data-unit tolerance
#: (>82 NFE in round one; ggf-noise runs), the first-order ancestral peers on linspace / Karras grids (>51 in
#: round one), the ODE variants but ms2-ode (the SDE samplers are what T1 compares)
UNET_EXCLUDE = ("em", "pc", "ggf", "ggf-fresh", "ms3-ode", "kd-euler_a", "df-ddpm", "df-euler_a")

PROBLEMS: dict[str, Problem] = {p.name: p for p in (
    Problem("gmm8", "sharp 2-D 8-mode ring (std 0.05, weights 1/6 and 1/12), VP, exact score, float64, {n} samples",
            exact_mixture("gmm8"), n=(4000, 2000), target=within_floor, target_text=FLOOR_TEXT.format("mode TV"),
            columns=MIX_COLUMNS + (("light", "light w"),), plot=FLOOR_PLOT,
            budgets=(FINE, FINE[:15]), tols=(TOLS, TOLS[:8])),
    Problem("gmm64", "64-d 4-mode mixture (weights .4/.3/.2/.1, stds .1/.1/.2/.2), VP, exact score, float64, "
                     "{n} samples",
            exact_mixture("gmm64"), n=(2000, 1000), target=within_floor, target_text=FLOOR_TEXT.format("mode TV"),
            columns=MIX_COLUMNS, plot=FLOOR_PLOT, budgets=(FINE, FINE[:15]), tols=(TOLS, TOLS[:8]), overhead_rank=1),
    Problem("mnist-emp", "empirical distribution of 1000 MNIST training digits (100 per class, [-1, 1]), 784-d, VP, "
                         "exact score, float64, {n} samples",
            mnist_empirical(), n=(256, 128), target=within_floor,
            target_text=FLOOR_TEXT.format("class TV of the hit points"),
            columns=(("class_tv", "class TV"), ("tv_noise", "TV floor"), ("distinct", "distinct/ideal"),
                     ("spread", "spread")), plot=FLOOR_PLOT,
            budgets=((3, 4, 5, 6, 7, 8, 10, 14, 20, 40, 80, 160, 320, 640, 1280), (3, 5, 7, 10, 20, 40, 80, 160, 320)),
            tols=((2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01), (1.0, 0.2, 0.1, 0.05, 0.02))),
    Problem("mnist-unet", "trained MNIST U-Net (runs/mnist, step {step}, VP, the config's prediction), {n} samples, float32, "
                          "final denoise counted",
            trained_mnist(ROOT / "runs" / "mnist"), n=(256, 64), target=near_reference,
            target_text="FD <= 1.1 x FD of EM-200 (the model's configured sampler) and class TV <= EM-200's + 0.03",
            columns=(("fd", "FD"), ("class_tv", "class TV")),
            plot=(("fd", "FD (judge CNN)", None), ("class_tv", "class TV", None)),
            # a ladder fine enough to decide the SDE samplers against the peers (issue 10); the final denoise adds 1
            budgets=((10, 14, 20, 28, 40, 56), (14, 28)), tols=((0.5, 0.2, 0.1, 0.05), (0.5, 0.1)),
            exclude=UNET_EXCLUDE,
            reference=("em", 200), final_denoise=True, overhead_rank=0),
)}


@dataclass
class Instance:
    """A problem built for one run: its entry, sample count, sweep lists and setup."""

    problem: Problem
    quick: bool
    n: int
    setup: Setup

    @property
    def name(self) -> str:
        return self.problem.name

    @property
    def title(self) -> str:
        return self.problem.title.format(n=self.n, **self.setup.title_fields)

    @property
    def budgets(self) -> Sequence[int]:
        return self.problem.budgets[self.quick]

    @property
    def tols(self) -> Sequence[float]:
        return self.problem.tols[self.quick]


def build(name: str, quick: bool, n: int | None = None) -> Instance:
    """The problem ``name`` built (``n`` overrides its sample count); Unavailable if it cannot run here."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; expected one of {', '.join(PROBLEMS)}")
    p = PROBLEMS[name]
    n = n or p.n[quick]
    return Instance(p, quick, n, p.setup(n))
