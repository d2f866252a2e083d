"""Inpainting / imputation: sample the unknown coordinates of x given the known ones, with any grid sampler.

**Replacement** (Song et al. 2021, App. I.2): step the whole state down the grid with a sampler of the
registry; after every step t_i -> t_{i+1} the known coordinates are replaced by the data forward-noised to
t_{i+1}, alpha y + sigma n - the level the unknown part has just reached (score_sde_pytorch noises them to
t_i, one step behind, the bug diffusers fixed in RePaint). The known part starts noised to T too, and the
sampler's own last step (its final mean or Tweedie denoise) is kept for the unknown part; the output holds
the known values exactly.

Replacement is not the conditional score: at high noise the unknown part never sees the known one, so the
fill can disagree with it (measured in ``benchmarks/inpainting.py``). **RePaint** resampling (Lugmayr et
al. 2022) repairs much of that: the grid is walked in blocks of ``jump`` steps; each block is stepped down
``resample`` times, the state being re-noised back up to the block's start in between with the exact
forward kernel x_s = (alpha_s / alpha_t) x_t + sqrt(sigma_s^2 - (alpha_s / alpha_t)^2 sigma_t^2) z.
NFE: resample x the sampler's NFE for the grid.

**DPS** (diffusion posterior sampling, Chung et al. 2023, Alg. 1): no replacement; after every step
t_i -> t_{i+1} of the base sampler the state is moved along the likelihood gradient of the known part,

    x_{i+1} <- x_{i+1} - zeta_i grad_{x_i} ||y - A D(x_i, t_i)||^2,   zeta_i = zeta' / ||y - A D(x_i, t_i)||,

per sample, A the mask, D the denoiser (the paper's step-size rule; zeta' = 1 its inpainting setting). D(x_i)
and its gradient are one extra model call per step (the base sampler's own calls run without gradients), so
NFE = the sampler's NFE + steps.

**Exact** (Gaussian mixtures only): the sampler is driven by the conditional score itself,
grad log p_t(x_t | y) = grad log p_t(x_t) + grad log p_t(y | x_t), where p_t(y | x_t) = p(A x_0 = y | x_t) is
known in closed form for a mixture (:class:`MixtureObservation`) - the reference the other methods are
measured against, and a check that the guidance machinery is right.

**TDS** (the twisted diffusion sampler, Wu, Trippe, Naesseth, Blei & Cunningham 2023; :mod:`scoresde.twisted`):
asymptotically exact with any score model, for a noisy observation y = A x_0 + sigma_y n. The conditional of the
reverse chain is p(x_T) prod_i p(x_{t_{i+1}} | x_{t_i}) N(y; A x_0, sigma_y^2 I) / p(y); K particles per row walk
it by sequential Monte Carlo. With the twisting functions p~_t(y | x_t) = N(y; A D(x_t, t), (sigma_y^2 + r_t^2) I)
(r_t^2 = sigma~_t^2 / (1 + sigma~_t^2)), the proposal is the base Gaussian step N(m(x_s), v I) (SEEDS-1 = the
DDPM ancestral step) with its mean moved to m + v grad log p~_s(y | x_s), and the weights are

    w_T = p~_T(y | x_T),  w_i = p(x_t | x_s) p~_t(y | x_t) / (p~_s(y | x_s) q(x_t | x_s, y)),
    w_final = N(y; A x_0, sigma_y^2 I) / p~_{t_end}(y | x_{t_end}):

their product telescopes to the target over the proposal, whatever the twists, so the weighted particles are
exact as K -> infinity (the twists only decide how many particles that takes). Particles are resampled when
the effective sample size drops below K / 2; one particle per row is returned, drawn by the final weights, with
the known values written in. NFE: K (steps + 1), every call with its gradient.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._tensor import as_time, like
from .brownian import NoiseSource
from .exact import ExactScoreModel, GaussianMixture
from .parameterization import ScoreModel
from .samplers.base import SampleResult
from .samplers.common import make_grid
from .samplers.registry import grid_samplers, option_default, resolve
from .twisted import twisted_inpaint

__all__ = ["METHODS", "GRID_SAMPLERS", "inpaint", "dps_direction", "MixtureObservation"]

METHODS = ("replacement", "repaint", "dps", "exact", "tds")
#: method tds's defaults: particles per data row, observation noise sigma_y (data in [-1, 1])
TDS_PARTICLES, TDS_SIGMA_Y = 16, 0.05
#: samplers that take an explicit time grid (``SamplerSpec.steps_on_grid``; the adaptive ones choose their own)
GRID_SAMPLERS = grid_samplers()


def _forward(sde, x: Tensor, t_from: Tensor, t_to: Tensor, z: Tensor) -> Tensor:
    """A draw of x_{t_to} given x_{t_from} (t_to > t_from) from the forward transition kernel."""
    a_f, s_f = sde.marginal(t_from)
    a_t, s_t = sde.marginal(t_to)
    ratio = a_t / a_f
    std = torch.sqrt((s_t**2 - ratio**2 * s_f**2).clamp_min(0))
    return like(ratio, x) * x + like(std, x) * z


def _check_tds_base(base: str, options: dict) -> None:
    """TDS needs its transition's density: the DDPM ancestral step, SEEDS-1 in data form at eta = 1."""
    if base != "seeds1":
        raise ValueError(f"method tds proposes with the DDPM ancestral step (SEEDS-1): the sampler must be seeds1, "
                         f"got {base!r}")
    if options.get("eta", 1.0) != 1.0 or options.get("form", "data") != "data":
        raise ValueError("method tds needs seeds1's Gaussian step: eta 1 and form data")


def dps_direction(model: ScoreModel, x: Tensor, t: Tensor, known: Tensor, mask: Tensor) -> Tensor:
    """grad_x ||A (y - D(x, t))||^2 / ||A (y - D(x, t))|| per sample: DPS's step (Chung et al. 2023, Alg. 1)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        r = (mask * (known - model.denoised(xg, t))).reshape(x.shape[0], -1)
        norm = r.norm(dim=1)
        (g,) = torch.autograd.grad(norm.sum(), xg)  # grad ||r|| = grad ||r||^2 / (2 ||r||)
    return 2 * g.detach()


class MixtureObservation:
    """p_t(y | x_t) = p(A x_0 = y | x_t) of a Gaussian mixture in closed form: the exact guidance of inpainting.

    Given component k, x_0 | x_t is N(m_k, v_k I) with m_k = (sigma^2 mu_k + alpha s_k^2 x) / (sigma^2 + alpha^2
    s_k^2) and v_k = s_k^2 sigma^2 / (sigma^2 + alpha^2 s_k^2); so p_t(y | x_t) = sum_k r_k(x_t) N(y; A m_k, v_k I).
    Implements the :class:`~scoresde.guidance.Classifier` protocol (the label argument is ignored).
    """

    def __init__(self, problem: GaussianMixture, sde, known: Tensor, mask: Tensor):
        if not isinstance(problem, GaussianMixture) or bool((problem.stds == 0).any()):
            raise ValueError("the exact observation likelihood needs a Gaussian mixture with positive stds")
        self.problem, self.sde = problem, sde
        self.mask = torch.as_tensor(mask, dtype=torch.float64)
        self.known = torch.as_tensor(known, dtype=torch.float64)

    def log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        """log p_t(y | x_t) per sample."""
        p = self.problem
        b = x.shape[0]
        alpha, sigma = self.sde.marginal(as_time(t, x))
        xf = x.reshape(b, -1).double()
        a, s = alpha.reshape(-1, 1).double(), sigma.reshape(-1, 1).double()  # (B, 1)
        log_r = torch.log_softmax(p._log_joint(xf, a.reshape(-1), s.reshape(-1)), -1)  # (B, K)
        s2 = p.stds**2  # (K,)
        den = s**2 + a**2 * s2  # (B, K)
        v = s2 * s**2 / den
        m = (s[..., None] ** 2 * p.means + (a * s2)[..., None] * xf[:, None, :]) / den[..., None]  # (B, K, d)
        mask = self.mask.expand_as(x).reshape(b, 1, -1).to(xf)
        y = self.known.expand_as(x).reshape(b, 1, -1).to(xf)
        sq = (mask * (y - m) ** 2).sum(-1)  # (B, K)
        n_known = mask.sum(-1)  # (B, 1)
        return torch.logsumexp(log_r - 0.5 * sq / v - 0.5 * n_known * torch.log(2 * math.pi * v), -1)

    def grad_log_prob(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """grad_x log p_t(y | x_t) (autograd through the closed form)."""
        with torch.enable_grad():
            xg = x.detach().double().requires_grad_(True)
            (g,) = torch.autograd.grad(self.log_prob(xg, t).sum(), xg)
        return g.to(x.dtype)


def inpaint(model: ScoreModel, x: Tensor, noise: NoiseSource, *, known: Tensor, mask: Tensor,
            base: str = "seeds1", steps: int = 100, method: str = "replacement", jump: int = 1,
            resample: int = 1, zeta: float = 1.0, particles: int | None = None, sigma_y: float | None = None,
            **options: Any) -> SampleResult:
    """Sample the coordinates where ``mask`` is 0 given ``known`` where it is 1 (replacement, RePaint, DPS, TDS).

    ``x`` is x_T for the whole state (its known coordinates are overwritten), ``mask`` broadcasts against it
    (1 = known), ``base`` a grid sampler of the registry with its ``options``; ``steps`` grid steps;
    ``zeta`` DPS's step scale zeta'; ``particles`` (K, default 16) and ``sigma_y`` (default 0.05) TDS's
    particles per row and observation noise (:mod:`scoresde.twisted`, Wu et al. 2023).
    """
    if method not in METHODS:
        raise ValueError(f"unknown inpainting method {method!r}; expected one of {', '.join(METHODS)}")
    if base not in GRID_SAMPLERS:
        raise ValueError(f"inpainting needs a sampler that steps on a grid ({', '.join(GRID_SAMPLERS)}), "
                         f"got {base!r}")
    if int(steps) < 1 or int(jump) < 1 or int(resample) < 1:
        raise ValueError("steps, jump and resample must be >= 1")
    if method != "repaint" and (jump != 1 or resample != 1):
        raise ValueError("jump and resample apply to method repaint")
    if not float(zeta) >= 0 or not torch.isfinite(torch.tensor(float(zeta))):
        raise ValueError(f"zeta must be a finite number >= 0, got {zeta!r}")
    if method != "tds" and (particles is not None or sigma_y is not None):
        raise ValueError("particles and sigma_y apply to method tds")
    if method == "tds":
        _check_tds_base(base, options)
    sde = model.sde
    mask = torch.as_tensor(mask, dtype=torch.bool, device=x.device).expand_as(x)
    known = torch.as_tensor(known, dtype=x.dtype, device=x.device).expand_as(x)
    fn, kwargs = resolve(base, {**options, "denoise": False, **({"final_mean": False} if base == "pc" else {})})
    last_kwargs = resolve(base, options)[1]
    grid = make_grid(sde, int(steps), options.get("grid") or option_default(base, "grid") or "time")
    start = model.nfe

    def noised_known(t: Tensor) -> Tensor:
        alpha, sigma = sde.marginal(t)
        return like(alpha, x) * known + like(sigma, x) * noise.draw().to(x)

    def replace(state: Tensor, t: Tensor) -> Tensor:
        return torch.where(mask, noised_known(t), state)

    n = len(grid) - 1
    if method == "tds":
        return twisted_inpaint(model, x, noise, known=known, mask=mask, grid=grid,
                               particles=TDS_PARTICLES if particles is None else particles,
                               sigma_y=TDS_SIGMA_Y if sigma_y is None else sigma_y,
                               denoise=bool(options.get("denoise", False)))
    if method == "exact":
        if not isinstance(model, ExactScoreModel):
            raise ValueError("method exact needs an exact-score Gaussian mixture model")
        from .guidance import ClassifierGuidedModel

        guided = ClassifierGuidedModel(model, MixtureObservation(model.problem, sde, known, mask), 0, 1.0)
        kw = dict(last_kwargs)
        kw.update(grid=grid, steps=n)
        with torch.no_grad():
            x = fn(guided, x, noise, **kw).samples
        x = torch.where(mask, known, x)
        return SampleResult(x, guided.nfe, info={"method": method, "base": base})
    if method == "dps":
        maskf = mask.to(x.dtype)
        for i in range(n):
            kw = dict(last_kwargs if i == n - 1 else kwargs)
            kw.update(grid=grid[i:i + 2], steps=1)
            direction = dps_direction(model, x, grid[i], known, maskf)
            with torch.no_grad():
                x = fn(model, x, noise, **kw).samples - float(zeta) * direction
        x = torch.where(mask, known, x)
        return SampleResult(x, model.nfe - start, info={"method": method, "base": base, "zeta": float(zeta)})
    with torch.no_grad():
        x = replace(x, grid[0])
        for lo in range(0, n, int(jump)):
            hi = min(lo + int(jump), n)
            for rep in range(int(resample)):
                for i in range(lo, hi):
                    final = i == n - 1 and rep == int(resample) - 1
                    kw = dict(last_kwargs if final else kwargs)
                    kw.update(grid=grid[i:i + 2], steps=1)
                    x = fn(model, x, noise, **kw).samples
                    if not final:
                        x = replace(x, grid[i + 1])
                if rep < int(resample) - 1:  # back up to the block's start, with the forward kernel
                    x = _forward(sde, x, grid[hi], grid[lo], noise.draw().to(x))
        x = torch.where(mask, known, x)
    return SampleResult(x, model.nfe - start, info={"method": method, "base": base, "jump": jump,
                                                    "resample": resample})
