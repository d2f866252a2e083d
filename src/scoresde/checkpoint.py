"""Preemption-safe checkpoints: atomic writes, newest-first resume, loading without executing code.

A checkpoint is one ``torch.save`` file of tensors and plain values, read back with
``torch.load(weights_only=True)`` (no pickled code runs). Files are written to a temporary name
and renamed into place, so a kill at any moment leaves either the old or the new file, never a
torn one.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints",
           "check_training_state", "load_weights"]

_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read."""


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints in a directory, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_checkpoint(state: dict[str, Any], directory: str | Path, step: int, keep: int = 3) -> Path:
    """Write ``ckpt_{step}.pt`` atomically and keep only the newest ``keep`` checkpoints."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"ckpt_{step}.pt"
    tmp = d / f".ckpt_{step}.pt.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for _, old in list_checkpoints(d)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", trust: bool = False) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; ``trust=True`` allows full unpickling (only for files you trust).

    Every failure is a :class:`CheckpointError` with one line that says what is wrong with the file.
    """
    import zipfile

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (a write that never finished?)")
    if not trust and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (corrupt, or another kind of file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=not trust)
    except Exception as e:  # torch raises several types for corrupt / unsafe files
        text = str(e)
        if not trust and ("Weights only load failed" in text or "Unsupported global" in text):
            raise CheckpointError(f"{path} holds Python objects beyond tensors and plain values; pass "
                                  "--trust-checkpoint (trust=True) only if you trust where the file came from") from None
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a scoresde checkpoint (no 'model' entry)")
    return state


def _tensor_dict(d: Any) -> bool:
    return isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def check_training_state(state: dict[str, Any], path: str | Path) -> None:
    """A checkpoint must hold a whole training state: step, model, ema, optimizer, config and data shape."""
    problems = []
    if not isinstance(state.get("step"), int) or isinstance(state.get("step"), bool) or state["step"] < 0:
        problems.append("'step' is not a step number")
    if not _tensor_dict(state.get("model")):
        problems.append("'model' is not a dict of tensors")
    ema = state.get("ema")
    if not isinstance(ema, dict) or not _tensor_dict(ema.get("shadow")):
        problems.append("'ema' has no 'shadow' weights")
    if not isinstance(state.get("optimizer"), dict):
        problems.append("'optimizer' is missing")
    if not isinstance(state.get("config"), dict):
        problems.append("'config' is missing")
    shape = state.get("data_shape")
    if not isinstance(shape, (list, tuple)) or not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        problems.append("'data_shape' is not a list of positive sizes")
    if problems:
        raise CheckpointError(f"{path} is not a scoresde training checkpoint: {problems[0]}")


def load_weights(net: torch.nn.Module, weights: dict[str, Any], path: str | Path) -> None:
    """``net.load_state_dict(weights)``, with a one-line CheckpointError that counts what does not fit."""
    own = net.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shaped = [k for k in own if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shaped:
        first = (f"{shaped[0]}: checkpoint {tuple(weights[shaped[0]].shape)} vs network {tuple(own[shaped[0]].shape)}"
                 if shaped else f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
        raise CheckpointError(f"{path} holds weights of another network ({len(missing)} missing, {len(unexpected)} "
                              f"unexpected, {len(shaped)} mis-shaped tensors; first: {first}); check the config")
    net.load_state_dict(weights)
