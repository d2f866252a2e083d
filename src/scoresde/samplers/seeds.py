"""SEEDS-1/2/3: stochastic exponential derivative-free solvers (Gonzalez et al. 2023), data and noise forms.

Derivation (written here from the maths, not from the released code). Let y = x / alpha (VE space,
sigma~ = sigma / alpha = e^{-lambda}) and D the denoiser. The marginal-preserving family of reverse
processes, probability-flow drift plus eta times a Langevin term, is in lambda (increasing):

    dy = (1 + eta) (D - y) dlambda + sqrt(2 eta) sigma~ dW_lambda,        eta in [0, 1]

(eta = 1 is the reverse SDE, eta = 0 the probability-flow ODE). Its variation-of-constants solution
from s to t (h = lambda_t - lambda_s, nu = 1 + eta, hh = nu h), multiplied back by alpha_t, is

    x_t = (sigma_t/sigma_s) e^{-eta h} x_s + alpha_t hh int_0^1 e^{-hh (1-u)} D(lambda_s + u h) du + sigma_t n_t,

    n_t = sqrt(2 eta) int e^{-eta (lambda_t - l)} dW_l   ~ N(0, 1 - e^{-2 eta h}).

The linear part and the noise are exact. D(lambda_s + u c h) = D_s + u (c h) D' + ... gives the weights
int_0^1 hh e^{-hh(1-u)} du = phi1(hh) = 1 - e^{-hh} and int_0^1 hh e^{-hh(1-u)} u du = phi2(hh) =
(hh - 1 + e^{-hh}) / hh. The point at lambda_s + c h is therefore, to second order,

    x_c = (sigma_c/sigma_s) e^{-eta c h} x_s + alpha_c phi1(nu c h) D_s + alpha_c phi2(nu c h) (c/r) (D_r - D_s) + sigma_c n_c

with (D_r - D_s) / r the estimate of h D' from a stage at lambda_s + r h. SEEDS-1 drops the last term;
SEEDS-2 (r = 1/2) evaluates D_1 at the order-1 point and uses it at c = 1 ("taylor" weight phi2(nu h) / r;
"phi1" weight phi1(nu h) / (2r) is the DPM-Solver++(2S) variant); SEEDS-3 (r1 = 1/3, r2 = 2/3) builds its
second stage with (c/r) = r2/r1 from D_1 and the final point with 1/r2 from D_2. At eta = 1 this gives
the stage-2 coefficient alpha_2 (e^{-2 r2 h} - 1 + 2 r2 h) / (2 r1 h) = alpha_2 [expm1(-2 r2 h)/(2 r2 h) + 1] r2/r1;
the released code's expm1(-2 c2 h)/(c2 h) + 1 tends to -1 (not 0) as h -> 0, which is not Taylor-consistent
(measured on 1-D Gaussian data, VP, 256 log-SNR steps: it makes SEEDS-3 first order, variance error 2.1e-3
against 6.3e-6 with the coefficient above; at eta = 0 8.3e-4 against 1.1e-8).
At eta = 0 these are exactly the ETD-ERK (DPM-Solver++) steps of :mod:`.exponential`.

Shared Brownian noise. The stage noises are the same stochastic integral stopped at the stage points, an
Ornstein-Uhlenbeck process of unit stationary variance in lambda, sampled exactly:
n_0 = 0, n_{k+1} = e^{-eta dc_k h} n_k + sqrt(1 - e^{-2 eta dc_k h}) xi_{k+1} (dc_k = c_{k+1} - c_k); the final
n_t continues the recursion, so a SEEDS-k step draws k standard normals per sample.

Noise form. With eps = (y - D) / sigma~ the same family reads dy = -nu e^{-lambda} eps dlambda + sqrt(2 eta)
e^{-lambda} dW (no linear part), so

    x_c = (alpha_c/alpha_s) x_s - nu sigma_c [(e^{ch} - 1) eps_s + psi(ch) (c/r) (eps_r - eps_s)] + alpha_c N_c,

psi(z) = (e^z - 1 - z)/z, N_{k+1} = N_k + sqrt(eta (sigma~_k^2 - sigma~_{k+1}^2)) xi_{k+1} (a Brownian motion
in -sigma~^2 / 2 scaled by eta). Order 1 at eta = 1: x_t = (alpha_t/alpha_s) x_s - 2 sigma_t (e^h - 1) eps_s
+ sigma_t sqrt(e^{2h} - 1) xi (Gonzalez et al. 2023, SEEDS-1 in noise form).

SEEDS-1 (data form, eta = 1) is algebraically the DDPM ancestral step (posterior of x_t given x_s and
x_0 = D_s). Orders: the deterministic part has order k; with noise the state is only Holder-1/2 in lambda,
so D(x_lambda) has no second derivative along the path and the stochastic weak order measured on
Gaussian data is 1 / 2 / 2 for SEEDS-1/2/3 (tests/test_seeds.py). A step ending at sigma = 0 is
x = alpha_t D(x_s) (one NFE, no noise); ``denoise=True`` adds one counted Tweedie step at t = t_end.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._tensor import like
from ..brownian import NoiseSource
from ..parameterization import ScoreModel
from .base import SampleResult
from .exponential import (
    Draw,
    check_common,
    check_steps,
    coefs,
    make_grid,
    noise_draw,
    phi1,
    phi2,
    psi,
    run_steps,
)

__all__ = ["seeds", "seeds_1", "seeds_2", "seeds_3", "seeds_step", "stage_points"]


def stage_points(order: int, r1: float | None = None, r2: float | None = None) -> list[float]:
    """Intermediate stage fractions c_k of a SEEDS-k step (the final point c = 1 excluded)."""
    if order == 1:
        return []
    if order == 2:
        return [0.5 if r1 is None else float(r1)]
    c = [1 / 3 if r1 is None else float(r1), 2 / 3 if r2 is None else float(r2)]
    if not 0 < c[0] < c[1] < 1:
        raise ValueError(f"SEEDS-3 needs 0 < r1 < r2 < 1, got {c}")
    return c


def seeds_step(model: ScoreModel, x: Tensor, t_s: Tensor, t_t: Tensor, draw: Draw | None, *, order: int = 1,
               eta: float = 1.0, s_noise: float = 1.0, prediction: str = "data", variant: str = "taylor",
               r1: float | None = None, r2: float | None = None) -> tuple[Tensor, Tensor]:
    """One SEEDS-k step s -> t with Brownian noise shared across stages (Gonzalez et al. 2023, Alg. 1-3).

    ``draw(sigma_from, sigma_to)`` returns the standard normal of each sub-interval (k per step when
    eta > 0). Returns (x_t, D(x_s)); costs ``order`` NFE (1 when sigma_t = 0).
    """
    sde = model.sde
    a_s, s_s, l_s = coefs(sde, t_s)
    a_t, s_t, l_t = coefs(sde, t_t)
    data = prediction == "data"
    F0 = model.denoised(x, t_s) if data else model.eps(x, t_s)
    D_s = F0 if data else (x - like(s_s, x) * F0) / like(a_s, x)
    if bool((s_t == 0).all()):
        return like(a_t, x) * D_s, D_s
    h = l_t - l_s
    nu = 1.0 + eta
    stages = stage_points(order, r1, r2)
    F = [F0]
    n = torch.zeros_like(x)  # unit-scale OU noise (data form) / y-space Brownian integral (noise form)
    c_prev, sig_prev = 0.0, s_s / a_s
    for k, c in enumerate(stages + [1.0]):
        final = k == len(stages)
        if final:
            t_c, a_c, s_c = t_t, a_t, s_t
        else:
            t_c = sde.t_from_log_snr(l_s + c * h)
            a_c, s_c, _ = coefs(sde, t_c)
        sig_c = s_c / a_c
        dh = (c - c_prev) * h
        if eta > 0:
            xi = draw(sig_prev[0], sig_c[0]).to(x)
            if data:
                n = like(torch.exp(-eta * dh), x) * n + like(torch.sqrt(phi1(2 * eta * dh)), x) * xi
            else:
                n = n + like(sig_c * torch.sqrt(eta * torch.expm1(2 * dh)), x) * xi
        if data:
            u = like(s_c / s_s * torch.exp(-eta * c * h), x) * x + like(a_c * phi1(nu * c * h), x) * D_s
            if k >= 1:
                if final and order == 2 and variant == "phi1":
                    w = phi1(nu * h) / (2 * stages[0])
                else:
                    w = phi2(nu * c * h) * (c / stages[k - 1])
                u = u + like(a_c * w, x) * (F[k] - D_s)
            if eta > 0:
                u = u + like(s_noise * s_c, x) * n
        else:
            u = like(a_c / a_s, x) * x - like(nu * s_c * torch.expm1(c * h), x) * F0
            if k >= 1:
                if final and order == 2 and variant == "phi1":
                    w = torch.expm1(h) / (2 * stages[0])
                else:
                    w = psi(c * h) * (c / stages[k - 1])
                u = u - like(nu * s_c * w, x) * (F[k] - F0)
            if eta > 0:
                u = u + like(s_noise * a_c, x) * n
        if final:
            return u, D_s
        F.append(model.denoised(u, t_c) if data else model.eps(u, t_c))
        c_prev, sig_prev = c, sig_c
    raise AssertionError("unreachable")


def seeds(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, order: int = 1, steps: int = 50,
          grid: str | Tensor = "logsnr", eta: float = 1.0, s_noise: float = 1.0, prediction: str = "data",
          variant: str = "taylor", r1: float | None = None, r2: float | None = None, t_end: float | None = None,
          denoise: bool = False, progress: bool = False, callback: Callable[[dict], None] | None = None,
          draw: Draw | None = None) -> SampleResult:
    """SEEDS-k sampler (Gonzalez et al. 2023): ``steps`` steps of :func:`seeds_step` over a log-SNR (or other) grid.

    NFE = order * steps (+1 with ``denoise``). eta = 0 is deterministic ETD-ERK-k (no noise drawn);
    eta > 0 draws ``order`` standard normals per sample and step from ``noise`` (or ``draw``).
    """
    check_common(order, prediction, variant)
    check_steps(steps)
    if not 0 <= eta <= 1:
        raise ValueError(f"SEEDS eta must lie in [0, 1], got {eta}")
    g = make_grid(model.sde, steps, grid, t_end)
    draw = draw or noise_draw(noise, eta > 0)

    def step(x, i, t_s, t_t):
        return seeds_step(model, x, t_s, t_t, draw, order=order, eta=eta, s_noise=s_noise, prediction=prediction,
                          variant=variant, r1=r1, r2=r2)

    return run_steps(model, x, g, step, denoise=denoise, progress=progress, desc=f"seeds{order}",
                     callback=callback, info={"order": order, "eta": eta, "prediction": prediction})


def seeds_1(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, **kw) -> SampleResult:
    """SEEDS-1 (Gonzalez et al. 2023): 1 NFE a step; the DDPM ancestral step in data form at eta = 1."""
    return seeds(model, x, noise, order=1, **kw)


def seeds_2(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, **kw) -> SampleResult:
    """SEEDS-2 (Gonzalez et al. 2023): 2 NFE a step, stage at r = 1/2, noise shared across the stages."""
    return seeds(model, x, noise, order=2, **kw)


def seeds_3(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, **kw) -> SampleResult:
    """SEEDS-3 (Gonzalez et al. 2023): 3 NFE a step, stages at 1/3 and 2/3, noise shared across the stages."""
    return seeds(model, x, noise, order=3, **kw)
