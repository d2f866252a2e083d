"""The twisted diffusion sampler (TDS; Wu, Trippe, Naesseth, Blei & Cunningham 2023): inpainting by sequential
Monte Carlo over the reverse chain, asymptotically exact (particles -> infinity) with only a score model.

**Target.** Observation y = A x_0 + sigma_y n (A: the mask's known coordinates, n ~ N(0, I)). On the time grid
t_0 = T > t_1 > ... > t_n = t_end the model defines the reverse chain p(x_T) prod_i p(x_{t_{i+1}} | x_{t_i}); TDS
samples the chain conditioned on y,

    pi(x_{t_0:t_n} | y)  proportional to  p(x_T) prod_i p(x_{t_{i+1}} | x_{t_i}) N(y; A x^_0, sigma_y^2 I),

where x^_0 is the chain's last state x_{t_end}, or its Tweedie denoise D(x_{t_end}, t_end) with ``denoise``
(then x^_0 is also what is returned).

**Reverse transition** (the base step; stated because TDS needs its density): the DDPM ancestral step, which is
SEEDS-1 in data form at eta = 1 (``scoresde.samplers.seeds``, order 1) - the forward process' posterior
q(x_t | x_s, x_0) with x_0 replaced by D(x_s, s): for s -> t, h = lambda_t - lambda_s (lambda = log alpha / sigma),

    p(x_t | x_s) = N(x_t; m(x_s), v I),  m(x_s) = (sigma_t / sigma_s) e^{-h} x_s + alpha_t (1 - e^{-2h}) D(x_s, s),
                                           v = sigma_t^2 (1 - e^{-2h}).

**Twisting functions** (the paper's eq. 8 for a Gaussian likelihood): p~_t(y | x_t) = N(y; A D(x_t, t),
(sigma_y^2 + r_t^2) I), an approximation of the intractable p_t(y | x_t) = E[p(y | x_0) | x_t] that puts the
denoiser's own uncertainty r_t^2 = Var[x_0 | x_t] on top of the observation noise; we take
r_t^2 = sigma~_t^2 / (1 + sigma~_t^2) (sigma~ = sigma / alpha, the VE-space noise level), the posterior variance
of unit-variance Gaussian data (the choice of PiGDM, Song et al. 2023; the TDS paper's twisting for a Gaussian
likelihood is r_t = 0). Any choice keeps TDS exact as K -> infinity; a good one keeps the weights even.

**Proposal** (the paper's eq. 9): the base transition with its mean moved along the twist's gradient,
q(x_t | x_s, y) = N(x_t; m(x_s) + v grad_{x_s} log p~_s(y | x_s), v I) - exactly the product of p(x_t | x_s) with
the twist's first-order expansion around x_s. **Weights** (eq. 10), in log space and float64:

    w_T = p~_T(y | x_T);   w_t = p(x_t | x_s) p~_t(y | x_t) / (p~_s(y | x_s) q(x_t | x_s, y)),
    log p(x_t | x_s) - log q(x_t | x_s, y) = -v |g|^2 / 2 - sqrt(v) g . xi   (x_t = m + v g + sqrt(v) xi),

and at the end w = N(y; A x^_0, sigma_y^2 I) / p~_{t_end}(y | x_{t_end}), the exact observation likelihood, so the
product of all weights times the proposals is the target above whatever the twists are. Each row's K particles
are resampled (systematic resampling) before a step whenever their effective sample size (sum w)^2 / sum w^2
drops below K / 2; the output is one particle per row, drawn by the final weights.

**Cost.** D(x_t, t) and its gradient at every particle, once per grid time: (steps + 1) batched calls on B K
particles; the NFE reported counts every particle, K (steps + 1) per row (D(x_{t_end}) is the last of them, so
``denoise`` costs nothing more).

**Randomness.** Row i's particle group draws only from row i's seeded streams: the particles' noise (initial
prior draws included) from stream :data:`~scoresde.seeding.TDS_PARTICLES`, one uniform per step and one for the
final pick from :data:`~scoresde.seeding.TDS_RESAMPLING` (drawn whether or not the row resamples) - the same row
whatever the batch. The given x_T only fixes the shape: the K particles start from their own prior draws.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .brownian import SampleStreams
from .parameterization import ScoreModel
from .samplers.base import SampleResult
from .seeding import TDS_PARTICLES, TDS_RESAMPLING

__all__ = ["twisted_inpaint", "twist_variance", "effective_sample_size", "systematic_resample", "STREAM_BLOCK"]

#: draws per refill of the TDS side streams (part of their definition, like brownian's block sizes)
STREAM_BLOCK = 8


def twist_variance(sde, t: Tensor | float) -> Tensor:
    """r_t^2 = sigma~_t^2 / (1 + sigma~_t^2): Var[x_0 | x_t] of unit-variance data (PiGDM, Song et al. 2023)."""
    s2 = sde.sigma_tilde(torch.as_tensor(t, dtype=torch.float64)) ** 2
    return s2 / (1 + s2)


def effective_sample_size(log_w: Tensor) -> Tensor:
    """(sum w)^2 / sum w^2 per row of log-weights (B, K) (Kong 1992; float64)."""
    lw = log_w.double()
    return torch.exp(2 * torch.logsumexp(lw, 1) - torch.logsumexp(2 * lw, 1))


def systematic_resample(log_w: Tensor, u: Tensor) -> Tensor:
    """Systematic resampling (Carpenter et al. 1999): per row, the indices at the points (u + j) / K of the CDF.

    ``log_w`` (B, K), ``u`` (B,) uniforms in [0, 1); returns (B, K) indices, each particle copied floor or ceil of
    K w_k times.
    """
    k = log_w.shape[1]
    cdf = torch.cumsum(torch.softmax(log_w.double(), 1), 1)
    pos = (u.double().reshape(-1, 1) + torch.arange(k, dtype=torch.float64, device=log_w.device)) / k
    return torch.searchsorted(cdf, pos, right=True).clamp_max(k - 1)


def _pick(log_w: Tensor, u: Tensor) -> Tensor:
    """One index per row drawn with probabilities proportional to exp(log_w), by the inverse CDF at u."""
    cdf = torch.cumsum(torch.softmax(log_w.double(), 1), 1)
    return torch.searchsorted(cdf, u.double().reshape(-1, 1), right=True).clamp_max(log_w.shape[1] - 1).reshape(-1)


def _log_mean_exp(log_w: Tensor) -> Tensor:
    return torch.logsumexp(log_w.double(), 1) - math.log(log_w.shape[1])


def _uniform(z: Tensor) -> Tensor:
    """Phi(z): a standard normal draw as a uniform on (0, 1)."""
    return 0.5 * torch.erfc(-z.double() / math.sqrt(2))


def _log_normal(resid: Tensor, mask: Tensor, var: float) -> Tensor:
    """log N(A y; A mean, var I) per row from resid = y - mean (float64), over the known coordinates only."""
    n = resid.shape[0]
    sq = (mask * resid).reshape(n, -1).double().pow(2).sum(1)
    count = mask.reshape(n, -1).double().sum(1)
    return -0.5 * sq / var - 0.5 * count * math.log(2 * math.pi * var)


def _twist(model: ScoreModel, x: Tensor, t: Tensor, known: Tensor, mask: Tensor, var: float):
    """(D(x, t), log p~_t(y | x), grad_x log p~_t(y | x)) with p~_t = N(y; A D(x, t), var I): one model call."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        d = model.denoised(xg, t)
        ll = _log_normal(known - d, mask, var)
        (g,) = torch.autograd.grad(ll.sum(), xg)
    return d.detach(), ll.detach(), g.detach()


def twisted_inpaint(model: ScoreModel, x: Tensor, noise, *, known: Tensor, mask: Tensor, grid: Tensor,
                    particles: int = 16, sigma_y: float = 0.05, denoise: bool = False) -> SampleResult:
    """TDS inpainting (Wu et al. 2023, Alg. 1, eqs. 8-10; the derivation is this module's docstring).

    ``x`` (B, *shape) fixes the shape, ``noise`` is the batch's :class:`~scoresde.brownian.NoiseSource` (its seed
    and sample indices seed the particle streams), ``mask`` (1 = known) and ``known`` broadcast against x,
    ``grid`` the float64 times T -> t_end, ``particles`` K per row, ``sigma_y`` the observation noise. The output's
    known coordinates are exactly ``known``; ``info`` holds the mean ESS before each step (``ess_mean``), at the
    end (``ess_final``), the mean number of resamplings per row (``resamples``) and, per row, the log of the SMC
    estimate of p(y) under the chain (``log_evidence``: the running mean weights' product, unbiased in p(y)).
    """
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
        raise ValueError(f"particles must be an integer >= 1, got {particles!r}")
    sigma_y = float(sigma_y)
    if not (math.isfinite(sigma_y) and sigma_y > 0):
        raise ValueError(f"sigma_y must be a finite number > 0, got {sigma_y!r}")
    if not (hasattr(noise, "seed") and hasattr(noise, "indices")):
        raise ValueError("method tds needs a NoiseSource (its per-sample seeds seed the particles' streams)")
    sde, k, b = model.sde, int(particles), x.shape[0]
    shape = tuple(x.shape[1:])
    flat = (b * k,) + shape

    def per_particle(v: Tensor) -> Tensor:
        return v.expand_as(x).unsqueeze(1).expand((b, k) + shape).reshape(flat)

    maskf = per_particle(torch.as_tensor(mask, device=x.device).to(x.dtype))
    y = per_particle(torch.as_tensor(known, device=x.device).to(x.dtype))
    streams = SampleStreams(noise.seed, (k,) + shape, noise.indices, stream=TDS_PARTICLES, dtype=x.dtype,
                            device=x.device, block=STREAM_BLOCK)
    uniforms = SampleStreams(noise.seed, (), noise.indices, stream=TDS_RESAMPLING, dtype=torch.float64,
                             block=STREAM_BLOCK)
    grid = grid.to(torch.float64)
    alpha, sigma = sde.marginal(grid)
    alpha, sigma = alpha.double().cpu(), sigma.double().cpu()
    lam = torch.log(alpha / sigma)
    var = sigma_y**2 + twist_variance(sde, grid).cpu()
    start = model.nfe
    rows = torch.arange(b, device=x.device).reshape(-1, 1) * k

    xp = sde.prior_sample(streams.draw().reshape(flat))
    d, ll, g = _twist(model, xp, grid[0], y, maskf, float(var[0]))
    log_w = ll.reshape(b, k).clone()
    ess_sum = torch.zeros(b, dtype=torch.float64)
    log_z = torch.zeros(b, dtype=torch.float64, device=x.device)
    resamples = torch.zeros(b, dtype=torch.long)
    n = len(grid) - 1
    for i in range(n):
        ess = effective_sample_size(log_w).cpu()
        ess_sum += ess
        u = _uniform(uniforms.draw()).to(x.device)
        low = (ess < k / 2).to(x.device)
        if bool(low.any()):
            idx = torch.where(low[:, None], systematic_resample(log_w, u), torch.arange(k, device=x.device))
            sel = (idx + rows).reshape(-1)
            xp, d, g, ll = xp[sel], d[sel], g[sel], ll[sel]
            log_z = log_z + torch.where(low, _log_mean_exp(log_w), torch.zeros_like(log_z))
            log_w = torch.where(low[:, None], torch.zeros_like(log_w), log_w)
            resamples += low.cpu().long()
        h = float(lam[i + 1] - lam[i])
        em = -math.expm1(-2 * h)  # 1 - e^{-2h}
        cx = float(sigma[i + 1] / sigma[i]) * math.exp(-h)
        cd, v = float(alpha[i + 1]) * em, float(sigma[i + 1]) ** 2 * em
        xi = streams.draw().reshape(flat)
        xp = cx * xp + cd * d + v * g + math.sqrt(v) * xi
        gd = g.reshape(b * k, -1).double()
        log_pq = -0.5 * v * gd.pow(2).sum(1) - math.sqrt(v) * (gd * xi.reshape(b * k, -1).double()).sum(1)
        d, ll_new, g = _twist(model, xp, grid[i + 1], y, maskf, float(var[i + 1]))
        log_w = log_w + (log_pq + ll_new - ll).reshape(b, k)
        ll = ll_new
    x0 = d if denoise else xp
    log_w = log_w + (_log_normal(y - x0, maskf, sigma_y**2) - ll).reshape(b, k)
    ess_final = effective_sample_size(log_w).cpu()
    log_z = log_z + _log_mean_exp(log_w)
    pick = _pick(log_w, _uniform(uniforms.draw()).to(x.device))
    out = x0.reshape((b, k) + shape)[torch.arange(b, device=x.device), pick]
    given = torch.as_tensor(known, device=x.device).to(x.dtype).expand_as(x)
    out = torch.where(torch.as_tensor(mask, device=x.device).bool().expand_as(x), given, out)
    calls = model.nfe - start
    info = {"method": "tds", "base": "seeds1", "particles": k, "sigma_y": sigma_y, "calls": calls,
            "ess_mean": float(ess_sum.mean() / max(n, 1)), "ess_final": float(ess_final.mean()),
            "resamples": float(resamples.double().mean()), "twist": "pigdm", "log_evidence": log_z.cpu()}
    return SampleResult(out, k * calls, info=info)
