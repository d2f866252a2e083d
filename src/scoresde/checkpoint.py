"""Preemption-safe checkpoints: atomic writes, newest-first resume, loading without executing code.

A checkpoint is one ``torch.save`` file of tensors and plain values, read back with
``torch.load(weights_only=True)`` (no pickled code runs). Files are written to a temporary name
and renamed into place, so a kill at any moment leaves either the old or the new file, never a
torn one.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints"]

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
    """Read a checkpoint with ``weights_only=True``; ``trust=True`` allows full unpickling (only for files you trust)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=not trust)
    except Exception as e:  # torch raises several types for corrupt / unsafe files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a scoresde checkpoint (no 'model' entry)")
    return state
