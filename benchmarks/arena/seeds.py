"""Several seeds of the arena: every run saved as JSON beside its report, runs merged, NFE to target summarised per
sampler and problem over the seeds (median, mean +- sd, each seed's value) and drawn as the README's plot.

A seed changes the samples (x_T and every noise draw, through the per-sample streams) and nothing else: problems,
settings and judges are the same. The summary's headline number is the median over the seeds (robust to one seed
that misses the target at every budget, as a noisy judge can make it); the verdicts are taken on it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Contestant, Result
from .problems import PROBLEMS, Problem
from .sweep import nfe_to_target

#: seed -> problem -> sampler -> its sweep
BySeed = dict[int, dict[str, dict[str, list[Result]]]]


@dataclass
class SavedSetup:
    header: list[str]


@dataclass
class SavedInstance:
    """What the report reads of a problem instance, as saved in the JSON of a run (no model is rebuilt)."""

    problem: Problem
    quick: bool
    n: int
    title: str
    setup: SavedSetup

    @property
    def name(self) -> str:
        return self.problem.name


def _plain(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def result_dict(r: Result) -> dict[str, Any]:
    return _plain(dataclasses.asdict(r))


def save_run(path: Path, command: str, total: float, instances: Sequence[Any], by_seed: BySeed,
             references: Mapping[int, Mapping[str, Result]], studies: Mapping[int, Sequence[tuple[Any, list[Result]]]],
             skipped: Mapping[str, str], notes: Sequence[str]) -> None:
    """The run's results (every seed), enough to rebuild its report and to merge it with runs of other seeds."""
    payload = {
        "command": command, "total": total, "skipped": dict(skipped), "notes": list(notes),
        "problems": {i.name: {"title": i.title, "header": list(i.setup.header), "n": i.n, "quick": i.quick}
                     for i in instances},
        "seeds": {str(s): {p: {c: [result_dict(r) for r in rs] for c, rs in by.items()} for p, by in per.items()}
                  for s, per in by_seed.items()},
        "references": {str(s): {p: result_dict(r) for p, r in refs.items()} for s, refs in references.items()},
        "studies": {str(s): [[st.title, [result_dict(r) for r in rs]] for st, rs in sts] for s, sts in studies.items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, separators=(",", ":")))
    tmp.replace(path)


@dataclass
class Merged:
    commands: list[str]
    total: float
    instances: list[SavedInstance]
    by_seed: BySeed
    references: dict[int, dict[str, Result]]
    studies: dict[int, list[tuple[Any, list[Result]]]]
    skipped: dict[str, str]
    notes: list[str]


def load_runs(paths: Sequence[Path]) -> Merged:
    """Merge saved runs; a (seed, problem) pair may come from one run only."""
    from .sweep import STUDIES

    study_by_title = {s.title: s for s in STUDIES}
    m = Merged([], 0.0, [], {}, {}, {}, {}, [])
    seen: dict[str, SavedInstance] = {}
    for path in paths:
        d = json.loads(Path(path).read_text())
        m.commands.append(d["command"])
        m.total += float(d["total"])
        m.notes += [n for n in d["notes"] if n not in m.notes]
        for name, meta in d["problems"].items():
            if name not in seen and name in PROBLEMS:
                seen[name] = SavedInstance(PROBLEMS[name], meta["quick"], meta["n"], meta["title"],
                                           SavedSetup(meta["header"]))
        for s, per in d["seeds"].items():
            dst = m.by_seed.setdefault(int(s), {})
            for p, by in per.items():
                if p in dst:
                    raise SystemExit(f"arena: seed {s} of problem {p} is in more than one of the merged runs")
                dst[p] = {c: [Result(**r) for r in rs] for c, rs in by.items()}
        for s, refs in d["references"].items():
            m.references.setdefault(int(s), {}).update({p: Result(**r) for p, r in refs.items()})
        for s, sts in d["studies"].items():
            m.studies.setdefault(int(s), []).extend((study_by_title[t], [Result(**r) for r in rs]) for t, rs in sts
                                                    if t in study_by_title)
        for p, why in d["skipped"].items():
            m.skipped.setdefault(p, why)
    m.skipped = {p: w for p, w in m.skipped.items() if p not in seen}
    m.instances = [seen[p] for p in PROBLEMS if p in seen]
    return m


# ---------------------------------------------------------------------------- the summary over seeds
@dataclass(frozen=True)
class SeedStats:
    """NFE to target of one sampler on one problem, per seed (inf: not reached; the sweep's largest NFE kept)."""

    values: tuple[float, ...]
    texts: tuple[str, ...]

    @property
    def median(self) -> float:
        # inf sorts last, so a sampler that misses at one seed of three keeps a finite median; median_low is always
        # one of the seeds' values (its text is then that seed's)
        return statistics.median_low(self.values)

    @property
    def median_text(self) -> str:
        med = self.median
        return next(t for v, t in zip(self.values, self.texts) if v == med)

    @property
    def mean_sd(self) -> str | None:
        if len(self.values) < 2 or not all(math.isfinite(v) for v in self.values):
            return None
        return f"{statistics.fmean(self.values):.0f} ± {statistics.stdev(self.values):.0f}"

    def cell(self) -> str:
        if len(self.values) == 1:
            return self.texts[0]
        ms = self.mean_sd
        return f"{self.median_text} ({(ms + '; ') if ms else ''}{' / '.join(self.texts)})"


def seed_stats(by_seed: BySeed, problem: str, sampler: str, per: str = "sample") -> SeedStats | None:
    vals, texts = [], []
    for s in sorted(by_seed):
        rs = by_seed[s].get(problem, {}).get(sampler)
        if rs:
            t, v = nfe_to_target(rs, per)
            vals.append(v)
            texts.append(t)
    return SeedStats(tuple(vals), tuple(texts)) if vals else None


def seeds_table(by_seed: BySeed, problems: Sequence[str], roster: Sequence[Contestant]) -> list[str]:
    """The summary over seeds: median NFE per sample to target (mean +- sd when every seed reached it; each seed)."""
    seeds = sorted(by_seed)
    L = [f"## Summary over seeds {', '.join(map(str, seeds))}: NFE per sample to reach each problem's target", "",
         ("Each cell: the median over the seeds, then (mean ± sd when every seed reached the target; each seed's "
          "value in seed order). '>N': not reached in the sweep (N its largest NFE); '~N': met at the sweep's last "
          "setting only. The verdicts below are taken on the medians."), "",
         "| sampler | family | kind | " + " | ".join(problems) + " |", "|" + "---|" * (len(problems) + 3)]
    for c in roster:
        cells = [(st.cell() if (st := seed_stats(by_seed, p, c.name)) else "-") for p in problems]
        if any(x != "-" for x in cells):
            kind = ("SDE" if c.sde else "ODE") + (", variant" if c.variant else "")
            L.append(f"| {c.name} | {c.family} | {kind} | " + " | ".join(cells) + " |")
    return L + [""]


def plot_seeds(by_seed: BySeed, problems: Sequence[str], roster: Sequence[Contestant], path: Path) -> None:
    """NFE per sample to target, one panel per problem: each seed (open), the median (filled), misses at the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    colors = {"scoresde": "tab:blue", "k-diffusion": "tab:orange", "diffusers": "tab:green"}
    names = [c for c in roster if not c.variant and any(seed_stats(by_seed, p, c.name) for p in problems)]
    fig, axes = plt.subplots(1, len(problems), figsize=(3.6 * len(problems), 0.32 * len(names) + 1.6), sharey=True)
    axes = [axes] if len(problems) == 1 else list(axes)
    for ax, p in zip(axes, problems):
        finite = [v for c in names if (st := seed_stats(by_seed, p, c.name)) for v in st.values if math.isfinite(v)]
        hi = max(finite, default=10) * 1.8
        for y, c in enumerate(names):
            st = seed_stats(by_seed, p, c.name)
            if st is None:
                continue
            col = colors[c.family]
            xs = [v if math.isfinite(v) else hi for v in st.values]
            ax.scatter(xs, [y] * len(xs), s=22, facecolors="none", edgecolors=col, lw=1,
                       marker="o" if c.sde else "s")
            med = st.median
            ax.scatter([med if math.isfinite(med) else hi], [y], s=40, color=col, marker=">" if math.isinf(med) else
                       ("o" if c.sde else "s"), zorder=3)
        ax.axvline(hi, color="0.6", lw=0.8, ls=":")
        ax.set_xscale("log")
        ticks = [t for t in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048) if t <= hi * 1.2]
        ticks = ticks[::2] if len(ticks) > 7 else ticks
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([str(t) for t in ticks]))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_title(p, fontsize=10)
        ax.set_xlabel("NFE per sample to target")
        ax.grid(True, which="both", axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)))
    axes[0].set_yticklabels([c.name for c in names], fontsize=8)
    axes[0].invert_yaxis()
    seeds = ", ".join(map(str, sorted(by_seed)))
    fig.suptitle(f"Arena, seeds {seeds}: filled = median, open = each seed, dotted line = not reached\n"
                 "blue scoresde, orange k-diffusion, green diffusers; circles SDE, squares ODE", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
