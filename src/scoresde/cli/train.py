"""``scoresde train``: train a score model from a YAML config, resuming from the workdir's newest checkpoint."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .args import CLIError

__all__ = ["register"]

EPILOG = """\
examples:
  scoresde train --config configs/mnist_cpu.yaml --workdir runs/mnist
  scoresde train --config configs/toy_gmm.yaml --workdir runs/toy --set training.n_iters=3000
  scoresde sample --workdir runs/mnist --num 64 --out runs/mnist/grid.npz
"""


def register(sub) -> None:
    t = sub.add_parser("train", help="train a score model (resumes when the workdir holds a checkpoint)",
                       description="Train a score network with denoising score matching. Resumes from the newest "
                                   "checkpoint in --workdir; writes checkpoints/, log.csv, config.yaml and a sample "
                                   "grid there.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--config", metavar="C.yaml", help="a YAML config (see configs/); default: the workdir's own "
                                                      "config.yaml when it has one, else all defaults")
    t.add_argument("--workdir", required=True, metavar="W", help="where checkpoints, logs and samples go")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set training.batch_size=64 (repeatable)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    t.add_argument("--restart", action="store_true", help="start over in a workdir whose log.csv records earlier "
                                                          "steps but which holds no checkpoint (the log is kept as "
                                                          "log.csv.old)")
    t.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from ..checkpoint import CheckpointError
    from ..config import ConfigError, load_config
    from ..data import DataError
    from ..train import Trainer, TrainingError

    prog = "scoresde train"
    workdir = _check_workdir(args.workdir, prog)
    config = args.config
    if config is None and (workdir / "config.yaml").is_file():
        config = workdir / "config.yaml"  # resuming: the run's own config
        print(f"{prog}: using {config}")
    try:
        cfg = load_config(config, args.set)
    except ConfigError as e:
        raise CLIError(f"{prog}: {e}") from None
    args.device = _check_device(args.device, prog)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        if world > 1:
            import torch
            import torch.distributed as dist

            backend = "nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo"
            dist.init_process_group(backend)
            device = args.device or (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if backend == "nccl" else "cpu")
        else:
            device = args.device
        trainer = Trainer(cfg, workdir, device=device, rank=rank, world_size=world,
                          progress=not args.no_progress, restart=args.restart)
        start = trainer.step
        if rank == 0 and start:
            print(f"resuming from step {start} ({workdir}/checkpoints)")
        t0 = time.perf_counter()
        last = trainer.train()
        wall = time.perf_counter() - t0
        if rank == 0 and cfg.training.loss == "classifier":  # a classifier: held-out accuracy, no samples
            import torch

            from ..classifier import NoiseConditionalClassifier, accuracy_by_level
            from ..workdir import load_training_data

            x, y = load_training_data(cfg, split="test", labels=True)
            clf = NoiseConditionalClassifier(trainer.ema.copy_to(trainer.net).eval(), trainer.sde)
            times = torch.tensor([trainer.sde.t_end, 0.25, 0.5, 0.75])
            acc = accuracy_by_level(clf, x.to(trainer.device), y, times)
            print(f"trained steps {start}..{trainer.step} in {wall:.0f} s, last loss {last.get('loss', float('nan')):.4f}; "
                  "held-out accuracy (EMA) at t = " + ", ".join(f"{t:g}: {a:.3f}" for t, a in zip(times.tolist(), acc)))
        elif rank == 0:
            grid = workdir / "samples.png"
            trainer.sample_grid(grid)
            done = trainer.step - start
            print(f"trained steps {start}..{trainer.step} in {wall:.0f} s "
                  f"({done * cfg.training.batch_size / max(wall, 1e-9):.0f} items/s), last loss "
                  f"{last.get('loss', float('nan')):.4f}; samples: {grid}")
    except (ConfigError, TrainingError, CheckpointError, DataError) as e:
        raise CLIError(f"scoresde train: {e}") from None
    return 0


def _check_workdir(path: str, prog: str) -> Path:
    """A workdir that is, or can become, a writable directory (checked before anything is written)."""
    if not path or not path.strip():
        raise CLIError(f"{prog}: --workdir must not be empty")
    w = Path(path)
    if w.exists() and not w.is_dir():
        raise CLIError(f"{prog}: --workdir {path} exists and is not a directory")
    existing = next(p for p in [w, *w.parents] if p.exists())
    if not existing.is_dir():
        raise CLIError(f"{prog}: --workdir {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"{prog}: --workdir {path}: {existing} is not writable")
    return w


def _check_device(device: str | None, prog: str) -> str | None:
    """None, or a torch device this machine has: one line for a name torch does not know or a missing GPU."""
    if device is None:
        return None
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, ValueError):
        raise CLIError(f"{prog}: --device must be cpu, cuda or cuda:N, got {device!r}") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"{prog}: --device {device}: this PyTorch has no usable CUDA device (use --device cpu)")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise CLIError(f"{prog}: --device {device}: there are {torch.cuda.device_count()} CUDA devices")
    elif d.type != "cpu":
        raise CLIError(f"{prog}: --device must be cpu, cuda or cuda:N, got {device!r}")
    return device
