"""The arena's command line: ``python -m benchmarks.arena`` (or ``python benchmarks/arena.py``)."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import time
import warnings
from pathlib import Path

# torchsde warns when k-diffusion queries its tree a rounding error outside [sigma_min, sigma_max]
warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)

import torch

from . import __doc__ as DOC
from .contestants import roster
from .problems import PROBLEMS, ROOT, Unavailable, build
from .report import plot_problem, write_report
from .seeds import load_runs, save_run
from .sweep import STUDIES, run_problem, run_study


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks.arena") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer samples and shorter sweeps")
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS), metavar="PROBLEM",
                    help=f"default: all ({', '.join(PROBLEMS)})")
    ap.add_argument("--samplers", nargs="+", default=None, help="names (default: all available)")
    ap.add_argument("--seed", type=int, default=0, help="one seed (default 0)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                    help="several seeds, one after the other (the report adds a summary over them and its plot)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="write the report from saved runs (each run writes <out>.json), e.g. seeds run as separate "
                         "processes: --seeds 1 --out /tmp/a1/arena.md ... then --merge /tmp/a*/arena.json")
    ap.add_argument("--num", nargs="+", default=[], metavar="PROBLEM=N", help="sample count of a problem")
    ap.add_argument("--unet-num", type=int, default=None, help="samples for the U-Net (default 256; --quick 64)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "arena.md")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    command = " ".join([prog] + (sys.argv[1:] if argv is None else list(argv)))
    if a.merge:
        missing = [str(p) for p in a.merge if not p.is_file()]
        if missing:
            raise SystemExit(f"arena: no saved run at {', '.join(missing)}")
        m = load_runs(a.merge)
        first = min(m.by_seed)
        everyone = roster([])
        family = {c.name: c.family for c in everyone}
        for inst in m.instances:
            low = min(s for s in m.by_seed if inst.name in m.by_seed[s])
            plot_problem(inst, m.by_seed[low][inst.name], family, a.out.parent / f"arena_{inst.name}.png")
        write_report(a.out, command, m.by_seed, m.instances, m.references.get(first, {}), m.studies.get(first, []),
                     everyone, m.skipped, [i.name for i in m.instances], m.notes, m.total, merged=m.commands)
        print(f"arena: wrote {a.out} from {len(a.merge)} runs, seeds {sorted(m.by_seed)}")
        return 0
    seeds = a.seeds or [a.seed]

    def log(msg: str) -> None:
        print(msg, flush=True)

    nums = {k: int(v) for k, v in (s.split("=", 1) for s in a.num)}
    if a.unet_num:
        nums["mnist-unet"] = a.unet_num
    notes: list[str] = []
    everyone = roster(notes)
    contestants = everyone
    if a.samplers:
        unknown = sorted(set(a.samplers) - {c.name for c in everyone})
        if unknown:
            raise SystemExit(f"arena: unknown or unavailable sampler(s) {', '.join(unknown)}; "
                             f"available: {', '.join(c.name for c in everyone)}")
        contestants = [c for c in everyone if c.name in a.samplers]
    family = {c.name: c.family for c in everyone}

    instances, skipped = [], {}
    for name in a.problems:
        try:
            instances.append(build(name, a.quick, nums.get(name)))
        except Unavailable as e:
            skipped[name] = str(e)
            notes.append(f"{name} skipped: {e}")
    for n in notes:
        log(f"note: {n}")

    by_seed: dict[int, dict] = {}
    references: dict[int, dict] = {}
    studies: dict[int, list] = {}
    for seed in seeds:
        results, runners = {}, {}
        for inst in instances:
            log(f"== {inst.name} (seed {seed}): {inst.title}")
            runner, by = run_problem(inst, contestants, seed, log)
            results[inst.name], runners[inst.name] = by, runner
            if inst.problem.reference is not None and runner.reference is not None:
                references.setdefault(seed, {})[inst.name] = runner.cache[inst.problem.reference]
            if seed == seeds[0]:
                plot_problem(inst, by, family, a.out.parent / f"arena_{inst.name}.png")
        by_seed[seed] = results
        selected = {c.name for c in contestants}
        studies[seed] = [(study, run_study(study, runners[study.problem], contestants)) for study in STUDIES
                         if study.problem in runners and set(study.samplers) <= selected]

    total = time.perf_counter() - t_start
    save_run(a.out.with_suffix(".json"), command, total, instances, by_seed, references, studies, skipped, notes)
    write_report(a.out, command, by_seed, instances, references.get(seeds[0], {}), studies[seeds[0]], everyone,
                 skipped, a.problems, notes, total)
    log(f"arena: wrote {a.out} (and {a.out.with_suffix('.json').name}) in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
