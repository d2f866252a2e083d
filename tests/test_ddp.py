"""Multi-process training: a 2-process torchrun (DDP, gloo on CPU) run equals one process on the union batch.

Each rank takes its half of the global batch (same indices, same loss draws); DDP averages the
gradients, so the optimiser sees the gradient of the mean loss over the whole batch, as the single
process does. The weights after a few Adam steps must agree up to float32 reduction order.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from scoresde.checkpoint import latest_checkpoint, load_checkpoint

OVERRIDES = ["data.dataset=gmm", "data.num_points=512", "model.arch=mlp", "model.kwargs={width: 32, depth: 2}",
             "training.batch_size=64", "training.n_iters=12", "training.snapshot_every=12", "training.warmup=2",
             "training.lr=0.01", "training.log_every=4", "sampling.steps=4", "sampling.num=8"]


def _train(workdir, nproc: int) -> None:
    args = ["-m", "scoresde.cli", "train", "--workdir", str(workdir), "--no-progress", "--device", "cpu"]
    for o in OVERRIDES:
        args += ["--set", o]
    if nproc > 1:
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] + args
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    r = subprocess.run([sys.executable] + args, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_two_process_gloo_matches_single_process(tmp_path):
    _train(tmp_path / "one", 1)
    _train(tmp_path / "two", 2)
    a = load_checkpoint(latest_checkpoint(tmp_path / "one" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "two" / "checkpoints"))
    assert a["step"] == b["step"] == 12
    moved = 0.0
    for k, v in a["model"].items():
        w = b["model"][k]
        assert torch.allclose(v, w, rtol=1e-4, atol=1e-5), (k, (v - w).abs().max())
        moved = max(moved, float((v - a["ema"]["shadow"][k]).abs().max()))
    for k, v in a["ema"]["shadow"].items():
        assert torch.allclose(v, b["ema"]["shadow"][k], rtol=1e-4, atol=1e-5), k
    assert moved > 1e-3  # the weights did move, so the agreement is not trivial
    # the logged (all-reduced) loss of the DDP run is the single-process loss on the union batch
    la = (tmp_path / "one" / "log.csv").read_text().splitlines()[1:]
    lb = (tmp_path / "two" / "log.csv").read_text().splitlines()[1:]
    for ra, rb in zip(la, lb, strict=True):
        assert abs(float(ra.split(",")[1]) - float(rb.split(",")[1])) < 1e-4 * (1 + abs(float(ra.split(",")[1])))
