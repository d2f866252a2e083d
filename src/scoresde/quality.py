"""Closed-form quality measures of samples from exact-score problems.

For a mixture, each sample is assigned to its most responsible component at t = 0; the mode
weights are compared with the true weights (total variation, with its Monte-Carlo standard
error), and the within-mode spread with the component's std.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .exact import Gaussian, GaussianMixture

__all__ = ["MixtureReport", "mixture_report", "gaussian_report"]


@dataclass
class MixtureReport:
    weights: Tensor          # sampled mode weights (K,)
    true_weights: Tensor     # (K,)
    tv: float                # total variation between the two
    tv_noise: float          # expected TV of an exact sampler with this many samples (MC floor)
    spread_ratio: Tensor     # per mode: RMS distance to its mean / (sqrt(d) * s_k)  (1 = right)

    def summary(self) -> str:
        ratio = self.spread_ratio[torch.isfinite(self.spread_ratio)]
        return (f"mode-weight TV {self.tv:.4f} (exact-sampler floor ~{self.tv_noise:.4f}); "
                f"within-mode spread / true: {float(ratio.mean()):.3f}" if ratio.numel() else "")


def mixture_report(problem: GaussianMixture, samples: Tensor) -> MixtureReport:
    """Mode weights and within-mode spread of samples against a mixture's closed form."""
    x = samples.reshape(samples.shape[0], -1).double()
    n, k = x.shape[0], problem.num_components
    label = problem.responsibilities(x, 1.0, 1e-6).argmax(-1) if (problem.stds == 0).any() else \
        problem.responsibilities(x).argmax(-1)
    counts = torch.bincount(label, minlength=k).double()
    w = counts / n
    tv = 0.5 * float((w - problem.weights).abs().sum())
    # E|w_hat - w| ~ sqrt(2 w (1 - w) / (pi n)) per component
    noise = 0.5 * float(torch.sqrt(2 * problem.weights * (1 - problem.weights) / (math.pi * n)).sum())
    ratio = torch.full((k,), float("nan"), dtype=torch.float64)
    for j in range(k):
        sel = x[label == j]
        if sel.shape[0] >= 2 and problem.stds[j] > 0:
            rms = ((sel - problem.means[j]) ** 2).sum(-1).mean().sqrt()
            ratio[j] = rms / (math.sqrt(problem.dim) * problem.stds[j])
    return MixtureReport(w, problem.weights, tv, noise, ratio)


def gaussian_report(problem: Gaussian, samples: Tensor) -> dict[str, float]:
    """Largest errors of the sample mean and variance against the Gaussian's closed form."""
    x = samples.reshape(samples.shape[0], -1).double()
    return {"mean_err": float((x.mean(0) - problem.mean).abs().max()),
            "var_rel_err": float((x.var(0) / problem.std**2 - 1).abs().max())}
