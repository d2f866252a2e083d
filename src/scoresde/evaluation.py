"""Sharded, resumable sample generation for evaluation: shards of per-sample seeds, each written atomically.

N samples of a run with seed S are cut into shards of ``shard_size`` consecutive sample indices; shard k
holds samples [k S_z, min((k + 1) S_z, N)), each drawn from its own per-sample seed (S, i)
(:mod:`scoresde.seeding`), so a sample does not depend on which process draws it or when. A shard is
sampled, quantised to 8 bits, run through the feature network and written in one ``os.replace`` (uint8
``images``, float32 ``features`` and ``logits``, the ``indices``, NFE, seconds, and a ``meta`` fingerprint
of the settings). A shard file either exists whole or not at all, so a killed run loses at most the shards
in flight (one per process) and a restart skips every finished shard whose fingerprint matches.

Across processes (torchrun, gloo) shard k belongs to rank k mod world_size: every seed is drawn exactly
once, by one process; after a barrier rank 0 gathers the shard files (a file system the ranks share).
Each generated shard appends one line to ``generated.log`` (shard, rank, indices), so the work done can
be audited. Results do not depend on the number of processes nor on restarts: the batches inside a shard
are the same whoever draws it.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .metrics.stats import savez_atomic

__all__ = ["EvalShards", "Shard", "gather_shards", "generate_shards", "shard_path", "shard_ranges"]


@dataclass(frozen=True)
class Shard:
    """Shard ``k``: sample indices [lo, hi)."""

    k: int
    lo: int
    hi: int


def shard_ranges(num: int, shard_size: int) -> list[Shard]:
    """The shards of ``num`` samples, ``shard_size`` each (the last may be shorter)."""
    if num < 1 or shard_size < 1:
        raise ValueError(f"num and shard_size must be >= 1, got {num} and {shard_size}")
    return [Shard(k, lo, min(lo + shard_size, num)) for k, lo in enumerate(range(0, num, shard_size))]


def shard_path(folder: str | Path, k: int) -> Path:
    return Path(folder) / f"shard_{k:06d}.npz"


@dataclass
class EvalShards:
    """What a shard needs: draw samples [lo, hi) -> data-space tensor (and NFE), features of 8-bit images, the fingerprint.

    ``draw(lo, hi)`` returns ``(samples, nfe, nfe_per_sample or None)``; ``to_images`` maps data-space samples
    to uint8; ``features(images)`` returns (features, logits or None) as numpy arrays.
    """

    folder: Path
    draw: Callable
    to_images: Callable
    features: Callable
    meta: dict


def _read_meta(path: Path) -> tuple[dict, tuple[int, int]] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            idx = z["indices"]
            return json.loads(str(z["meta"])), (int(idx[0]), int(idx[-1]) + 1)
    except Exception:  # noqa: BLE001 - an unreadable shard is regenerated
        return None


def _shard_done(path: Path, shard: Shard, meta: dict) -> bool:
    """Whether ``path`` holds shard ``shard`` made with these settings; a different fingerprint is an error."""
    if not path.is_file():
        return False
    got = _read_meta(path)
    if got is None:
        return False
    stored, (lo, hi) = got
    if stored != meta:
        diff = sorted(k for k in set(stored) | set(meta) if stored.get(k) != meta.get(k))
        raise ValueError(f"{path} was made with other settings ({', '.join(diff)} differ): use another output "
                         "folder, or delete its shards to start again")
    return (lo, hi) == (shard.lo, shard.hi)



def _run_shard(job: EvalShards, shard: Shard, rank: int) -> None:
    t0 = time.perf_counter()
    samples, nfe, nfe_per_sample = job.draw(shard.lo, shard.hi)
    images = job.to_images(samples)
    gen_s = time.perf_counter() - t0
    feats, logits = job.features(images)
    extra = {} if logits is None else {"logits": np.asarray(logits, np.float32)}
    if nfe_per_sample is not None:
        extra["nfe_per_sample"] = np.asarray(nfe_per_sample, np.int64)
    savez_atomic(shard_path(job.folder, shard.k), images=images.cpu().numpy(), features=np.asarray(feats, np.float32),
                 indices=np.arange(shard.lo, shard.hi, dtype=np.int64), nfe=np.int64(nfe), gen_s=np.float64(gen_s),
                 feat_s=np.float64(time.perf_counter() - t0 - gen_s), meta=np.array(json.dumps(job.meta, sort_keys=True)),
                 **extra)
    with open(job.folder / "generated.log", "a") as f:  # one short O_APPEND write per shard
        f.write(f"shard {shard.k} rank {rank} indices {shard.lo}-{shard.hi}\n")


def generate_shards(job: EvalShards, num: int, shard_size: int, rank: int = 0, world_size: int = 1,
                    progress: bool = False) -> dict:
    """Generate this rank's missing shards (k mod world_size == rank); returns {generated, skipped} counts."""
    from tqdm.auto import tqdm

    job.folder.mkdir(parents=True, exist_ok=True)
    meta = json.loads(json.dumps(job.meta, sort_keys=True))  # the form it is stored in
    mine = [s for s in shard_ranges(num, shard_size) if s.k % world_size == rank]
    for s in mine:  # temporaries of a killed run (only this rank writes these shards)
        for tmp in job.folder.glob(f".{shard_path(job.folder, s.k).name}.*.tmp.npz"):
            tmp.unlink(missing_ok=True)
    todo = [s for s in mine if not _shard_done(shard_path(job.folder, s.k), s, meta)]
    done = sum(s.hi - s.lo for s in mine) - sum(s.hi - s.lo for s in todo)
    with tqdm(total=sum(s.hi - s.lo for s in mine), initial=done, disable=not progress, desc="eval samples",
              leave=False, dynamic_ncols=True, unit="img") as bar:
        for s in todo:
            _run_shard(job, s, rank)
            bar.update(s.hi - s.lo)
    return {"generated": len(todo), "skipped": len(mine) - len(todo)}


def gather_shards(folder: str | Path, num: int, shard_size: int, meta: dict) -> dict:
    """All shards of a finished run, in index order: features, logits, NFE, timings; checks every index once."""
    folder = Path(folder)
    meta = json.loads(json.dumps(meta, sort_keys=True))
    feats, logits, nfe, per_sample, gen_s, feat_s, idx = [], [], [], [], 0.0, 0.0, []
    for s in shard_ranges(num, shard_size):
        path = shard_path(folder, s.k)
        if not _shard_done(path, s, meta):
            raise ValueError(f"shard {s.k} ({path}) is missing or incomplete")
        with np.load(path, allow_pickle=False) as z:
            feats.append(z["features"])
            if "logits" in z.files:
                logits.append(z["logits"])
            if "nfe_per_sample" in z.files:
                per_sample.append(z["nfe_per_sample"])
            nfe.append(int(z["nfe"]))
            gen_s += float(z["gen_s"])
            feat_s += float(z["feat_s"])
            idx.append(z["indices"])
    indices = np.concatenate(idx)
    if not np.array_equal(indices, np.arange(num)):
        raise ValueError(f"the shards in {folder} do not hold samples 0..{num - 1} exactly once")
    return {"features": np.concatenate(feats).astype(np.float64),
            "logits": np.concatenate(logits).astype(np.float64) if len(logits) == len(idx) else None,
            "nfe": max(nfe), "nfe_mean": float(np.concatenate(per_sample).mean()) if per_sample else float(max(nfe)),
            "gen_s": gen_s, "feat_s": feat_s}


def load_shard_images(folder: str | Path, num: int, shard_size: int) -> torch.Tensor:
    """The uint8 images of all shards, in index order."""
    return torch.cat([torch.from_numpy(np.load(shard_path(folder, s.k))["images"]) for s in shard_ranges(num, shard_size)])
