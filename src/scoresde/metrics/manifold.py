"""Improved precision and recall (Kynkaanniemi et al. 2019): k-NN balls around each set as its manifold."""
from __future__ import annotations

import numpy as np

__all__ = ["knn_radii", "precision_recall"]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0)


def knn_radii(features: np.ndarray, k: int = 3, block: int = 1024) -> np.ndarray:
    """Distance of each point to its k-th nearest neighbour in the same set (itself excluded)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] <= k:
        raise ValueError(f"need an (N > k={k}, d) feature array, got shape {f.shape}")
    out = np.empty(f.shape[0])
    for lo in range(0, f.shape[0], block):
        d = _sq_dists(f[lo:lo + block], f)
        # the k+1 smallest include the point itself (distance 0)
        out[lo:lo + block] = np.sqrt(np.partition(d, k, axis=1)[:, k])
    return out


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, block: int = 1024) -> float:
    """Fraction of ``points`` inside at least one ball (centre, radius)."""
    inside = np.zeros(points.shape[0], dtype=bool)
    r2 = radii**2
    for lo in range(0, points.shape[0], block):
        inside[lo:lo + block] = (_sq_dists(points[lo:lo + block], centres) <= r2[None, :]).any(1)
    return float(inside.mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall): the share of fake points inside the real manifold, and of real inside the fake one.

    Each manifold is the union of balls around its points with radius the distance to the k-th nearest
    neighbour (k = 3 as in Kynkaanniemi et al. 2019).
    """
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake must be (N, d) with the same d, got {real.shape} and {fake.shape}")
    return _coverage(fake, real, knn_radii(real, k)), _coverage(real, fake, knn_radii(fake, k))
