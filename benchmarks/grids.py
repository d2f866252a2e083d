"""Which time grid (and eta) suits each fixed-step sampler: NFE to the arena's target per grid, eta and seed.

    python benchmarks/grids.py                      # every grid sampler of the registry, gmm8 gmm64 mnist-emp, seeds 0 1 2
    python benchmarks/grids.py --samplers ms2 ms3 --problems gmm8 --etas 1 --seeds 0
    python benchmarks/grids.py --report-only        # tables and plot again from benchmarks/results/grids.json

Every registry sampler that takes ``grid`` (``SamplerSpec.steps_on_grid`` and a ``grid`` option: SEEDS-1/2/3,
ETD-ERK-1/2/3, DPM-Solver++(2M), ms2/ms3, DDIM, EDM Heun) runs on each grid of ``GRIDS`` (logsnr, time,
quadratic, edm with rho 7) and, where it has ``eta``, at each of ``--etas``. Each (sampler, eta, grid) runs the
arena's sweep (same problems, judges, targets, x_T and per-sample noise streams, see benchmarks/arena/__init__.py)
and reports the NFE per sample from which the target holds at two consecutive budgets, per seed.

Cost cuts (deterministic, reported in the output):
- the NFE ladder is the arena's, capped per problem (``CAPS``): a setting that needs more is 'not reached';
- runs that are the same map are run once: SEEDS-k at eta 0 is ETD-ERK-k, DDIM at eta 0 is ETD-ERK-1, DDIM at
  eta 1 is SEEDS-1 at eta 1, ms2 at eta 0 is DPM-Solver++(2M) (tests/test_seeds.py, test_exponential.py and
  test_multistep.py assert each identity to 1e-10 or better);
- the first seed runs on every problem first; the other seeds only where the first seed reached the target within
  ``HOPELESS`` x the best first-seed NFE of the same sampler and eta over the grids ('hopeless after seed 0').

Default choice: per (sampler, eta, grid) the median NFE over the seeds run on each problem ('not reached': 2 x the
cap; the median, because on mnist-emp's noisy judge one seed of an otherwise fast setting can miss the target at
every budget), then the geometric mean over the problems; the lowest wins if it is below ``MARGIN`` x today's default's
score (else today's default stays: within the ladder's resolution and the seeds' spread). SDE samplers choose among
eta > 0 and ODE samplers stay at eta 0. Writes benchmarks/results/grids.md, grids.json, grids.png.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from arena.contestants import NO_DENOISE, Ours  # noqa: E402
from arena.problems import PROBLEMS, Instance  # noqa: E402
from arena.sweep import Runner, nfe_to_target  # noqa: E402

from scoresde.samplers.common import GRIDS  # noqa: E402
from scoresde.samplers.registry import SAMPLERS, grid_samplers, option_default  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

#: the largest NFE budget of each problem's ladder here (the arena's ladder goes to 1280)
CAPS = {"gmm8": 113, "gmm64": 113, "mnist-emp": 40}
#: seeds after the first only for settings within this factor of the best first-seed NFE (same sampler and eta)
HOPELESS = 2.0
ETAS = (0.0, 0.5, 1.0)
#: a default changes only for a score below this fraction of today's (one ladder rung is a factor 1.41)
MARGIN = 0.8
#: (sampler, eta) -> the (sampler, eta) that is the same map (run once, shown under both names)
ALIASES = {("seeds1", 0.0): ("etd1", None), ("seeds2", 0.0): ("etd2", None), ("seeds3", 0.0): ("etd3", None),
           ("ddim", 0.0): ("etd1", None), ("ddim", 1.0): ("seeds1", 1.0), ("ms2", 0.0): ("dpmpp2m", None)}
#: the samplers whose default is an ODE (eta 0 or no eta): their default stays an ODE
ODE_DEFAULT_ETA = 0.0


def samplers_with_grid() -> list[str]:
    """Registry samplers that walk a time grid and take the ``grid`` option."""
    return [n for n in grid_samplers() if "grid" in SAMPLERS[n].options]


def nfe_per_step(sampler: str) -> int:
    m = re.match(r"(\d+) per step", SAMPLERS[sampler].nfe)
    return int(m.group(1)) if m else 1


def label(sampler: str, eta: float | None) -> str:
    return sampler if eta is None else f"{sampler} eta {eta:g}"


def key(problem: str, sampler: str, eta: float | None, grid: str) -> str:
    return f"{problem}|{label(sampler, eta)}|{grid}"


def settings_of(samplers: list[str], etas: list[float]) -> list[tuple[str, float | None]]:
    """Every (sampler, eta) to report, aliases included (eta None: the sampler has no eta)."""
    return [(s, e) for s in samplers for e in (etas if "eta" in SAMPLERS[s].options else [None])]


def canonical(sampler: str, eta: float | None) -> tuple[str, float | None]:
    return ALIASES.get((sampler, eta), (sampler, eta))


def instance(name: str, cap: int) -> Instance:
    """The arena problem with its NFE ladder cut at ``cap``."""
    p = PROBLEMS[name]
    ladder = tuple(b for b in p.budgets[0] if b <= cap)
    p = dataclasses.replace(p, budgets=(ladder, ladder))
    return Instance(p, False, p.n[0], p.setup(p.n[0]))


def contestant(sampler: str, eta: float | None, grid: str):
    opts = {"grid": grid, **NO_DENOISE, **({} if eta is None else {"eta": eta})}
    return Ours(f"{label(sampler, eta)}-{grid}", sampler, opts, "grid study",
                nfe_per_step=nfe_per_step(sampler)).contestant()


# ---------------------------------------------------------------------------- running
def run(a: argparse.Namespace, store: dict) -> None:
    """The first seed on every problem, then the other seeds where the first was not hopeless (results saved as they come)."""
    runs = sorted({canonical(s, e) for s, e in settings_of(a.samplers, a.etas)}, key=lambda se: (se[0], se[1] or 0))
    for phase, seeds in (("first seed", a.seeds[:1]), ("other seeds", a.seeds[1:])):
        for name in a.problems:
            inst = instance(name, CAPS[name])
            runners = {seed: Runner(inst, seed, lambda m: None) for seed in seeds}
            for sampler, eta in runs:
                best = min((store["nfe"].get(key(name, sampler, eta, g), {}).get(str(a.seeds[0]), math.inf)
                            for g in a.grids), default=math.inf)
                for grid in a.grids:
                    k = key(name, sampler, eta, grid)
                    rec = store["nfe"].setdefault(k, {})
                    if phase == "other seeds" and not rec.get(str(a.seeds[0]), math.inf) <= HOPELESS * best:
                        store["pruned"][k] = True
                        continue
                    c = contestant(sampler, eta, grid)
                    for seed in seeds:
                        t0, c0 = time.perf_counter(), time.process_time()
                        text, nfe = nfe_to_target(runners[seed].sweep(c))
                        store["cpu"] += time.process_time() - c0
                        rec[str(seed)] = nfe
                        store["text"][f"{k}|{seed}"] = text
                        print(f"{name:9s} {label(sampler, eta):16s} {grid:9s} seed {seed}: {text:>6s}  "
                              f"({time.perf_counter() - t0:5.1f} s; cpu so far {store['cpu']:.0f} s)", flush=True)
                    save(a.json, store)


def save(path: Path, store: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(store, indent=1, allow_nan=True))


# ---------------------------------------------------------------------------- analysis
def per_seed(store: dict, problem: str, sampler: str, eta: float | None, grid: str) -> dict[int, float]:
    s, e = canonical(sampler, eta)
    return {int(k): v for k, v in store["nfe"].get(key(problem, s, e, grid), {}).items()}


def value(store: dict, problem: str, sampler: str, eta: float | None, grid: str) -> float:
    """Median NFE over the seeds run (one seed whose judge never settles does not decide); 'not reached' = 2 x cap."""
    v = per_seed(store, problem, sampler, eta, grid)
    if not v:
        return math.nan
    cap = store["caps"][problem]
    xs = sorted(min(x, 2 * cap) for x in v.values())
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def score(store: dict, sampler: str, eta: float | None, grid: str) -> float:
    """Geometric mean over the problems of :func:`value`."""
    vs = [value(store, p, sampler, eta, grid) for p in store["problems"]]
    vs = [v for v in vs if math.isfinite(v)]
    return math.exp(sum(map(math.log, vs)) / len(vs)) if vs else math.nan


def defaults_of(sampler: str) -> tuple[str, float | None]:
    return option_default(sampler, "grid"), option_default(sampler, "eta") if "eta" in SAMPLERS[sampler].options else None


def default_before(store: dict, sampler: str) -> tuple[str, float | None]:
    """The (grid, eta) default of ``sampler`` when the measurement ran."""
    g, e = store["defaults_before"][sampler]
    return g, e


def is_default(store: dict, sampler: str, eta: float | None, grid: str) -> bool:
    """Whether the canonical run (sampler, eta, grid) is the default of a sampler it stands for."""
    return any(canonical(s, e) == (sampler, eta) and g == grid
               for s in store["samplers"] for g, e in [default_before(store, s)])


def table_rows(store: dict) -> tuple[list[tuple[str, float | None]], dict[tuple, list[str]]]:
    """The runs in registry order (each once) and, for each, the other names of the same map."""
    order = list(SAMPLERS)
    rows, alias_of = [], {}
    for s, e in settings_of(store["samplers"], store["etas"]):
        c = canonical(s, e)
        if c not in rows:
            rows.append(c)
        if c != (s, e):
            alias_of.setdefault(c, []).append(label(s, e))
    rows.sort(key=lambda se: (order.index(se[0]), se[1] or 0))
    return rows, alias_of


def best_setting(store: dict, sampler: str) -> tuple[str, float | None, float]:
    """(grid, eta, score) of the lowest score among the candidates (SDE samplers: eta > 0, ODE ones: eta 0)."""
    grid0, eta0 = default_before(store, sampler)
    etas = [None] if eta0 is None else [e for e in store["etas"] if (e > 0) == (eta0 > 0)]
    cands = [(score(store, sampler, e, g), g, e) for e in etas for g in store["grids"]]
    cands = [c for c in cands if math.isfinite(c[0])]
    if not cands:
        return grid0, eta0, math.nan
    sc, g, e = min(cands)
    return g, e, sc


def choose(store: dict, sampler: str) -> tuple[str, float | None, float]:
    """(grid, eta, score) of the default the measurement picks: the best score among the candidates (SDE samplers:
    eta > 0, ODE ones: eta 0), if it beats today's default by more than ``MARGIN``; else today's default."""
    grid0, eta0 = default_before(store, sampler)
    g, e, sc = best_setting(store, sampler)
    now = score(store, sampler, eta0, grid0)
    return (g, e, sc) if sc < MARGIN * now else (grid0, eta0, now)


def cell(store: dict, problem: str, sampler: str, eta: float | None, grid: str) -> str:
    v = per_seed(store, problem, sampler, eta, grid)
    if not v:
        return "-"
    xs = list(v.values())
    cap = store["caps"][problem]
    if all(math.isfinite(x) for x in xs):
        m = sum(xs) / len(xs)
        if len(xs) == 1:
            return f"{m:.0f}"
        return f"{m:.0f} ({min(xs):.0f}-{max(xs):.0f})"
    reached = sum(math.isfinite(x) for x in xs)
    return f">{cap}" if reached == 0 else f"{reached}/{len(xs)} <= {cap}"


def report(store: dict, out_md: Path, out_png: Path | None) -> None:
    P, G = store["problems"], store["grids"]
    rows, alias_of = table_rows(store)
    L = ["# Grids and eta of the fixed-step samplers: NFE to the arena's target", "",
         f"Command: `{store['command']}` - {store['machine']}, 1 torch thread, torch {store['torch']}; "
         f"wall {store.get('wall', math.nan):.0f} s, {store['cpu']:.0f} s of CPU in the sweeps"
         f"{' (' + store['load'] + ')' if store.get('load') else ''}.", "",
         "NFE per sample from which the arena's target holds at two consecutive budgets of its ladder (the arena's "
         "problems, judges, sample counts and noise streams, benchmarks/arena), per seed; a cell is the mean over "
         f"the seeds run (seeds {', '.join(map(str, store['seeds']))}) with the range across them. Ladders capped at "
         + ", ".join(f"{p} {store['caps'][p]}" for p in P) + " NFE ('>N': not reached within N, 'k/3 <= N': "
         "reached by k of the seeds). A single number: run on the first seed only, because that seed did not reach "
         f"the target within {HOPELESS:g} x the best first-seed NFE of the same sampler and eta on the other grids "
         "(hopeless after seed 0). Runs that are the same map are run once and shown under every name "
         "(SEEDS-k at eta 0 = ETD-ERK-k, DDIM eta 0 = ETD-ERK-1, DDIM eta 1 = SEEDS-1 eta 1, ms2 eta 0 = "
         "DPM-Solver++(2M)). The `edm` grid is Karras et al.'s rho = 7. PC / Euler-Maruyama take no grid option "
         "(uniform time), the adaptive samplers and the ODE choose their own steps: not here.", ""]
    # summary
    L += ["## Summary: mean NFE to target per problem, by grid", "",
          "Each cell: " + " / ".join(P) + " (median over the seeds run; not reached = 2 x cap), then the geometric mean over "
          "the problems (the score; lower is better). **Bold**: the best grid of the row; (d): today's default.", "",
          "| sampler (= the same map) | " + " | ".join(G) + " | best |", "|---|" + "---|" * (len(G) + 1)]
    for s, e in rows:
        scores = {g: score(store, s, e, g) for g in G}
        fin = {g: v for g, v in scores.items() if math.isfinite(v)}
        best = min(fin, key=fin.get) if fin else None
        cells = []
        for g in G:
            vals = " / ".join(_short(value(store, p, s, e, g), store["caps"][p]) for p in P)
            txt = f"{vals} -> {scores[g]:.0f}" if math.isfinite(scores[g]) else vals
            txt = f"**{txt}**" if g == best else txt
            cells.append(txt + (" (d)" if is_default(store, s, e, g) else ""))
        names = " = ".join([label(s, e)] + alias_of.get((s, e), []))
        L.append(f"| {names} | " + " | ".join(cells) + f" | {best or '-'} |")
    L += ["", "## Defaults chosen from these measurements", "",
          f"The best (grid, eta) by score, where it beats today's default by more than {1 - MARGIN:.0%} of its score "
          "(one rung of the NFE ladder is a factor 1.41; smaller gaps are within the seeds' spread); SDE samplers "
          "among eta > 0, ODE samplers at eta 0. What the registry does with it: docs/readme/grids.md.", "",
          "| sampler | default before (grid, eta): score | best by score | chosen |",
          "|---|---|---|---|"]
    for s in store["samplers"]:
        g0, e0 = default_before(store, s)
        g, e, _ = choose(store, s)
        bg, be, bs = best_setting(store, s)

        def ge(g, e):
            return g + ("" if e is None else f", {e:g}")

        L.append(f"| {s} | {ge(g0, e0)}: {score(store, s, e0, g0):.1f} | {ge(bg, be)}: {bs:.1f} | "
                 f"{'**' + ge(g, e) + '**' if (g, e) != (g0, e0) else 'unchanged'} |")
    L += ["", "The registry takes these choices except for seeds1, which keeps eta 1: at eta 1 SEEDS-1 is the DDPM "
          "ancestral step that inpainting (replacement, RePaint) and TDS rely on (scoresde/samplers/registry.py)."]
    # per problem
    for p in P:
        L += ["", f"## {p}", "", f"{store['titles'][p]}. Target: {store['targets'][p]}.", "",
              "| sampler (= the same map) | " + " | ".join(G) + " |", "|---|" + "---|" * len(G)]
        for s, e in rows:
            names = " = ".join([label(s, e)] + alias_of.get((s, e), []))
            L.append(f"| {names} | " + " | ".join(cell(store, p, s, e, g) for g in G) + " |")
        L += ["", "Per seed: " + "; ".join(
            f"{label(s, e)} {g}: " + " ".join(store["text"].get(f"{key(p, s, e, g)}|{sd}", "-") for sd in store["seeds"])
            for s, e in rows for g in G) + "."]
    out_md.write_text("\n".join(L) + "\n")
    print(f"wrote {out_md}")
    if out_png is not None:
        plot(store, out_png, rows, alias_of)


def _short(v: float, cap: int) -> str:
    if not math.isfinite(v):
        return "-"
    return f">{cap}" if v >= 2 * cap else f"{v:.0f}"


def plot(store: dict, out: Path, rows, alias_of) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P, G = store["problems"], store["grids"]
    uniq = rows
    colors = {"logsnr": "tab:blue", "time": "tab:red", "quadratic": "tab:green", "edm": "tab:purple"}
    marks = {"logsnr": "o", "time": "s", "quadratic": "^", "edm": "D"}
    fig, axes = plt.subplots(len(P), 1, figsize=(max(10, 0.62 * len(uniq)), 3.3 * len(P)), sharex=True, squeeze=False)
    for ax, p in zip(axes[:, 0], P):
        cap = store["caps"][p]
        for j, g in enumerate(G):
            dx = (j - (len(G) - 1) / 2) * 0.18
            for i, (s, e) in enumerate(uniq):
                v = per_seed(store, p, s, e, g)
                if not v:
                    continue
                xs = [x for x in v.values() if math.isfinite(x)]
                lbl = None
                m = value(store, p, s, e, g)
                if not xs or m >= 2 * cap:
                    ax.scatter(i + dx, cap * 1.5, marker="x", color=colors[g], s=30, label=lbl)
                    continue
                full = len(xs) == len(v) == len(store["seeds"])
                ax.errorbar(i + dx, m, yerr=[[m - min(xs)], [max(xs) - m]], fmt=marks[g], color=colors[g],
                            mfc=colors[g] if full else "white", ms=6, capsize=2, label=lbl)
                if is_default(store, s, e, g):
                    ax.scatter(i + dx, m, s=160, facecolors="none", edgecolors="black", linewidths=1.2)
        ax.axhline(cap * 1.5, color="grey", lw=0.6, ls=":")
        for i in range(1, len(uniq)):
            ax.axvline(i - 0.5, color="grey", lw=0.4, alpha=0.4)
        ax.text(len(uniq) - 0.5, cap * 1.5, "not reached (x)", ha="right", va="bottom", fontsize=8, color="grey")
        ax.set_yscale("log")
        ax.set_ylabel("NFE to target")
        ax.set_title(f"{p}: NFE per sample to the arena's target (median of 3 seeds, bars: range; hollow: a seed "
                     "missed, or only seed 0 run)", fontsize=9, loc="left")
        ax.grid(axis="y", alpha=0.3, which="both")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=marks[g], color=colors[g], ls="", label=g) for g in G]
    handles.append(Line2D([], [], marker="x", color="grey", ls="", label="not reached within the cap"))
    handles.append(Line2D([], [], marker="o", mfc="none", mec="black", ms=11, ls="", label="today's default"))
    axes[0, 0].legend(handles=handles, ncol=len(handles), fontsize=8, loc="lower left",
                      bbox_to_anchor=(0, 1.12), frameon=False)
    names = ["\n= ".join([label(s, e)] + alias_of.get((s, e), [])) for s, e in uniq]
    axes[-1, 0].set_xticks(range(len(uniq)), names, rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    allowed = samplers_with_grid()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", nargs="+", default=list(CAPS), choices=list(CAPS))
    ap.add_argument("--samplers", nargs="+", default=allowed, choices=allowed)
    ap.add_argument("--grids", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    ap.add_argument("--etas", nargs="+", type=float, default=list(ETAS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=RESULTS / "grids.md", help="the tables (plot and JSON beside it)")
    ap.add_argument("--report-only", action="store_true", help="tables and plot from the JSON of an earlier run")
    ap.add_argument("--no-plot", action="store_true")
    a = ap.parse_args(argv)
    a.json = a.out.with_suffix(".json")
    png = None if a.no_plot else a.out.with_suffix(".png")
    if a.report_only:
        report(json.loads(a.json.read_text()), a.out, png)
        return 0
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    store = {"command": "python benchmarks/grids.py " + " ".join(sys.argv[1:] if argv is None else argv),
             "machine": platform.machine(), "torch": torch.__version__, "problems": a.problems,
             "samplers": a.samplers, "grids": a.grids, "etas": a.etas, "seeds": a.seeds,
             "caps": {p: CAPS[p] for p in a.problems}, "nfe": {}, "text": {}, "pruned": {}, "cpu": 0.0,
             "titles": {}, "targets": {}, "load": "",
             "defaults_before": {s: list(defaults_of(s)) for s in a.samplers}}
    for p in a.problems:
        store["titles"][p] = PROBLEMS[p].title.format(n=PROBLEMS[p].n[0])
        store["targets"][p] = PROBLEMS[p].target_text
    run(a, store)
    store["wall"] = time.perf_counter() - t0
    if hasattr(os, "getloadavg"):
        store["load"] = f"load average {os.getloadavg()[1]:.1f} over the last 5 min on {os.cpu_count()} cores at the end"
    save(a.json, store)
    report(store, a.out, png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
