"""Issue 15 guard: out-of-range pixels of ODE samples, eps- vs v-prediction, after a short training run.

    python benchmarks/ode_range.py                                   # configs/mnist_cpu.yaml, 400 steps, seed 0
    python benchmarks/ode_range.py --steps 300 --seeds 0 1 2 --num 100
    python benchmarks/ode_range.py --config configs/mnist_cpu.yaml --set model.kwargs.nf=8

The eps-parameterised network's deterministic samplers (probability-flow ODE, DPM-Solver++, DDIM, ETD)
leave residual starting noise in the samples: errors of eps_hat at the high and medium noise levels are
multiplied by sigma in D = (x - sigma eps_hat) / alpha and the ODE carries them to t = 0 (no fresh
noise to wash them out), so salt-and-pepper pixels end far outside the data range. The SDE samplers are
not affected, and neither is the v-parameterised network (its D has bounded error at every noise level).

For each prediction (eps, v) and seed, the script trains the config for ``--steps`` steps (same data,
same seed, same everything else; EMA weights, no checkpoints), samples ``--num`` digits with
dpmpp2m (20 steps), the dopri5 probability-flow ODE and an SDE sampler (seeds1, 50 steps), and reports
the fraction of pixels outside [-1.2, 1.2] (data range [-1, 1]). Writes benchmarks/results/ode_range.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from scoresde.config import load_config
from scoresde.train import Trainer
from scoresde.workdir import load_training_data, sample_from

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 1.2

#: (label, sample_from keyword arguments); the first two are ODE samplers, the last an SDE sampler
SAMPLERS = [("dpmpp2m-20 (ODE)", dict(sampler="dpmpp2m", steps=20)),
            ("dopri5 (ODE)", dict(sampler="ode", method="dopri5", rtol=1e-4, atol=1e-4)),
            ("seeds1-50 (SDE)", dict(sampler="seeds1", steps=50))]


def train_short(config: Path | str, overrides: list[str], steps: int, data: torch.Tensor | None = None):
    """(Trainer, wall seconds) after ``steps`` training steps of a config in a throw-away workdir (no checkpoints)."""
    cfg = load_config(config, list(overrides) + ["training.tensorboard=false", f"training.n_iters={steps}"])
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, tmp, data=load_training_data(cfg) if data is None else data, device="cpu", progress=False)
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    return tr, time.perf_counter() - t0


def out_of_range(x: torch.Tensor, limit: float = LIMIT) -> float:
    return float((x.float().abs() > limit).float().mean())


def run(config: Path | str, overrides: list[str], steps: int, seed: int, num: int,
        samplers=SAMPLERS) -> dict[str, dict]:
    """{prediction: {"train_s", "loss", label: (out-of-range fraction, NFE, sampling seconds)}} for eps and v."""
    res: dict[str, dict] = {}
    data = None
    for pred in ("eps", "v"):
        tr, wall = train_short(config, list(overrides) + [f"model.prediction={pred}", f"training.seed={seed}"],
                               steps, data)
        data = tr.data
        model = tr.ema_model()
        row: dict = {"train_s": wall}
        for label, kw in samplers:
            t0 = time.perf_counter()
            out = sample_from(model, tr.cfg, tr.shape, num, seed=seed, progress=False, **kw)
            row[label] = (out_of_range(out.samples), out.nfe, time.perf_counter() - t0)
            print(f"seed {seed} {pred:3s} {label:18s} out-of-range {row[label][0]:.4f}  NFE {out.nfe}", flush=True)
        res[pred] = row
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "mnist_cpu.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--steps", type=int, default=400, help="training steps per model (default 400)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--num", type=int, default=100, help="samples per sampler (default 100)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ode_range.md")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    labels = [lab for lab, _ in SAMPLERS]
    lines = ["# ODE samples out of range: eps vs v prediction (issue 15)", "",
             f"Config `{a.config.relative_to(ROOT) if a.config.is_absolute() else a.config}`"
             f"{' with ' + ', '.join(a.set) if a.set else ''}, trained {a.steps} steps per model "
             f"(EMA weights), {a.num} samples per sampler, on {platform.machine()} with {a.threads} thread(s), "
             f"torch {torch.__version__}. Fraction of pixels outside [-{LIMIT}, {LIMIT}] (data in [-1, 1]); "
             f"NFE in brackets. dopri5 at rtol = atol = 1e-4.",
             f"Command: `python benchmarks/ode_range.py {' '.join(sys.argv[1:])}`", "",
             "| seed | prediction | train s | " + " | ".join(labels) + " |",
             "|---:|---|---:|" + "---:|" * len(labels)]
    for seed in a.seeds:
        res = run(a.config, a.set, a.steps, seed, a.num)
        for pred, row in res.items():
            cells = " | ".join(f"{row[lab][0]:.4f} ({row[lab][1]})" for lab in labels)
            lines.append(f"| {seed} | {pred} | {row['train_s']:.0f} | {cells} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
