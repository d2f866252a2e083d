"""Denoising score-matching losses (Song et al. ICLR 2021 eq. 7; Song & Ermon 2019; Ho et al. 2020).

Each loss takes a :class:`~scoresde.parameterization.ScoreModel`, a batch of data x_0 and a torch
generator, and returns the scalar loss. The minimiser of each is the true score of the noised data.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ._tensor import like
from .parameterization import ScoreModel

__all__ = ["dsm_loss", "smld_loss", "ddpm_loss"]

Reduce = Literal["mean", "sum"]


def _reduce(per_elem: Tensor, reduce: Reduce) -> Tensor:
    flat = per_elem.reshape(per_elem.shape[0], -1)
    if reduce == "mean":
        return flat.mean(-1)
    if reduce == "sum":
        return flat.sum(-1)
    raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def dsm_loss(model: ScoreModel, x0: Tensor, generator: torch.Generator | None = None, *, eps_train: float = 1e-5,
             reduce: Reduce = "mean", likelihood_weighting: bool = False) -> Tensor:
    """Continuous denoising score matching, t ~ U(eps_train, T) (Song et al. eq. 7).

    Default weighting lambda(t) = sigma_t^2: E ||sigma_t s(x_t, t) + n||^2 = E ||eps_hat - n||^2.
    ``likelihood_weighting`` uses lambda(t) = g(t)^2 (Song et al. 2021b, the likelihood bound).
    """
    sde = model.sde
    b = x0.shape[0]
    u = torch.rand(b, generator=generator, dtype=torch.float64, device=x0.device)
    t = eps_train + (sde.T - eps_train) * u
    n = _randn_like(x0, generator)
    xt = sde.marginal_sample(x0, t, n)
    eps_hat = model.eps(xt, t)
    per = (eps_hat - n) ** 2
    if likelihood_weighting:
        per = per * like(sde.diffusion(t) ** 2 / sde.sigma(t) ** 2, x0)
    return _reduce(per, reduce).mean()


def smld_loss(model: ScoreModel, x0: Tensor, generator: torch.Generator | None = None, *,
              reduce: Reduce = "sum") -> Tensor:
    """SMLD / NCSN loss over the N discrete noise levels (Song & Ermon 2019 eq. 6), weight sigma_i^2.

    Level i is drawn uniformly; the model is queried at the matching VE time t_i = i / (N - 1).
    """
    sde = model.sde
    chain = sde.discrete()
    b = x0.shape[0]
    i = torch.randint(chain.N, (b,), generator=generator, device="cpu")
    t = chain.times()[i].to(x0.device)
    _, sigma = chain.marginal(i)
    n = _randn_like(x0, generator)
    xt = x0 + like(sigma.to(x0.device), x0) * n
    eps_hat = model.eps(xt, t)  # sigma_i * s + n = n - eps_hat
    return _reduce((eps_hat - n) ** 2, reduce).mean()


def ddpm_loss(model: ScoreModel, x0: Tensor, generator: torch.Generator | None = None, *,
              reduce: Reduce = "sum") -> Tensor:
    """DDPM's simple loss E ||eps_hat(x_i, i) - n||^2 over the N discrete steps (Ho et al. eq. 14).

    Step i is drawn uniformly; the model is queried at the matching VP time t_i = (i + 1) / N.
    """
    sde = model.sde
    chain = sde.discrete()
    b = x0.shape[0]
    i = torch.randint(chain.N, (b,), generator=generator, device="cpu")
    t = chain.times()[i].to(x0.device)
    alpha, sigma = chain.marginal(i)
    n = _randn_like(x0, generator)
    xt = like(alpha.to(x0.device), x0) * x0 + like(sigma.to(x0.device), x0) * n
    return _reduce((model.eps(xt, t) - n) ** 2, reduce).mean()
