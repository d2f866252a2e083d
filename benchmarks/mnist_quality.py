"""Quality of a trained MNIST model, judged offline: samples vs real held-out digits.

    python benchmarks/mnist_quality.py --workdir runs/mnist              # after `bash scripts/main.sh`
    python benchmarks/mnist_quality.py --workdir runs/mnist --num 1000 --set steps=500
    python benchmarks/mnist_quality.py --workdir runs/mnist --also dpmpp2m --also seeds2   # + other samplers

The judge is scoresde.metrics.digits (a small CNN trained on the 4,500 training digits of the bundled
mnist5k): Frechet distance (FD) and KID in its 128-d feature space against the training digits, the
class histogram of the samples, and the digit-"Inception" score. The 500 held-out digits give the value
real data reaches at the same N (the floor: FD is biased upwards at small N). Writes
benchmarks/results/mnist_quality.md and docs/mnist_quality.png (sample grid + class histograms).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import yaml

from scoresde.data import mnist5k
from scoresde.metrics import digit_report, load_digit_classifier
from scoresde.workdir import model_from_workdir, sample_from, to_unit_range

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "mnist")
    ap.add_argument("--num", type=int, default=500, help="samples to judge (default 500, the held-out size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="sampler override, e.g. steps=500, predictor=reverse_diffusion, sampler=ode")
    ap.add_argument("--also", action="append", default=[], metavar="SAMPLER[:K=V,...]",
                    help="also judge this sampler at its registry defaults (repeatable), e.g. dpmpp2m, seeds2, "
                         "or with options: seeds2:steps=25,grid=logsnr,eta=1")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mnist_quality.md")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "mnist_quality.png")
    a = ap.parse_args()
    if not (a.workdir / "checkpoints").is_dir():
        print(f"mnist_quality: no trained model in {a.workdir} (run: bash scripts/main.sh)", file=sys.stderr)
        return 2
    over = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)}
    judge = load_digit_classifier()
    model, cfg, shape, step = model_from_workdir(a.workdir)
    t0 = time.perf_counter()
    res = sample_from(model, cfg, shape, a.num, seed=a.seed, **over)
    wall = time.perf_counter() - t0
    samples = to_unit_range(res.samples.float(), cfg.data.scale)
    x_test, y_test = mnist5k("test")
    real = digit_report(x_test[: a.num], judge, y_test[: a.num])
    gen = digit_report(samples, judge)
    from scoresde.samplers.registry import describe

    name0 = over.get("sampler") or cfg.sampling.sampler
    opts0 = dict(cfg.sampling.options) if name0 == cfg.sampling.sampler else {}
    desc = describe(name0, {**opts0, **{k: v for k, v in over.items() if k != "sampler"}})

    extra = []  # (name, report, NFE, seconds, out-of-range fraction) of each --also sampler
    for spec in a.also:
        name, _, opts = spec.partition(":")
        kw = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in opts.split(",") if o)}
        t1 = time.perf_counter()
        r = sample_from(model, cfg, shape, a.num, seed=a.seed, sampler=name, **kw)
        x = r.samples.float()
        extra.append((describe(name, kw), digit_report(to_unit_range(x, cfg.data.scale), judge), r.nfe,
                      time.perf_counter() - t1, float((x.abs() > 1.2).float().mean())))
    oor = float((res.samples.float().abs() > 1.2).float().mean())
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    lines = ["# MNIST sample quality (offline judge)", "",
             f"Model: `{a.workdir}` at step {step} ({cfg.model.arch}, {cfg.sde.name} SDE). Sampler: {desc}; "
             f"NFE {res.nfe}; {a.num} samples in {wall:.0f} s on {machine}.",
             f"Command: `python benchmarks/mnist_quality.py {' '.join(sys.argv[1:])}`", "",
             "| set | N | NFE | FD | KID (1e-3) | digit IS | class TV | confidence | out of [-1.2, 1.2] |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [("real held-out digits", real, "", ""), (f"samples, config's sampler ({desc})", gen, res.nfe, f"{oor:.4f}")]
    rows += [(f"samples, {name} ({s:.0f} s)", r, nfe, f"{o:.4f}") for name, r, nfe, s, o in extra]
    for name, r, nfe, o in rows:
        lines.append(f"| {name} | {r.n} | {nfe} | {r.fd:.2f} | {r.kid * 1e3:.1f} +- {r.kid_std * 1e3:.1f} | "
                     f"{r.digit_is:.2f} | {r.class_tv:.3f} | {r.confidence:.3f} | {o} |")
    hist = " ".join(f"{h:.3f}" for h in gen.class_hist)
    lines += ["", "Class histogram of the config's sampler's samples (digits 0..9): " + hist,
              f"Judge accuracy on the held-out digits: {real.accuracy:.3f}"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _figure(samples[:64].numpy(), real, gen, a.figure, f"step {step}, NFE {res.nfe}")
    print(f"wrote {a.out} and {a.figure}")
    return 0


def _figure(grid_images: np.ndarray, real, gen, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scoresde.plotting import image_grid

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4.6), gridspec_kw={"width_ratios": [1, 1.2]})
    ax0.imshow(image_grid(grid_images)[..., 0], cmap="gray", vmin=0, vmax=255)
    ax0.set_axis_off()
    ax0.set_title(f"64 samples ({title})")
    k = np.arange(10)
    ax1.bar(k - 0.2, real.class_hist, 0.4, label=f"held-out real (FD {real.fd:.1f})")
    ax1.bar(k + 0.2, gen.class_hist, 0.4, label=f"samples (FD {gen.fd:.1f})")
    ax1.axhline(0.1, color="k", lw=0.8, ls=":")
    ax1.set_xticks(k)
    ax1.set_xlabel("digit assigned by the judge")
    ax1.set_ylabel("fraction")
    ax1.set_title(f"class histogram, N = {gen.n}")
    ax1.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
