"""Inception Score (Salimans et al. 2016) from classifier logits: exp E_x KL(p(y|x) || p(y)), over splits."""
from __future__ import annotations

import numpy as np

__all__ = ["inception_score"]


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """(mean, standard deviation) over ``splits`` equal parts of the samples, as the reference code reports it.

    p(y | x) = softmax(logits); within a split p(y) is the mean of p(y | x). IS lies in [1, K] for K classes:
    K for confident predictions spread evenly over the classes, 1 when every prediction is the same.
    """
    from scipy.special import log_softmax  # here: the package imports this module eagerly (the names clash)

    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < splits or splits < 1:
        raise ValueError(f"need (N >= splits={splits}, K) logits, got shape {z.shape}")
    logp = log_softmax(z, axis=1)
    scores = []
    for part in np.array_split(logp, splits):
        p = np.exp(part)
        log_marginal = np.log(p.mean(0) + 1e-300)
        kl = (p * (part - log_marginal[None, :])).sum(1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
