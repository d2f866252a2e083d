"""Training: Adam with warm-up and clipping, EMA, atomic checkpoints with resume, CSV logs, DDP.

A training step is a pure function of (weights, optimiser state, step): the batch indices come
from a per-epoch permutation seeded by (seed, epoch) and the loss draws from a generator seeded
by (seed, step), both for the *global* batch. So a run killed and resumed from its newest
checkpoint continues exactly as the uninterrupted run, and a DDP run whose ranks each take their
slice of the global batch matches one process on the union batch.
"""
from __future__ import annotations

import csv
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import (
    CheckpointError,
    check_training_state,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from .config import Config, build_loss, build_model, build_net, build_sde, config_to_dict
from .ema import EMA
from .losses import draw
from .seeding import TRAIN_DROPOUT, TRAIN_INIT, TRAIN_LOSS, TRAIN_PERMUTATION, derive_seed
from .workdir import load_training_data, needs_labels, sample_from, save_samples_picture, to_unit_range

__all__ = ["TrainingError", "Trainer"]


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint)."""


def _log_rows(log: Path) -> list[tuple[int, str]]:
    """(step, line) of a training log's data rows; [] when there is no readable log."""
    try:
        lines = log.read_text().splitlines()[1:]
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for line in lines:
        head = line.split(",", 1)[0]
        if head.isdigit():
            rows.append((int(head), line))
    return rows


def _tensorboard_writer(logdir: Path):
    """A TensorBoard SummaryWriter when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(logdir))


class Trainer:
    """Trains the network of a config in ``workdir``, resuming from its newest checkpoint."""

    def __init__(self, cfg: Config, workdir: str | Path, data: Tensor | None = None, device: str | None = None,
                 rank: int = 0, world_size: int = 1, progress: bool = True, restart: bool = False,
                 labels: Tensor | None = None):
        self.cfg, self.workdir = cfg, Path(workdir)
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.progress = progress and rank == 0
        self.data = load_training_data(cfg) if data is None else data
        # labels: for a classifier (training.loss classifier) or a label-conditional network (classifier-free guidance)
        self.labels = labels
        if self.labels is None and needs_labels(cfg):
            self.labels = load_training_data(cfg, labels=True)[1] if data is None else None
            if self.labels is None:
                raise TrainingError("this config trains on labels: pass labels= with data=")
        tc = cfg.training
        if self.data.shape[0] < tc.batch_size:
            raise TrainingError(f"the data set has {self.data.shape[0]} items, fewer than training.batch_size "
                                f"{tc.batch_size}")
        if tc.batch_size % world_size:
            raise TrainingError(f"training.batch_size {tc.batch_size} is not divisible by {world_size} processes")
        self.shape = tuple(self.data.shape[1:])
        self.sde = build_sde(cfg.sde)
        torch.manual_seed(derive_seed(tc.seed, TRAIN_INIT))
        self.net = build_net(cfg.model, self.shape).to(self.device)
        self.ema = EMA(self.net, tc.ema_rate, tc.ema_warmup)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.loss_fn, self.loss_kw = build_loss(tc, cfg.sde.name)
        self.step = 0
        self.ddp_net: nn.Module = self.net
        if world_size > 1:
            self.ddp_net = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.model = build_model(cfg, self.ddp_net, self.sde)
        self._prepare_workdir(restart)
        ckpt = latest_checkpoint(self.ckpt_dir)
        if ckpt is not None:
            self.resume(ckpt)
        elif self.rank == 0:
            self._refuse_orphan_log(restart)

    # ---- the workdir: checked before any step, so no training is lost to an unwritable folder ------
    def _prepare_workdir(self, restart: bool) -> None:
        for d in (self.workdir, self.ckpt_dir):
            if d.exists() and not d.is_dir():
                raise TrainingError(f"{d} exists and is not a directory")
        if self.rank != 0:
            return
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            probe = self.ckpt_dir / f".write_test.{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise TrainingError(f"cannot write checkpoints in {self.ckpt_dir}: {e.strerror or e}") from None
        # a write killed mid-way leaves its temporary file: nothing refers to it any more
        for stale in self.ckpt_dir.glob(".ckpt_*.tmp*"):
            stale.unlink(missing_ok=True)

    def _refuse_orphan_log(self, restart: bool) -> None:
        """A log of earlier steps without any checkpoint: starting over would silently replace that run."""
        log = self.workdir / "log.csv"
        rows = _log_rows(log)
        if not rows:
            return
        if not restart:
            raise TrainingError(f"{log} records a run up to step {rows[-1][0]} but {self.ckpt_dir} holds no "
                                "checkpoint; use another --workdir, or --restart to start over (the old log is "
                                "kept as log.csv.old)")
        os.replace(log, log.with_name("log.csv.old"))

    def _truncate_log(self) -> None:
        """After a resume from step N, drop the log rows of steps after N (they are about to be redone)."""
        log = self.workdir / "log.csv"
        rows = _log_rows(log)
        if rows and rows[-1][0] > self.step:
            lines = log.read_text().splitlines(keepends=True)
            keep = [lines[0]] + [ln for ln in lines[1:] if not ln.split(",", 1)[0].isdigit()
                                 or int(ln.split(",", 1)[0]) <= self.step]
            tmp = log.with_name(f".log.csv.{os.getpid()}.tmp")
            tmp.write_text("".join(keep))
            os.replace(tmp, log)

    # ---- state ---------------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.workdir / "checkpoints"

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "model": self.net.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.opt.state_dict(), "config": config_to_dict(self.cfg),
                "data_shape": list(self.shape)}

    def resume(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        check_training_state(state, path)
        load_weights(self.net, state["model"], path)
        if set(state["ema"]["shadow"]) != set(self.ema.shadow):
            raise CheckpointError(f"{path}: its EMA weights are of another network")
        try:
            self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(state["optimizer"])
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{path}: its EMA or optimizer state does not fit this run "
                                  f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        self.step = int(state["step"])

    def save(self) -> Path | None:
        if self.rank != 0:
            return None
        return save_checkpoint(self.state_dict(), self.ckpt_dir, self.step, self.cfg.training.keep_checkpoints)

    def _snapshot(self, final: bool) -> None:
        """Checkpoint; a failed write warns and training goes on (the next snapshot retries it).

        Stopping would throw away every step since the last good checkpoint; going on keeps them in memory
        until a write succeeds. If the final write fails too, the state is saved in the temporary
        directory instead and the run ends with an error naming that file.
        """
        try:
            self.save()
            return
        except OSError as e:
            reason = e.strerror or str(e)
        if not final:
            print(f"scoresde train: warning: cannot write the checkpoint of step {self.step} in {self.ckpt_dir} "
                  f"({reason}); training goes on and the next snapshot tries again", file=sys.stderr)
            return
        try:
            rescue = Path(tempfile.mkdtemp(prefix="scoresde-rescue-"))
            path = save_checkpoint(self.state_dict(), rescue, self.step, 1)
        except OSError as e:
            raise TrainingError(f"cannot write the final checkpoint in {self.ckpt_dir} ({reason}), nor in the "
                                f"temporary folder ({e.strerror or e}): the steps since the last checkpoint are "
                                "lost") from None
        raise TrainingError(f"cannot write the final checkpoint in {self.ckpt_dir} ({reason}); the state of step "
                            f"{self.step} is saved as {path}: copy it into {self.ckpt_dir} and run again")

    # ---- one step ------------------------------------------------------------------------------
    def batch_indices(self, step: int) -> Tensor:
        """Global batch of ``step``: a slice of the permutation of epoch step // batches_per_epoch."""
        n, b = self.data.shape[0], self.cfg.training.batch_size
        per_epoch = n // b
        epoch, j = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(derive_seed(self.cfg.training.seed, TRAIN_PERMUTATION, epoch))
        perm = torch.randperm(n, generator=g)
        return perm[j * b:(j + 1) * b]

    def lr_at(self, step: int) -> float:
        tc = self.cfg.training
        return tc.lr * min(1.0, (step + 1) / tc.warmup) if tc.warmup > 0 else tc.lr

    def train_step(self) -> dict[str, float]:
        tc = self.cfg.training
        g = torch.Generator().manual_seed(derive_seed(tc.seed, TRAIN_LOSS, self.step))
        x0 = self.data[self.batch_indices(self.step)]
        if self.cfg.data.random_flip and x0.ndim == 4:
            flip = torch.rand(x0.shape[0], generator=g) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        u, noise = draw(x0, g)
        lo = self.rank * (x0.shape[0] // self.world_size)
        hi = lo + x0.shape[0] // self.world_size
        x0, u, noise = x0[lo:hi].to(self.device), u[lo:hi].to(self.device), noise[lo:hi].to(self.device)
        model, extra = self.model, {}
        if self.labels is not None:
            y = self.labels[self.batch_indices(self.step)]
            if tc.label_dropout > 0:  # classifier-free guidance: some labels become the null label
                y = torch.where(torch.rand(y.shape[0], generator=g) < tc.label_dropout, self.net.num_classes, y)
            y = y[lo:hi].to(self.device)
            if tc.loss == "classifier":
                extra = {"y": y}
            else:
                from .guidance import LabelConditionedModel

                model = LabelConditionedModel(self.model, y)
        torch.manual_seed(derive_seed(tc.seed, TRAIN_DROPOUT, self.step, self.rank))  # dropout
        self.net.train()
        use_amp = tc.amp and self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = self.loss_fn(model, x0, u, noise, **self.loss_kw, **extra)
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss ({float(loss)}) at step {self.step}: lower training.lr, "
                                f"check the data scaling, or resume from an earlier checkpoint")
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.net.parameters(), tc.grad_clip if tc.grad_clip > 0 else math.inf)
        self.opt.step()
        self.ema.update(self.net)
        self.step += 1
        loss_value = loss.detach()
        if self.world_size > 1:
            torch.distributed.all_reduce(loss_value)
            loss_value /= self.world_size
        return {"loss": float(loss_value), "grad_norm": float(grad_norm), "lr": self.lr_at(self.step - 1)}

    # ---- the loop ------------------------------------------------------------------------------
    def train(self, n_iters: int | None = None) -> dict[str, float]:
        """Train until step ``n_iters`` (default: the config's), checkpointing and logging on the way."""
        from tqdm.auto import tqdm

        tc = self.cfg.training
        total = tc.n_iters if n_iters is None else n_iters
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            self._write_config()
            self._truncate_log()
        log_path = self.workdir / "log.csv"
        new_log = not log_path.exists()
        last: dict[str, float] = {}
        t0, s0 = time.perf_counter(), self.step
        tb = _tensorboard_writer(self.workdir / "tensorboard") if self.rank == 0 and tc.tensorboard else None
        with open(log_path, "a", newline="") if self.rank == 0 else open(os.devnull, "w") as f, \
                tqdm(total=total, initial=self.step, disable=not self.progress, desc="train",
                     dynamic_ncols=True) as bar:
            writer = csv.writer(f)
            if new_log:
                writer.writerow(["step", "loss", "grad_norm", "lr", "items_per_s", "wall_s"])
            while self.step < total:
                last = self.train_step()
                bar.update()
                bar.set_postfix(loss=f"{last['loss']:.4f}")
                if self.step % tc.log_every == 0 or self.step == total:
                    el = time.perf_counter() - t0
                    ips = (self.step - s0) * tc.batch_size / max(el, 1e-9)
                    writer.writerow([self.step, f"{last['loss']:.6g}", f"{last['grad_norm']:.4g}",
                                     f"{last['lr']:.4g}", f"{ips:.1f}", f"{el:.1f}"])
                    f.flush()
                    if tb is not None:
                        for key in ("loss", "grad_norm", "lr"):
                            tb.add_scalar(f"train/{key}", last[key], self.step)
                        tb.add_scalar("train/items_per_s", ips, self.step)
                if self.step % tc.snapshot_every == 0 or self.step == total:
                    self._snapshot(final=self.step == total)
                if tc.sample_every and self.step % tc.sample_every == 0 and self.rank == 0 and tc.loss != "classifier":
                    grid = self.sample_grid(self.workdir / "samples" / f"step_{self.step}.png")
                    if tb is not None and grid.ndim == 4:
                        tb.add_images("samples", to_unit_range(grid.float().cpu(), self.cfg.data.scale), self.step)
        if tb is not None:
            tb.close()
        return last

    def _write_config(self) -> None:
        import yaml

        path = self.workdir / "config.yaml"
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False))
        os.replace(tmp, path)

    def ema_model(self):
        """The score model with the EMA weights, in eval mode."""
        net = self.ema.copy_to(self.net).eval()
        return build_model(self.cfg, net, self.sde)

    def sample_grid(self, path: Path, num: int | None = None) -> Tensor:
        """Sample with the EMA weights and the config's sampler; write a PNG grid (images) or scatter (points)."""
        samples = sample_from(self.ema_model(), self.cfg, self.shape, num or self.cfg.sampling.num, progress=False)
        save_samples_picture(samples.samples, path, self.cfg, title=f"step {self.step}, NFE {samples.nfe}")
        return samples.samples
