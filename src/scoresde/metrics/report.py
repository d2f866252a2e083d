"""Every metric two feature sets allow: FID always; KID and precision / recall with raw features; IS with logits.

Conventions (stated in the report): FID from the means and unbiased covariances (float64);
KID = unbiased MMD^2 with the kernel (x.y/d + 1)^3, averaged over ``kid_subsets`` random subsets of
``kid_subset_size`` points from each side (torch-fidelity's defaults, 100 x 1000), its spread the standard
deviation over the subsets (features divided by ``kid_scale``: 1 for Inception); improved precision /
recall (Kynkaanniemi et al. 2019) with k = 3 on at most ``pr_num`` points per side (a seeded subset);
IS over 10 splits (mean +- standard deviation).
"""
from __future__ import annotations

import numpy as np

from .stats import Statistics

__all__ = ["compare"]


def _subset(f: np.ndarray, num: int, seed: int) -> np.ndarray:
    if f.shape[0] <= num:
        return f
    return f[np.sort(np.random.default_rng(seed).choice(f.shape[0], num, replace=False))]


def compare(a: Statistics, b: Statistics, *, kid_subsets: int = 100, kid_subset_size: int = 1000,
            pr_num: int = 10_000, k: int = 3, is_splits: int = 10, seed: int = 0, kid_scale: float = 1.0) -> dict:
    """FID (Heusel et al. 2017), KID (Binkowski et al. 2018), precision / recall, IS of a and b, as a dict."""
    from .frechet import frechet_distance, kernel_inception_distance
    from .inception_score import inception_score
    from .manifold import precision_recall

    if a.dim != b.dim:
        raise ValueError(f"the two inputs have features of different sizes ({a.dim} and {b.dim}): "
                         "not the same feature network")
    if a.feature_name and b.feature_name and a.feature_name != b.feature_name:
        raise ValueError(f"the two inputs come from different feature networks ({a.feature_name}, {b.feature_name})")
    out: dict = {"fid": frechet_distance(a.mu, a.sigma, b.mu, b.sigma), "n_a": a.n, "n_b": b.n}
    if a.features is not None and b.features is not None:
        m = min(kid_subset_size, a.features.shape[0], b.features.shape[0])
        if m >= 2:
            kid, kid_std = kernel_inception_distance(a.features / kid_scale, b.features / kid_scale,
                                                     subsets=kid_subsets, subset_size=m, seed=seed)
            out.update(kid=kid, kid_std=kid_std, kid_subsets=kid_subsets, kid_subset_size=m)
        fa, fb = _subset(a.features, pr_num, seed), _subset(b.features, pr_num, seed + 1)
        if min(fa.shape[0], fb.shape[0]) > k:
            # a is the generated side by convention: precision = share of a inside b's manifold
            precision, recall = precision_recall(fb, fa, k=k)
            out.update(precision=precision, recall=recall, pr_k=k, pr_n=[int(fa.shape[0]), int(fb.shape[0])])
    for side, st in (("a", a), ("b", b)):
        if st.logits is not None and st.logits.shape[0] >= is_splits:
            m, s = inception_score(st.logits, splits=is_splits)
            out[f"is_{side}"], out[f"is_{side}_std"] = m, s
    return out
