"""The multistep samplers' grid and eta on the trained U-Net: can a setting reach the arena's target at fewer NFE?

    python benchmarks/unet_grids.py                          # ms2, seed 0, steps 10 / 14 / 20
    python benchmarks/unet_grids.py --samplers ms2 ms3 --seed 1 --steps 14 20 28

``benchmarks/grids.py`` chose the registry's grids and etas on the exact-score problems; this runs the same
question on the arena's ``mnist-unet`` problem (the trained main-job model in runs/mnist, 256 samples, one counted
final denoise, the digit judge) for each sampler on every grid (logsnr / time / quadratic / edm) at eta 0.5 and 1,
at a few step counts. The table gives the FD and class TV of each run next to the arena's target for the seed
(FD <= 1.1 x and class TV <= +0.03 relative to Euler-Maruyama at 200 steps, run here too). The FD of 256 samples
moves by ~2-5 between neighbouring budgets of one sampler (benchmarks/results/arena.md), so read the table for
large gaps only. Writes benchmarks/results/unet_grids.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from arena.contestants import NO_DENOISE, SCORESDE, Ours
from arena.problems import Unavailable, build
from arena.sweep import Runner

from scoresde.samplers.common import GRIDS

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/unet_grids.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samplers", nargs="+", default=["ms2"], choices=["ms2", "ms3", "seeds2", "seeds3"])
    ap.add_argument("--grids", nargs="+", default=["logsnr", "edm", "quadratic"], choices=list(GRIDS))
    ap.add_argument("--etas", nargs="+", type=float, default=[0.5, 1.0])
    ap.add_argument("--steps", nargs="+", type=int, default=[10, 14, 20])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "unet_grids.md")
    args = ap.parse_args(argv)
    if min(args.steps) < 1 or not all(0.0 <= e <= 1.0 for e in args.etas):
        ap.error("--steps must be >= 1 and --etas in [0, 1]")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        inst = build("mnist-unet", quick=False)
    except Unavailable as e:
        print(f"unet_grids: {e}", file=sys.stderr)
        return 2
    runner = Runner(inst, args.seed, print)
    runner.set_reference([e.contestant() for e in SCORESDE if e.name == "em"])
    ref = runner.reference
    if ref is None:
        print("unet_grids: the reference run (Euler-Maruyama, 200 steps) failed; no target", file=sys.stderr)
        return 1
    rows = []
    for name in args.samplers:
        for grid in args.grids:
            for eta in args.etas:
                c = Ours(f"{name}-{grid}-eta{eta:g}", name, {"eta": eta, "grid": grid, **NO_DENOISE}, "").contestant()
                cells = []
                for steps in args.steps:
                    r = runner.one(c, steps)
                    print(f"{name} {grid} eta {eta:g} steps {steps}: NFE {r.nfe_sample:.0f} FD {r.quality['fd']:.2f} "
                          f"class TV {r.quality['class_tv']:.3f}{' OK' if r.ok else ''}", flush=True)
                    cells.append(f"{r.quality['fd']:.2f} ({r.nfe_sample:.0f}){' **ok**' if r.ok else ''}")
                rows.append(f"| {name} | {grid} | {eta:g} | " + " | ".join(cells) + " |")
    wall = time.perf_counter() - t0
    cmd = " ".join(["python benchmarks/unet_grids.py", *(argv if argv is not None else sys.argv[1:])])
    text = [
        "# Grid and eta of the multistep samplers on the trained U-Net",
        "",
        f"Command: `{cmd}` - {platform.machine()}, 1 torch thread, torch {torch.__version__}; {wall:.0f} s "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end).",
        "",
        f"{inst.title}; seed {args.seed}. Reference Euler-Maruyama 200 steps: FD {ref['fd']:.2f}, class TV "
        f"{ref['class_tv']:.3f}; target FD <= {1.1 * ref['fd']:.2f} and class TV <= {ref['class_tv'] + 0.03:.3f} "
        "(**ok**: both hold). Each cell: the FD of the run (its NFE per sample, the final denoise included).",
        "",
        "| sampler | grid | eta | " + " | ".join(f"{s} steps" for s in args.steps) + " |",
        "|---|---|---:|" + "---:|" * len(args.steps),
        *rows,
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text))
    print(f"wrote {args.out} in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
