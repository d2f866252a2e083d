"""Which time grid (and eta) suits the multistep solvers ms2 / ms3: NFE to the arena target, per grid and seed.

    python benchmarks/multistep_grids.py                                  # gmm8, eta 1, seeds 0 1 2
    python benchmarks/multistep_grids.py --problems gmm8 gmm64 --etas 1.0 0.5 --seeds 0

Each (sampler, grid, eta) runs the arena's sweep on the arena's problem (same judge, target, NFE budgets, x_T and
per-sample noise streams, see benchmarks/arena/__init__.py) and reports the NFE per sample from which the target
holds at two consecutive budgets, per seed, with the mean over seeds. Writes benchmarks/results/multistep_grids.md.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from arena.contestants import NO_DENOISE, Ours  # noqa: E402
from arena.problems import PROBLEMS, build  # noqa: E402
from arena.sweep import Runner, nfe_to_target  # noqa: E402

from scoresde.samplers.common import GRIDS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", nargs="+", default=["gmm8"], choices=[p for p in PROBLEMS if p != "mnist-unet"])
    ap.add_argument("--samplers", nargs="+", default=["ms2", "ms3"], choices=["ms2", "ms3"])
    ap.add_argument("--grids", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    ap.add_argument("--etas", nargs="+", type=float, default=[1.0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="the arena's quick sample counts")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "multistep_grids.md")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    lines = ["# Multistep solvers: NFE to the arena target by grid", "",
             f"Command: `python benchmarks/multistep_grids.py {' '.join(argv or sys.argv[1:])}` - "
             f"{platform.machine()}, 1 torch thread, torch {torch.__version__}.", "",
             "NFE per sample from which the arena's target holds at two consecutive budgets ('>N': not reached "
             "within N); the arena's problems, judges, budgets and noise streams.", ""]
    for name in a.problems:
        inst = build(name, a.quick)
        lines += [f"## {name}", "", f"{inst.title}. Target: {inst.problem.target_text}.", "",
                  "| sampler | grid | eta | " + " | ".join(f"seed {s}" for s in a.seeds) + " | mean |",
                  "|---|---|---|" + "---|" * (len(a.seeds) + 1)]
        for sampler in a.samplers:
            for eta in a.etas:
                for grid in a.grids:
                    c = Ours(f"{sampler}-{grid}-eta{eta:g}", sampler, {"eta": eta, "grid": grid, **NO_DENOISE},
                             "grid study").contestant()
                    nfes, texts = [], []
                    for seed in a.seeds:
                        text, nfe = nfe_to_target(Runner(inst, seed, lambda m: None).sweep(c))
                        texts.append(text)
                        nfes.append(nfe)
                    mean = sum(nfes) / len(nfes)
                    row = (f"| {sampler} | {grid} | {eta:g} | " + " | ".join(texts) + " | "
                           + (f"{mean:.1f}" if math.isfinite(mean) else "-") + " |")
                    print(f"{name}: {row}", flush=True)
                    lines.append(row)
        lines.append("")
    lines.append(f"Wall time {time.perf_counter() - t0:.0f} s.")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
