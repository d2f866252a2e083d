"""Statistics files of a feature set (Heusel et al. 2017): mean, covariance and, optionally, the raw features.

One ``.npz`` format that the seed's and pytorch-fid's readers both accept:

* ``mu`` (d,), ``sigma`` (d, d) float64 (unbiased covariance), ``n`` - always (pytorch-fid's keys);
* ``pool_3`` (N, d) float32 raw features and ``logits`` (N, K) - with ``raw`` (the seed's keys: score_sde
  writes ``pool_3`` and ``logits`` and computes FID from the raw features);
* ``feature_name`` - the extractor (``inception``, ``digits``), so features of two networks are not compared.

:func:`load_statistics` reads this format, the seed's files (``pool_3`` [+ ``logits``] only) and
pytorch-fid's (``mu``, ``sigma`` only).
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Statistics", "StatisticsError", "load_statistics", "save_statistics", "savez_atomic"]


class StatisticsError(ValueError):
    """A statistics file that cannot be read; the message names the file and what is wrong."""


@dataclass
class Statistics:
    """Gaussian statistics of N feature vectors, with the raw features and logits when kept."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    features: np.ndarray | None = None
    logits: np.ndarray | None = None
    feature_name: str | None = None

    @classmethod
    def from_features(cls, features: np.ndarray, logits: np.ndarray | None = None,
                      feature_name: str | None = None) -> Statistics:
        """Mean and unbiased covariance (float64) of (N, d) features, keeping them and the logits."""
        from .frechet import gaussian_stats

        mu, sigma = gaussian_stats(features)
        return cls(mu, sigma, int(features.shape[0]), np.asarray(features), logits, feature_name)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def save_statistics(path: str | Path, stats: Statistics, raw: bool = False) -> None:
    """Write ``stats`` atomically; ``raw`` adds ``pool_3`` (and ``logits``) as float32, the seed's format."""
    arrays: dict[str, np.ndarray] = {"mu": np.asarray(stats.mu, np.float64), "sigma": np.asarray(stats.sigma, np.float64),
                                     "n": np.int64(stats.n)}
    if stats.feature_name is not None:
        arrays["feature_name"] = np.array(stats.feature_name)
    if raw:
        if stats.features is None:
            raise StatisticsError("raw features were not kept; nothing to write as pool_3")
        arrays["pool_3"] = np.asarray(stats.features, np.float32)
        if stats.logits is not None:
            arrays["logits"] = np.asarray(stats.logits, np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    savez_atomic(path, **arrays)


def savez_atomic(path: Path, **arrays) -> None:
    """``np.savez`` to a temporary name beside ``path``, then one ``os.replace``: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def is_statistics_file(path: str | Path) -> bool:
    """Whether ``path`` is an .npz holding ``mu``/``sigma`` or ``pool_3`` (and not ``samples``)."""
    p = Path(path)
    if not p.is_file() or not zipfile.is_zipfile(p):
        return False
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    return "samples" not in keys and ({"mu", "sigma"} <= keys or "pool_3" in keys)


def load_statistics(path: str | Path) -> Statistics:
    """Read a statistics file: ours, the seed's (``pool_3`` [+ ``logits``]) or pytorch-fid's (``mu``, ``sigma``)."""
    p = Path(path)
    if not p.is_file():
        raise StatisticsError(f"statistics file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise StatisticsError(f"cannot read statistics file {p} ({first})") from None
    feats = data.get("pool_3")
    if feats is not None:
        feats = feats.reshape(feats.shape[0], -1).astype(np.float64)
    logits = data.get("logits")
    name = str(data["feature_name"]) if "feature_name" in data else None
    if "mu" in data and "sigma" in data:
        mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise StatisticsError(f"{p}: mu {mu.shape} and sigma {sigma.shape} do not match (need (d,) and (d, d))")
        n = int(data["n"]) if "n" in data else (feats.shape[0] if feats is not None else 0)
        return Statistics(mu, sigma, n, feats, logits.astype(np.float64) if logits is not None else None, name)
    if feats is None:
        raise StatisticsError(f"{p} holds {', '.join(data) or 'no arrays'}; a statistics file needs mu and sigma "
                              "or pool_3 (raw features)")
    if feats.shape[0] < 2 or not np.isfinite(feats).all():
        raise StatisticsError(f"{p}: pool_3 must hold >= 2 finite feature vectors, got shape {feats.shape}")
    st = Statistics.from_features(feats, logits.astype(np.float64) if logits is not None else None, name)
    return st
