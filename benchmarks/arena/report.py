"""The arena's report: per-problem tables and plots, the NFE-to-target summary, side studies, the targets'
verdicts (computed from the numbers) and the structural notes; all of it goes to benchmarks/results/arena.md.
"""
from __future__ import annotations

import math
import platform
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import Contestant, Result
from .problems import Instance
from .seeds import BySeed, plot_seeds, seed_stats, seeds_table
from .sweep import Study, nfe_to_target

FAMILY_STYLE = {"scoresde": "-", "k-diffusion": "--", "diffusers": ":"}
CARRIED = "_Carried over from the previous run (not re-run: {reason})._"


def fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.4g}"


def plot_problem(inst: Instance, by: dict[str, list[Result]], family: dict[str, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = plt.get_cmap("tab20").colors
    for ax, (k, label, line) in zip(axes, inst.problem.plot):
        for j, (name, rs) in enumerate(by.items()):
            if not rs:
                continue
            ys = [abs(r.quality[k] - 1) if k == "spread" else r.quality[k] for r in rs]
            ax.plot([r.nfe_sample for r in rs], [y if math.isfinite(y) else np.nan for y in ys],
                    FAMILY_STYLE[family[name]], color=colors[j % len(colors)], marker="o", ms=3, label=name)
        if line is not None:
            ax.axhline(line, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE per sample")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{inst.name}: quality vs NFE (solid scoresde, dashed k-diffusion, dotted diffusers)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def problem_section(inst: Instance, by: dict[str, list[Result]], reference: Result | None) -> list[str]:
    p = inst.problem
    L = [f"## {inst.name}", "", inst.title + ".", "", f"Target: {p.target_text}.", ""]
    head = list(inst.setup.header)
    if reference is not None:
        head.append(f"Reference {reference.sampler} {reference.setting_text}: "
                    + ", ".join(f"{h} {reference.quality[k]:.3f}" for k, h in p.columns) + ".")
    if head:
        L += head + [""]
    hdr = ["sampler", "setting", "NFE/sample", "NFE batch"] + [h for _, h in p.columns] + \
          ["target", "wall s", "model s", "overhead %"]
    L += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for name, rs in by.items():
        for r in rs:
            ov = 100 * (r.wall - r.model_time) / r.wall if r.wall > 0 else math.nan
            row = [name, r.setting_text, f"{r.nfe_sample:.1f}", str(r.nfe_batch)] + \
                  [fmt(r.quality.get(k, math.nan)) for k, _ in p.columns] + \
                  ["met" if r.ok else "", f"{r.wall:.2f}", f"{r.model_time:.2f}", f"{ov:.1f}"]
            L.append("| " + " | ".join(row) + " |")
    return L + ["", f"![{inst.name}](arena_{inst.name}.png)", ""]


def previous_sections(path: Path) -> dict[str, str]:
    """The '## name' sections of an existing report (to carry over those of problems that cannot run here)."""
    if not path.exists():
        return {}
    parts = re.split(r"^(?=## )", path.read_text(), flags=re.MULTILINE)
    return {m.group(1): part.rstrip() + "\n" for part in parts if (m := re.match(r"## (\S+)\s*$", part, re.MULTILINE))}


def carried_section(text: str, reason: str) -> list[str]:
    lines = text.rstrip().split("\n")
    if not any(line.startswith("_Carried over") for line in lines):
        lines[1:1] = ["", CARRIED.format(reason=reason)]
    return lines + [""]


# ---------------------------------------------------------------------------- verdicts
def _best(by_seed: BySeed, problem: str, names: Sequence[str], per: str = "sample") -> tuple[float, str, str]:
    """(median NFE to target over the seeds, sampler, its text) of the best of ``names`` that ran; (inf, '-', '-')."""
    vals = [(st.median, n, st.median_text) for n in names if (st := seed_stats(by_seed, problem, n, per))]
    return min(vals) if vals else (math.inf, "-", "-")


def _ratio(a: float, b: float) -> float:
    """b / a; inf when only a reached the target, nan when a did not."""
    if not math.isfinite(a):
        return math.nan
    return b / a if math.isfinite(b) else math.inf


def _x(r: float) -> str:
    if math.isnan(r):
        return "n/a (not reached)"
    return ">sweep max" if math.isinf(r) else f"{r:.2f}x"


def verdicts(instances: Sequence[Instance], by_seed: BySeed, roster: Sequence[Contestant]) -> list[str]:
    """The issues' targets, answered from the measured NFE-to-target numbers (medians over the seeds).

    Round one: T1 best SDE sampler vs the best peer SDE sampler, T2 GGF vs dpm_adaptive, T3 GGF / SEEDS vs EM / PC.
    Round two: R2 the adaptive exponential solver vs dpm_adaptive at eta 0 and 1; GGF's noise-relative tolerance.
    """
    ours = [c.name for c in roster if c.family == "scoresde" and c.sde and not c.variant]
    peers = [c.name for c in roster if c.family != "scoresde" and c.sde]
    out = []
    for inst in instances:
        if not inst.problem.verdicts:
            continue
        name = inst.name

        def best(names: Sequence[str], per: str = "sample", name: str = name) -> tuple[float, str, str]:
            return _best(by_seed, name, names, per)

        def ran(*names: str, name: str = name) -> bool:
            return all(seed_stats(by_seed, name, n) for n in names)

        o, on, ot = best(ours)
        p, pn, pt = best(peers)
        if on != "-" and pn != "-":
            out.append(f"- {name}, T1: best scoresde SDE sampler {on} {ot} NFE vs best peer SDE sampler {pn} {pt}: "
                       f"{'met' if o <= p else 'missed'} (peer/ours {_x(_ratio(o, p))}; aim 2x: "
                       f"{'met' if _ratio(o, p) >= 2 else 'missed'})")
        for ad, peer_names in (("adaptive", ("kd-dpm_adaptive", "kd-dpm_adaptive_eta1")),
                               ("adaptive-ode", ("kd-dpm_adaptive",))):
            peer_names = [n for n in peer_names if ran(n)]
            if ran(ad) and peer_names:
                a_, _, at = best([ad])
                ab, _, abt = best([ad], "batch")
                parts = []
                for pn_ in peer_names:
                    d, _, dt = best([pn_])
                    # a peer that never reaches the target loses to any finite NFE: say so, it is not a ranking
                    unreached = " (the peer does not reach the target within its sweep)" if math.isfinite(a_) and \
                        not math.isfinite(d) else ""
                    parts.append(f"{pn_} {dt}: {'met' if a_ < d else 'missed'}{unreached}")
                out.append(f"- {name}, R2: {ad} {at} NFE/sample (batch of the whole set, no refilling: {abt}) vs "
                           + "; ".join(parts))
        if ran("ggf-noise"):
            gn, _, gnt = best(["ggf-noise"])
            out.append(f"- {name}, R2: GGF with the noise-relative tolerance {gnt} NFE/sample: "
                       f"{'reaches' if math.isfinite(gn) else 'does not reach'} the target")
        g, _, gt = best(["ggf"])
        gb, _, gbt = best(["ggf"], "batch")
        if ran("ggf", "kd-dpm_adaptive"):
            d, _, dt = best(["kd-dpm_adaptive"])
            line = (f"- {name}, T2: GGF {gt} NFE/sample ({gbt} per batch) vs k-diffusion dpm_adaptive {dt}: "
                    f"{'met' if g < d else 'missed'} per sample, {'met' if gb < d else 'missed'} per batch")
            if ran("kd-dpm_adaptive_eta1"):
                d1, _, d1t = best(["kd-dpm_adaptive_eta1"])
                line += f" (vs its SDE setting eta 1, {d1t}: {'met' if g < d1 else 'missed'} per sample)"
            out.append(line)
        if ran("ggf", "em"):
            e, _, et = best(["em"])
            out.append(f"- {name}, T3: GGF vs EM ({et}): {_x(_ratio(g, e))} fewer per sample, "
                       f"{_x(_ratio(gb, e))} per batch (>= 2x: {'met' if _ratio(g, e) >= 2 else 'missed'} per "
                       f"sample, {'met' if _ratio(gb, e) >= 2 else 'missed'} per batch)")
        s, sn, st = best([n for n in ours if n.startswith("seeds")])
        c, cn, ct = best(["em", "pc"])
        if sn != "-" and cn != "-":
            out.append(f"- {name}, T3: best SEEDS ({sn}, {st}) vs best of EM/PC ({cn}, {ct}): "
                       f"{_x(_ratio(s, c))} fewer (>= 3x: {'met' if _ratio(s, c) >= 3 else 'missed'})")
    return out


#: structural reasons behind the verdicts (the numbers are in the tables; this text does not depend on them)
NOTES = """## Why (structural notes; check them against the tables of the run above)

- Resolution: NFE to target has the sweep's resolution (about sqrt(2) in NFE) and the mode-weight TV is judged
  against its Monte-Carlo floor with one seed, so a sampler near the threshold can flip between settings; the
  two-consecutive-settings rule removes single lucky hits, not the noise. A sampler that meets the target at
  its first setting may need even fewer NFE.
- Euler-Maruyama / PC (uniform t) are explicit steps of a stiff problem at the data end: near t = eps the
  score's Lipschitz constant is 1/(s^2 + sigma_t^2), so a step is stable and accurate only for
  g^2 dt / (s^2 + sigma_t^2) << 1. With s = 0 (empirical digits, sigma_eps = 0.0105, g^2 = 0.1) that needs
  dt << 1e-3, more than ~1000 uniform steps: EM/PC end far too spread (spread ratio >> 1) until then. The
  exponential integrators (SEEDS, DPM-Solver++ SDE) integrate the linear part exactly and do not have this
  limit; the log-SNR / Karras grids also put their steps where sigma is small.
- GGF vs k-diffusion's dpm_adaptive: dpm_adaptive (eta 0) integrates the probability-flow ODE with a
  third-order exponential integrator (error estimate: orders 2 vs 3) and one step size for the whole batch;
  GGF integrates the reverse SDE with Euler-Maruyama / stochastic improved Euler (strong order 1/2 to 1, error
  estimate from their difference), so at equal tolerance it needs far smaller steps. The stochastic variant
  dpm_adaptive eta 1 is the like-for-like comparison. GGF's per-batch NFE exceeds its per-sample mean because
  a batched call is made while any sample is still integrating.
- GGF on the empirical digits: its mixed tolerance max(atol, rtol |x|) is in data units (|x| ~ 1 per pixel),
  while the state's error that matters at the end is O(sigma_eps) = 0.01 per pixel, below the tolerance, so
  the controller accepts steps for which the (extrapolated) improved-Euler step over-contracts the noise
  (spread ratio < 1; without extrapolation it over-disperses, > 1).
- diffusers' DDPMScheduler / EulerAncestral with "linspace" timesteps are uniform in the training index, so
  their last steps are coarse in sigma near 0: the within-mode spread converges slowly (from below). The
  DPM-Solver schedulers run with Karras sigmas here (use_karras_sigmas=True).
- Fresh noise after a GGF rejection biases the samples (the accepted increments are conditioned on a small
  error estimate); the Brownian bridge keeps the path's law, so "bridge" matches the truth within Monte-Carlo
  error at the same NFE.
- MNIST U-Net: FD at a few hundred samples moves by several units between neighbouring settings (compare the
  two SEEDS-2 rows), so its NFE-to-target is noise-limited; this problem is there for the solver overhead:
  the model call dominates the wall time of every sampler.
"""


def write_report(out: Path, command: str, by_seed: BySeed, instances: Sequence[Instance],
                 references: dict[str, Result], studies: Sequence[tuple[Study, list[Result]]],
                 roster: Sequence[Contestant], skipped: dict[str, str], order: Sequence[str], notes: Sequence[str],
                 total: float, merged: Sequence[str] = ()) -> None:
    """Write the report; a problem skipped here (``skipped``: name -> reason) keeps its previous section, marked.

    The per-problem tables, plots and first summary are those of the lowest seed that ran the problem; with several
    seeds a summary over the seeds follows (plot: ``arena_seeds.png``) and the verdicts use its medians.
    """
    previous = previous_sections(out)
    seeds = sorted(by_seed)
    results: dict[str, dict[str, list[Result]]] = {}
    for s in reversed(seeds):
        results.update(by_seed[s])
    L = ["# Sampler arena: scoresde vs k-diffusion vs diffusers", "",
         (f"Command: `{command}` - wall time {total:.0f} s{' (summed over the merged runs)' if merged else ''}, "
          f"{platform.machine()}, "
          f"1 torch thread, torch {torch.__version__}, seed{'s' if len(seeds) > 1 else ''} "
          f"{', '.join(map(str, seeds))} (per-problem tables: the lowest seed)."), ""]
    if merged:
        L += ["Merged from the runs " + "; ".join(f"`{c}`" for c in merged) + ".", ""]
    L += [
         ("Protocol: same exact model, same adapters, same x_T (per-sample seeded streams); every model call "
         "counted by one wrapper. Each sampler stops at its last noisy level sigma_end (no final denoise) and is "
         "judged against the closed-form marginal there (mixture stds sqrt(s_k^2 + sigma_end^2)); see the "
         "docstring of benchmarks/arena/__init__.py. NFE = model evaluations per sample (adaptive GGF: mean over "
         "samples; batch = batched calls). Sweeps are their settings lists (no time limit) and stop once the target "
         "holds at two consecutive settings; NFE to target is the first setting of that pair."), ""]
    L += [f"- note: {n}" for n in notes] + ([""] if notes else [])
    by_name = {inst.name: inst for inst in instances}
    for name in order:
        if name in by_name:
            inst = by_name[name]
            L += problem_section(inst, results.get(name, {}), references.get(name))
        elif name in skipped and name in previous:
            L += carried_section(previous[name], skipped[name])

    ranked = sorted((i for i in instances if i.problem.overhead_rank is not None),
                    key=lambda i: i.problem.overhead_rank)
    over_inst = ranked[0] if ranked else None
    overhead: dict[str, str] = {}
    if over_inst is not None:
        for name, rs in results.get(over_inst.name, {}).items():
            ws, ms = sum(r.wall for r in rs), sum(r.model_time for r in rs)
            if rs and ws > 0:
                overhead[name] = f"{100 * (ws - ms) / ws:.1f}"
    probs = [i.name for i in instances]
    L += ["## Summary: NFE per sample to reach each problem's target", "",
          ("('>N': not reached in the sweep, N its largest NFE; '~N': met at the sweep's last setting only; GGF shows "
          "per-sample mean and per-batch calls.)"), "",
          "| sampler | family | " + " | ".join(probs) + f" | overhead % ({over_inst.name if over_inst else '-'}) "
          "| notes |", "|" + "---|" * (len(probs) + 4)]
    for c in roster:
        cells = []
        for p in probs:
            rs = results.get(p, {}).get(c.name)
            if not rs:
                cells.append("-")
                continue
            s, _ = nfe_to_target(rs, "sample")
            sb, _ = nfe_to_target(rs, "batch")
            cells.append(s if s == sb else f"{s} (batch {sb})")
        if any(x != "-" for x in cells):
            L.append(f"| {c.name} | {c.family} | " + " | ".join(cells) + f" | {overhead.get(c.name, '-')} | {c.note} |")
    L.append("")
    study_lines = []
    for study, rs in studies:
        head, labels = study.label
        L += [f"## {study.title}", "",
              f"| setting | {head} | " + " | ".join(h for _, h in study.columns) + " | NFE/sample | NFE batch |",
              "|" + "---|" * (len(study.columns) + 4)]
        for r in rs:
            L.append(f"| {r.setting_text} | {labels[r.sampler]} | " + " | ".join(fmt(r.quality[k]) for k, _ in
                                                                                 study.columns)
                     + f" | {r.nfe_sample:.1f} | {r.nfe_batch} |")
        L.append("")
        k = study.columns[0][0]
        study_lines.append(f"- {study.title}: " + ", ".join(f"{labels[r.sampler]} {r.quality[k]:.4f} "
                                                            f"({r.setting_text})" for r in rs))
    if len(seeds) > 1:
        L += seeds_table(by_seed, probs, roster)
        plot_seeds(by_seed, probs, roster, out.parent / "arena_seeds.png")
        L += ["![NFE to target over the seeds](arena_seeds.png)", ""]
    L += [f"## Targets (computed from the NFE-to-target numbers above{'; medians over the seeds' if len(seeds) > 1 else ''})",
          ""] + verdicts(instances, by_seed, roster)
    ours = {c.name for c in roster if c.family == "scoresde" and not c.variant}
    ov = {k: v for k, v in overhead.items() if k in ours}
    if ov and over_inst.problem.overhead_rank == 0:
        worst = max(ov.items(), key=lambda kv: float(kv[1]))
        L.append(f"- T4 solver overhead (wall beyond model calls, summed over each sampler's runs on "
                 f"{over_inst.name}): scoresde worst {worst[0]} {worst[1]}% "
                 f"({'met' if float(worst[1]) <= 5 else 'missed'} <= 5%); all: "
                 + ", ".join(f"{k} {v}%" for k, v in ov.items()))
    elif ov:
        L.append(f"- T4 solver overhead: not measured in this run (it is judged on a real network, whose problem "
                 f"did not run); the overhead column above is {over_inst.name}'s, whose exact model costs about as "
                 f"much as the solver's own arithmetic")
    L += study_lines + ["", NOTES]
    out.write_text("\n".join(L) + "\n")
