"""`scoresde eval` throughput: sample generation with 1 vs 2 processes (torchrun, gloo), and feature extraction img/s.

The model is the main job's network (configs/mnist_cpu.yaml: 0.27 M-parameter U-Net, 28x28) with its default
sampler (DPM-Solver++(2M), 20 steps); its weights are freshly initialised, which does not change the cost
(untrained weights, so no quality numbers here). Generation throughput = samples / wall time of the generation
phase (all ranks' shards done, after the barrier; features included); the reference statistics are computed
before it and not counted. Feature extraction: the digit judge and, with the fid extra installed, the FID
Inception-v3 on 28x28 digits (resized to 299), one thread.

    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 python benchmarks/eval_throughput.py [--num 96] [--inception 20]

Writes benchmarks/results/eval_throughput.md.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _eval(workdir: Path, out: Path, nproc: int, num: int, shard: int, ref: Path) -> dict:
    args = ["eval", "--workdir", str(workdir), "--num-samples", str(num), "--shard-size", str(shard), "--batch-size",
            str(shard), "--features", "digits", "--ref", str(ref), "--no-progress", "--out-dir", str(out),
            "--kid-subsets", "10"]
    cmd = [sys.executable, "-m", "scoresde.cli", *args]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "scoresde.cli", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    return json.loads((out / "report.json").read_text())


def _features_rate(name: str, n: int) -> float | None:
    from scoresde.data import get_dataset
    from scoresde.metrics.features import to_uint8
    from scoresde.metrics.inception import InceptionError
    from scoresde.registry import FEATURES

    try:
        fx = FEATURES[name]()
    except InceptionError:
        return None
    x = to_uint8(get_dataset("mnist5k", split="test")[0][:n])
    fx(x[:2])  # warm-up
    t0 = time.perf_counter()
    fx(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=96, help="samples per run (default 96)")
    p.add_argument("--shard", type=int, default=16, help="shard size = batch size (default 16)")
    p.add_argument("--inception", type=int, default=20, help="images for the Inception rate (default 20)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "eval_throughput.md"))
    a = p.parse_args()
    torch.set_num_threads(1)
    from scoresde.config import load_config
    from scoresde.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = load_config(ROOT / "configs" / "mnist_cpu.yaml", [])
        Trainer(cfg, tmp / "w", progress=False).save()
        ref = tmp / "ref.npz"
        subprocess.run([sys.executable, "-m", "scoresde.cli", "stats", "--data", "mnist5k:test", "--features", "digits",
                        "--no-progress", "--raw", "--out", str(ref)], check=True, capture_output=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
        one = _eval(tmp / "w", tmp / "one", 1, a.num, a.shard, ref)
        two = _eval(tmp / "w", tmp / "two", 2, a.num, a.shard, ref)
        same = all(one[k] == two[k] for k in ("fid", "kid", "is", "precision", "recall"))
    r1, r2 = a.num / one["generation_wall_s"], a.num / two["generation_wall_s"]
    digits = _features_rate("digits", 500)
    inception = _features_rate("inception", a.inception)
    load = os.getloadavg()[0]
    lines = [
        "# `scoresde eval` throughput",
        "",
        f"`python benchmarks/eval_throughput.py --num {a.num} --shard {a.shard}`; {os.cpu_count()} CPU cores, "
        f"one thread per process, load average {load:.1f} at the end (the machine is shared).",
        "",
        f"Generation: the main job's network (configs/mnist_cpu.yaml, untrained weights), "
        f"{one['sampler_description']} (NFE {one['nfe']}), {a.num} samples in shards of {a.shard}, digit features "
        "included.",
        "",
        "| processes | generation wall (s) | samples/s | speed-up |",
        "|---:|---:|---:|---:|",
        f"| 1 | {one['generation_wall_s']:.1f} | {r1:.2f} | 1.00 |",
        f"| 2 (torchrun, gloo) | {two['generation_wall_s']:.1f} | {r2:.2f} | {r2 / r1:.2f} |",
        "",
        f"Metrics of the two runs identical: {same} (FID {one['fid']:.4f} / {two['fid']:.4f}).",
        "",
        "Feature extraction (one thread, 28x28 digits):",
        "",
        "| features | img/s |",
        "|---|---:|",
        f"| digits (128-d judge) | {digits:.0f} |",
        f"| inception (FID Inception-v3, resized to 299) | "
        f"{'not installed' if inception is None else f'{inception:.2f}'} |",
        "",
    ]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
