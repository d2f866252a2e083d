"""Noise-conditional classifiers p_t(y | x_t) for classifier guidance (Song et al. 2021, App. I; Dhariwal & Nichol 2021).

The network sees every SDE the same way: x_t = alpha_t x_0 + sigma_t n is fed as x_t / sqrt(alpha_t^2 + sigma_t^2)
(unit scale: = x_ve / sqrt(1 + sigma~^2) with x_ve = x_t / alpha_t) together with log sigma~_t, sigma~_t =
sigma_t / alpha_t the VE-space noise level. Both are functions of (x_ve, sigma~) only, so the classifier's noise
input is right for VE, VP and sub-VP alike - score_sde_pytorch hands VP's marginal std sigma_t to a classifier
as if it were a VE sigma, which is wrong under VP (x_t is scaled by alpha_t there). A classifier trained under
one SDE is the same function of (x_ve, sigma~) under another (over the noise levels it was trained on).

Training (``training.loss: classifier``): cross-entropy of the labels on x_t ~ p_t(x | x_0), t ~ U(t_min, T),
through the project's trainer (checkpoints, EMA, resume as for score models).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._tensor import as_time, like
from .sde import SDE

__all__ = ["classifier_input", "classifier_logits", "cross_entropy_loss", "NoiseConditionalClassifier"]


def classifier_input(sde: SDE, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """(x_t / sqrt(alpha_t^2 + sigma_t^2), log(sigma_t / alpha_t)): what the classifier network is fed at time t."""
    alpha, sigma = sde.marginal(t)
    scale = torch.rsqrt(alpha**2 + sigma**2)
    return x * like(scale, x).to(x.dtype), torch.log(sigma / alpha).to(x.dtype)


def classifier_logits(net, sde: SDE, x: Tensor, t: Tensor) -> Tensor:
    """Logits of p_t(y | x_t) at per-sample times t."""
    xin, c = classifier_input(sde, x, as_time(t, x))
    return net(xin, c)


def cross_entropy_loss(model, x0: Tensor, u: Tensor, noise: Tensor, *, y: Tensor, t_min: float = 1e-5) -> Tensor:
    """Cross-entropy of labels y on x_t = alpha_t x_0 + sigma_t n, t = t_min + (T - t_min) u (the classifier loss).

    ``model`` is the trainer's network model (its ``net`` and ``sde`` are used).
    """
    sde = model.sde
    t = t_min + (sde.T - t_min) * u
    xt = sde.marginal_sample(x0, t, noise)
    return F.cross_entropy(classifier_logits(model.net, sde, xt, t).float(), y.to(xt.device).long())


class NoiseConditionalClassifier:
    """A trained classifier network as a :class:`~scoresde.guidance.Classifier`: grad_x log p_t(y | x_t) by autograd."""

    def __init__(self, net, sde: SDE):
        self.net, self.sde = net, sde

    def logits(self, x: Tensor, t: Tensor | float) -> Tensor:
        return classifier_logits(self.net, self.sde, x, as_time(t, x))

    def log_prob(self, x: Tensor, t: Tensor | float, y: Tensor | int) -> Tensor:
        """log p_t(y | x_t) per sample."""
        logp = torch.log_softmax(self.logits(x, t).double(), -1)
        y = torch.as_tensor(y, dtype=torch.long, device=x.device)
        return logp.gather(1, y.expand(x.shape[0]).reshape(-1, 1) if y.ndim == 0 else y.reshape(-1, 1)).squeeze(1)

    def grad_log_prob(self, x: Tensor, t: Tensor, y: Tensor | int) -> Tensor:
        """grad_x log p_t(y | x_t) (one forward and one backward pass of the network)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.log_prob(xg, t, y).sum(), xg)
        return g.detach()


def accuracy_by_level(clf: NoiseConditionalClassifier, x0: Tensor, y: Tensor, times: Tensor, seed: int = 0,
                      batch_size: int = 500) -> Tensor:
    """Accuracy of ``clf`` on x_t = alpha_t x0 + sigma_t n at each of ``times`` (seeded noise), shape (len(times),)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for t in times.tolist():
            hits = 0
            for lo in range(0, x0.shape[0], batch_size):
                xb = x0[lo:lo + batch_size]
                tt = torch.full((xb.shape[0],), float(t), dtype=torch.float64)
                xt = clf.sde.marginal_sample(xb, tt, torch.randn(xb.shape, generator=g).to(xb))
                hits += int((clf.logits(xt, tt).argmax(-1).cpu() == y[lo:lo + batch_size]).sum())
            out.append(hits / x0.shape[0])
    return torch.tensor(out)
