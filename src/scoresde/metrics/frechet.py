"""Distances between two sets of feature vectors: Frechet distance (Heusel et al. 2017) and KID (Binkowski et al. 2018)."""
from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["frechet_distance", "gaussian_stats", "kernel_inception_distance"]


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of an (N, d) feature array, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, d), got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)): the W2 distance squared between two Gaussians.

    The matrix square root is taken as (C1^(1/2) C2 C1^(1/2))^(1/2), which has the same trace and is
    the root of a symmetric positive semi-definite matrix (so it is real and stable, no sqrtm of a
    non-symmetric product).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    c1, c2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    r1 = _psd_sqrt(c1)
    middle = _psd_sqrt(r1 @ c2 @ r1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(middle))


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def kernel_inception_distance(f1: np.ndarray, f2: np.ndarray, subsets: int = 10, subset_size: int = 500,
                              seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with the cubic kernel (x.y/d + 1)^3 over random subsets: (mean, std over subsets).

    The convention of torch-fidelity and Binkowski et al. (2018): ``subsets`` draws of ``subset_size``
    points from each set, each drawn without replacement; the unbiased estimate (diagonals left out of the
    within-set terms) is averaged over the subsets.
    """
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    d = f1.shape[1]
    m = min(subset_size, len(f1), len(f2))
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy.mean())
    return float(np.mean(vals)), float(np.std(vals))
