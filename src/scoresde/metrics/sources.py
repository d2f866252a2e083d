"""What a metric input names: a statistics file, an .npz of samples, an image folder, eval shards, or a data spec.

A data spec names any data set the trainer reads: ``NAME[:SPLIT][@ROOT]`` (``mnist5k``, ``mnist5k:test``,
``cifar10:train@data/cifar-10-batches-py``, ``folder:all@imgs/``, ``array@x.npz``), or a training config
``CONFIG.yaml[:SPLIT]`` (its ``data:`` section, with its resolution and channels). The default split is
``train`` for the fixed-format sets and ``all`` for folders, arrays and Hugging Face sets.

Images come back as uint8 (N, C, H, W): an .npz's ``samples`` are in data space (``scale``: ``[-1,1]``, the
project's default, or ``[0,1]``; uint8 samples are taken as they are) and quantised by rounding; a folder
holding ``shard_*.npz`` (the output of ``scoresde eval``) gives its shards' uint8 images in index order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .stats import Statistics, is_statistics_file, load_statistics

__all__ = ["Source", "SourceError", "load_source", "parse_data_spec"]

_WHOLE = ("folder", "array", "hf")


class SourceError(ValueError):
    """An input that names nothing readable; the message says what was tried."""


@dataclass
class Source:
    """Either 8-bit images or precomputed statistics, with a label for reports."""

    label: str
    images: Tensor | None = None
    stats: Statistics | None = None


def parse_data_spec(spec: str) -> dict:
    """``NAME[:SPLIT][@ROOT]`` or ``CONFIG.yaml[:SPLIT]`` -> keyword arguments of :func:`scoresde.data.get_dataset`."""
    from ..data import DATASET_NAMES, SPLITS

    head, _, root = spec.partition("@")
    name, _, split = head.partition(":")
    if name.endswith((".yaml", ".yml")):
        from ..config import ConfigError, load_config

        try:
            d = load_config(name, []).data
        except ConfigError as e:
            raise SourceError(f"data spec {spec!r}: {e}") from None
        kw = {"name": d.dataset, "root": root or d.root, "resolution": d.resolution, "channels": d.channels,
              "n": d.num_points}
        name = d.dataset
    else:
        if name not in DATASET_NAMES:
            raise SourceError(f"{spec!r} is not a file, folder or data spec NAME[:SPLIT][@ROOT] (NAME one of "
                              f"{', '.join(DATASET_NAMES)}, or a config .yaml)")
        kw = {"name": name, "root": root or None}
    if split and split not in SPLITS:
        raise SourceError(f"data spec {spec!r}: unknown split {split!r} (use {', '.join(SPLITS)})")
    kw["split"] = split or ("all" if name in _WHOLE else "train")
    return kw


def _samples_images(path: Path, arr: np.ndarray, scale: str) -> Tensor:
    if arr.ndim != 4:
        raise SourceError(f"{path}: samples of shape {arr.shape} are not images (need (N, C, H, W) or (N, H, W, C))")
    if arr.shape[1] not in (1, 3) and arr.shape[3] in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if arr.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(arr))
    if not np.issubdtype(arr.dtype, np.floating):
        raise SourceError(f"{path}: samples must be float or uint8 images, got dtype {arr.dtype}")
    from .features import to_uint8

    x = torch.from_numpy(arr.astype(np.float32))
    x = (x + 1) / 2 if scale == "[-1,1]" else x
    return to_uint8(torch.nan_to_num(x, nan=0.0))


def load_source(spec: str, scale: str = "[-1,1]", limit: int | None = None) -> Source:
    """Read a metric input (see the module docstring); ``limit`` keeps the first ``limit`` images."""
    import zipfile

    from ..data import DataError, get_dataset
    from .features import to_uint8

    p = Path(spec)
    if p.is_file():
        if is_statistics_file(p):
            return Source(f"statistics {p}", stats=load_statistics(p))
        if not zipfile.is_zipfile(p):
            raise SourceError(f"{p} is not an .npz (samples or statistics)")
        try:
            with np.load(p, allow_pickle=False) as z:
                if "samples" not in z.files:
                    raise SourceError(f"{p} holds {', '.join(z.files) or 'no arrays'}; expected samples, or "
                                      "mu/sigma or pool_3 (statistics)")
                arr = z["samples"][:limit] if limit else z["samples"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise SourceError(f"cannot read {p} ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        return Source(f"samples {p}", images=_samples_images(p, arr, scale))
    if p.is_dir() and (p / "shard_000000.npz").is_file():  # an eval output folder: its shards' 8-bit images
        shards = sorted(p.glob("shard_*.npz"))
        try:
            images = torch.cat([torch.from_numpy(np.load(f, allow_pickle=False)["images"]) for f in shards])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise SourceError(f"cannot read the eval shards in {p} ({e})") from None
        return Source(f"eval shards {p}", images=images[:limit] if limit else images)
    kw = {"name": "folder", "root": str(p), "split": "all"} if p.is_dir() else parse_data_spec(spec)
    try:
        x, _ = get_dataset(**kw, limit=limit)
    except DataError as e:
        raise SourceError(str(e)) from None
    if x.ndim != 4:
        raise SourceError(f"{spec}: {kw['name']} holds points of shape {tuple(x.shape)}, not images")
    label = f"images {p}" if p.is_dir() else f"data {kw['name']}:{kw['split']}"
    return Source(label, images=to_uint8(x))
