"""Training throughput (images/s) of a config, and the parameter counts of the paper-size networks.

    python benchmarks/train_throughput.py                       # configs/mnist_cpu.yaml, 1 and all threads
    python benchmarks/train_throughput.py --config configs/vp/cifar10_ddpmpp_continuous.yaml --steps 20 --data random

Writes benchmarks/results/train_throughput.md. Steps are timed after a few warm-up steps; the
trainer is the real one (loss, backward, clipping, Adam, EMA), without checkpoints or logs.
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

from scoresde.config import build_net, load_config
from scoresde.nets import count_parameters, paper_configs
from scoresde.train import Trainer
from scoresde.workdir import load_training_data

ROOT = Path(__file__).resolve().parent.parent


def throughput(config: Path, steps: int, threads: int, data: str, device: str, warmup: int = 5) -> tuple[float, int]:
    torch.set_num_threads(threads)
    cfg = load_config(config, ["training.tensorboard=false"])
    if data == "random":  # the network's speed without the data set (e.g. CIFAR-10 not on this machine)
        shape = {"cifar10": (3, 32, 32), "celeba": (3, cfg.data.resolution, cfg.data.resolution),
                 "folder": (3, cfg.data.resolution, cfg.data.resolution)}.get(cfg.data.dataset, (1, 28, 28))
        x = torch.rand(max(4 * cfg.training.batch_size, 512), *shape) * 2 - 1
    else:
        x = load_training_data(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, tmp, data=x, device=device, progress=False)
        for _ in range(warmup):
            tr.train_step()
        if tr.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.train_step()
        if tr.device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    return steps * cfg.training.batch_size / wall, count_parameters(tr.net)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "mnist_cpu.yaml")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, nargs="*", default=sorted({1, os.cpu_count() or 1}))
    ap.add_argument("--data", choices=["config", "random"], default="config")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_throughput.md")
    a = ap.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, device {a.device}"
    if a.device.startswith("cuda") and torch.cuda.is_available():
        machine += f" ({torch.cuda.get_device_name()})"
    lines = ["# Training throughput\n", f"Machine: {machine}. Command: `python benchmarks/train_throughput.py "
             f"{' '.join(sys.argv[1:])}`\n", "| config | params | threads | steps | images/s |",
             "|---|---:|---:|---:|---:|"]
    for th in a.threads:
        ips, n = throughput(a.config, a.steps, th, a.data, a.device)
        name = a.config.relative_to(ROOT) if a.config.is_absolute() else a.config
        row = f"| {name} | {n / 1e6:.2f}M | {th} | {a.steps} | {ips:.0f} |"
        print(row, flush=True)
        lines.append(row)
    lines += ["", "## Parameter counts of the paper-size networks (3 channels, 32x32)", "",
              "| network | parameters |", "|---|---:|"]
    for name, (cls, kw) in paper_configs().items():
        with torch.device("meta"):
            n = count_parameters(cls(**kw))
        lines.append(f"| {name} | {n / 1e6:.2f}M |")
    lines += ["", "## Configs in configs/ (network size)", "", "| config | parameters |", "|---|---:|"]
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        cfg = load_config(path)
        d = cfg.data
        shape = {"cifar10": (3, 32, 32), "mnist5k": (1, 28, 28)}.get(d.dataset) or (
            (3, d.resolution, d.resolution) if d.dataset in ("celeba", "folder") else (2,))
        with torch.device("meta"):
            n = count_parameters(build_net(cfg.model, shape))
        lines.append(f"| {path.relative_to(ROOT)} | {n / 1e6:.2f}M |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
