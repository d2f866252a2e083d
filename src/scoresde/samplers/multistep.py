"""Multistep stochastic exponential solvers ms2 / ms3: one NFE a step, exact linear part, exact noise.

Stochastic Adams-Bashforth in log-SNR on the data-form family of :mod:`.exponential` (the idea of SA-Solver,
Xue et al. 2023, predictor only; eta = 0 is DPM-Solver++(2M) / (3M), Lu et al. 2022b Alg. 2 and its third-order
multistep extension; eta = 1 gives a 2M-SDE / 3M-SDE). Written from the maths below, not from released code.

Derivation. With y = x / alpha, sigma~ = sigma / alpha = e^{-lambda}, lambda = log(alpha / sigma), the
marginal-preserving reverse processes are (module docstring of :mod:`.exponential`)

    dy = nu (D - y) dlambda + sqrt(2 eta) sigma~ dW_lambda,      nu = 1 + eta,  eta in [0, 1].

Variation of constants over a step s -> t (h = lambda_t - lambda_s > 0, hh = nu h, u = (lambda - lambda_s) / h),
multiplied back by alpha_t, is exact:

    x_t = (sigma_t / sigma_s) e^{-eta h} x_s + alpha_t int_0^1 hh e^{-hh (1 - u)} D(lambda_s + u h) du
          + sigma_t sqrt(1 - e^{-2 eta h}) xi,                                     xi ~ N(0, I).

A singlestep method evaluates D inside the step (SEEDS). A multistep method keeps the D values it already paid
for at the starts of the previous steps, D_0 = D(x_s) at u_0 = 0 and D_j at u_j = (lambda_{s_j} - lambda_s) / h < 0
(u_1 = -r_1, u_2 = -(r_1 + r_2), r_j = h_{i-j} / h, any step ratios), and replaces D on [0, 1] by their Lagrange
interpolant P(u) = sum_j D_j l_j(u), extrapolated forward (Adams-Bashforth). The integral of the exponential
against P is then exact:

    x_t = (sigma_t / sigma_s) e^{-eta h} x_s + alpha_t sum_j b_j D_j + sigma_t sqrt(1 - e^{-2 eta h}) xi,
    b_j = int_0^1 hh e^{-hh (1 - u)} l_j(u) du = sum_k [u^k] l_j  I_k(hh),
    I_k(z) = int_0^1 z e^{-z (1 - u)} u^k du:  I_0 = 1 - e^{-z} = phi1,  I_1 = (z - 1 + e^{-z}) / z = phi2,
             I_k = 1 - (k / z) I_{k-1} (integration by parts) = z k! sum_m (-z)^m / (k + m + 1)! (series near 0).

The weights sum to I_0 (the l_j sum to 1), so a constant D is integrated exactly and so is the linear part; the
noise is the exact OU transition of the step, one standard normal per sample and step, drawn from the sample's
own stream (one Brownian path per sample: the steps' intervals are disjoint). Two nodes:
b_0 = I_0 + I_1 / r_1, b_1 = -I_1 / r_1, i.e. alpha_t [phi1(hh) D_0 + phi2(hh) (D_0 - D_1) / r_1]
("taylor"); the "phi1" variant weighs (D_0 - D_1) / r_1 with phi1(hh) / 2 (equal to leading order), which at
eta = 0 is exactly DPM-Solver++(2M), Lu et al. 2022b Alg. 2 (and k-diffusion's 2M SDE "midpoint"; "taylor" is its
"heun"). Three nodes: the quadratic through D_0, D_1, D_2 with I_0, I_1, I_2 (Newton form: d1 = (D_0 - D_1) / r_1,
d2 = (d1 - (D_1 - D_2) / r_2) / (r_1 + r_2), b-part = I_0 D_0 + I_1 (d1 + r_1 d2) + I_2 d2). Note I_2 = 1 - 2 phi2 / z:
the u^2 coefficient d2 ~ h^2 D'' / 2 needs weight I_2 ~ z / 3; half that weight (1/2 - phi2 / z ~ z / 6) leaves an
O(h^3) local error and a second-order method.

Start-up: step 1 has only D_0 (order 1: DDIM at eta = 0, the DDPM ancestral step at eta = 1), step 2 of ms3 the two
nodes of ms2. Their local errors, O(h^2 D') and O(h^3 D''), are paid once; formally ms3's first step is a global
O(h^2) term, but at the top of the grid D hardly moves (D ~ E[x_0] while sigma >> the data scale), so the measured
order is 3. A step ending at sigma_t = 0 is the limit x_t = alpha_t D(x_s). ``denoise=True`` adds one counted
Tweedie step x <- D(x, t_end).

Orders. Deterministic (eta = 0): 2 and 3 (the interpolation error of D is O(h^k) over the step; measured 2.01-2.05
and 3.02-3.11 on Gaussian data on non-uniform grids). Weak (eta > 0): the history's D values sit on the noisy path,
only Holder-1/2 in lambda, so the extrapolation treats the previous steps' Brownian increments as trend: the term
(I_1 / r_1) J n_prev (J = dD/dy, n_prev the last step's noise) is O(h^{3/2}) per step with zero mean and O(h^2)
covariance with the state, harmless at weak order 2, but it blocks any higher order and, at large steps where
J ~ I (sigma below the data scale), it feeds each step's noise into the next like an AR(1) with coefficient I_1 / r_1
(~ 0.57 at h = 1, eta = 1), inflating the spread at very low NFE; the phi1 weight (I_0 / 2, smaller) inflates less.
Measured weak order of the variance (tests/test_multistep.py, exact propagation): 1.98-1.99 (ms2; 2.03-2.04 with the
"taylor" weight), 2.06-2.13 (ms3).
Note: a 3M with half the I_2 weight (1/2 - phi2 / z on d2, as k-diffusion's ``sample_dpmpp_3m_sde`` has it) is
second order only: measured 2.09 (log-SNR) / 1.70 (EDM grid) at eta = 0 where ms3
measures 3.98 / 3.04 (VE, Gaussian data).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .._tensor import like
from ..brownian import NoiseSource
from ..parameterization import ScoreModel
from ..sde import SDE
from .base import SampleResult
from .common import Draw, check_steps, coefs, declare_orders, make_grid, noise_draw, phi1, run_steps

__all__ = ["MULTISTEP_VARIANTS", "History", "adams_weights", "check_multistep_options", "exp_moment", "ms2", "ms3",
           "multistep_sample", "multistep_update"]

#: the weight of the first difference in ms2: "phi1" (phi1 / 2, ms2's default) or "taylor" (phi2, the Lagrange integral)
MULTISTEP_VARIANTS = ("taylor", "phi1")

_SERIES_BELOW = 0.5
_SERIES_TERMS = 14


def exp_moment(z: Tensor, k: int) -> Tensor:
    """I_k(z) = int_0^1 z e^{-z (1 - u)} u^k du (I_0 = phi1, I_1 = phi2), the exponential-integrator weights of
    Hochbruck & Ostermann (2010) in data form; series below |z| = 0.5, the recursion I_k = 1 - k I_{k-1} / z above."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    small = z.abs() < _SERIES_BELOW
    zs = torch.where(small, z, torch.zeros_like(z))
    series = torch.zeros_like(z)
    for m in reversed(range(_SERIES_TERMS)):  # Horner: z k! sum_m (-z)^m / (k + m + 1)!
        series = series * (-zs) + 1.0 / math.factorial(k + m + 1)
    series = zs * math.factorial(k) * series
    zl = torch.where(small, torch.ones_like(z), z)
    rec = phi1(zl)
    for j in range(1, k + 1):
        rec = 1 - j / zl * rec
    return torch.where(small, series, rec)


def adams_weights(nodes: list[Tensor], hh: Tensor, variant: str = "taylor") -> list[Tensor]:
    """Weights b_j = int_0^1 hh e^{-hh(1-u)} l_j(u) du of the Lagrange basis on ``nodes`` (u_0 = 0 > u_1 > u_2,
    per-sample tensors): the stochastic Adams-Bashforth weights (SA-Solver, Xue et al. 2023) of the module docstring."""
    I0 = exp_moment(hh, 0)
    if len(nodes) == 1:
        return [I0]
    if len(nodes) == 2:
        r1 = -nodes[1]
        w = phi1(hh) / 2 if variant == "phi1" else exp_moment(hh, 1)
        return [I0 + w / r1, -w / r1]
    if len(nodes) != 3:
        raise ValueError(f"ms solvers interpolate through 1-3 nodes, got {len(nodes)}")
    I1, I2 = exp_moment(hh, 1), exp_moment(hh, 2)
    _, u1, u2 = nodes
    # l_0 = (u - u1)(u - u2) / (u1 u2); l_1 = u (u - u2) / (u1 (u1 - u2)); l_2 = u (u - u1) / (u2 (u2 - u1))
    b0 = (I2 - (u1 + u2) * I1 + u1 * u2 * I0) / (u1 * u2)
    b1 = (I2 - u2 * I1) / (u1 * (u1 - u2))
    b2 = (I2 - u1 * I1) / (u2 * (u2 - u1))
    return [b0, b1, b2]


def check_multistep_options(order: int, eta: float, variant: str | None, s_noise: float) -> str:
    """Validate the ms2 / ms3 options (module docstring); returns the variant in force ("phi1" for order 2 and
    "taylor" for order 3 when None)."""
    if order not in (2, 3):
        raise ValueError(f"order must be 2 or 3, got {order}")
    if variant is None:
        variant = "phi1" if order == 2 else "taylor"
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if variant not in MULTISTEP_VARIANTS:
        raise ValueError(f"variant must be 'taylor' or 'phi1', got {variant!r}")
    if variant == "phi1" and order != 2:
        raise ValueError("variant 'phi1' (DPM-Solver++(2M)'s weight) exists for order 2 only")
    if not (math.isfinite(s_noise) and s_noise >= 0):
        raise ValueError(f"s_noise must be a finite number >= 0, got {s_noise}")
    return variant


#: the multistep history: (lambda_j, D_j) at the starts of the previous steps, newest first
History = list[tuple[Tensor, Tensor]]


def multistep_update(sde: SDE, x: Tensor, D_s: Tensor, t_s: Tensor, t_t: Tensor, history: History, *, order: int,
                     eta: float = 1.0, variant: str = "taylor", s_noise: float = 1.0,
                     draw: Draw | None = None) -> tuple[Tensor, History]:
    """One step s -> t of the stochastic exponential Adams method (module docstring; SA-Solver predictor, Xue et al.
    2023): x_t from x_s, the denoiser D_s = D(x_s, t_s) already evaluated and the ``history`` of earlier steps.

    Returns (x_t, the history for the next step). Draws one ``draw(sigma~_s, sigma~_t)`` when eta > 0 and sigma_t > 0.
    :func:`multistep_sample` calls it with ``model.denoised``; the diffusers scheduler
    (:mod:`scoresde.interop.schedulers`) with the pipeline's model output: the same code.
    """
    if eta > 0 and draw is None:
        raise ValueError("a stochastic step (eta > 0) needs a draw")
    a_s, s_s, l_s = coefs(sde, t_s)
    a_t, s_t, l_t = coefs(sde, t_t)
    if bool((s_t == 0).all()):
        return like(a_t, x) * D_s, history
    h = l_t - l_s
    past = history[: order - 1]
    nodes = [torch.zeros_like(h)] + [(l_j - l_s) / h for l_j, _ in past]
    b = adams_weights(nodes, (1 + eta) * h, variant)
    out = like(s_t / s_s * torch.exp(-eta * h), x) * x
    for b_j, D_j in zip(b, [D_s] + [d for _, d in past]):
        out = out + like(a_t * b_j, x) * D_j
    if eta > 0:
        assert draw is not None
        xi = draw(s_s[0] / a_s[0], s_t[0] / a_t[0]).to(x)
        out = out + like(s_noise * s_t * torch.sqrt(phi1(2 * eta * h)), x) * xi
    return out, ([(l_s, D_s)] + history)[: order - 1]


@torch.no_grad()
def multistep_sample(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, order: int = 2,
                     steps: int = 20, grid: str | Tensor = "logsnr", eta: float = 1.0, s_noise: float = 1.0,
                     variant: str | None = None, t_end: float | None = None, denoise: bool = False,
                     progress: bool = False, callback: Callable[[dict], None] | None = None,
                     draw: Draw | None = None) -> SampleResult:
    """Stochastic exponential Adams-Bashforth of order 2 or 3 (SA-Solver predictor, Xue et al. 2023; DPM-Solver++(2M)
    / (3M) at eta = 0, Lu et al. 2022b): 1 NFE a step (+1 with ``denoise``), one normal per sample and step at eta > 0.

    ``variant`` sets ms2's first-difference weight ("phi1", the default for order 2: phi1 / 2 = DPM-Solver++(2M) at
    eta = 0; "taylor": phi2, the Lagrange integral); ms3 uses the Lagrange ("taylor") weights throughout.
    """
    variant = check_multistep_options(order, eta, variant, s_noise)
    check_steps(steps)
    sde = model.sde
    g = make_grid(sde, steps, grid, t_end)
    draw = draw or noise_draw(noise, eta > 0)
    history: list[tuple[Tensor, Tensor]] = []  # (lambda_j, D_j) of the previous steps' starts, newest first

    def step(x, i, t_s, t_t):
        nonlocal history
        D_s = model.denoised(x, t_s)
        out, history = multistep_update(sde, x, D_s, t_s, t_t, history, order=order, eta=eta, variant=variant,
                                        s_noise=s_noise, draw=draw)
        return out, D_s

    return run_steps(model, x, g, step, denoise=denoise, progress=progress, desc=f"ms{order}", callback=callback,
                     info={"order": order, "eta": eta, "variant": variant})


@declare_orders(2, weak=2)
def ms2(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, steps: int = 20,
        grid: str | Tensor = "logsnr", eta: float = 1.0, s_noise: float = 1.0, variant: str = "phi1",
        t_end: float | None = None, denoise: bool = False, progress: bool = False,
        callback: Callable[[dict], None] | None = None, draw: Draw | None = None) -> SampleResult:
    """ms2: two-step stochastic exponential Adams (SA-Solver-style predictor, Xue et al. 2023); DPM-Solver++(2M) at
    eta = 0 (Lu et al. 2022b Alg. 2); 1 NFE a step.

    ``variant``: "phi1" (default; phi1 / 2 on the first difference, measured the better one: the arena's gmm8 / gmm64
    targets at 14 / 8 NFE against 28 / 28 for "taylor", and half the variance error on Gaussian data) or "taylor"."""
    return multistep_sample(model, x, noise, order=2, steps=steps, grid=grid, eta=eta, s_noise=s_noise,
                            variant=variant, t_end=t_end, denoise=denoise, progress=progress, callback=callback,
                            draw=draw)


@declare_orders(3, weak=2)
def ms3(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, steps: int = 20,
        grid: str | Tensor = "logsnr", eta: float = 1.0, s_noise: float = 1.0, t_end: float | None = None,
        denoise: bool = False, progress: bool = False, callback: Callable[[dict], None] | None = None,
        draw: Draw | None = None) -> SampleResult:
    """ms3: three-step stochastic exponential Adams (SA-Solver-style predictor, Xue et al. 2023); DPM-Solver++(3M)
    at eta = 0 (Lu et al. 2022b, multistep order 3); 1 NFE a step."""
    return multistep_sample(model, x, noise, order=3, steps=steps, grid=grid, eta=eta, s_noise=s_noise,
                            t_end=t_end, denoise=denoise, progress=progress, callback=callback, draw=draw)
