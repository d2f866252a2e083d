"""Exponential integrators in lambda from one stage table: SEEDS (Gonzalez et al. 2023) and DPM-Solver(++) (Lu et al.).

eta = 0: ETD-ERK = DPM-Solver++ singlestep (data form; Lu et al. 2022b eq. 9, Alg. 1) / DPM-Solver (noise form;
2022a eq. 3.4, Alg. 4-5); eta > 0: SEEDS-1/2/3 (Gonzalez et al. 2023, Alg. 1-3). Also DPM-Solver++(2M) (2022b
Alg. 2) and DDIM(eta) (Song, Meng & Ermon 2021 eq. 12). lambda = log(alpha_t / sigma_t), the half log-SNR.

Derivation (written from the maths, not from released code). Let y = x / alpha (VE space, sigma~ = sigma / alpha
= e^{-lambda}) and D the denoiser. The marginal-preserving reverse processes, probability-flow drift plus eta
times a Langevin term, are in lambda (increasing towards the data)

    dy = (1 + eta) (D - y) dlambda + sqrt(2 eta) sigma~ dW_lambda,        eta in [0, 1]

(eta = 0: the probability-flow ODE; eta = 1: the reverse SDE). Variation of constants from s to t
(h = lambda_t - lambda_s > 0, nu = 1 + eta, hh = nu h), multiplied back by alpha_t:

    x_t = (sigma_t/sigma_s) e^{-eta h} x_s + alpha_t hh int_0^1 e^{-hh (1-u)} D(lambda_s + u h) du + sigma_t n_t,
    n_t = sqrt(2 eta) int e^{-eta (lambda_t - l)} dW_l  ~  N(0, 1 - e^{-2 eta h}).

The linear part and the noise are exact. D(lambda_s + u c h) = D_s + u (c h) D' + ... gives the weights
int_0^1 hh e^{-hh(1-u)} du = phi1(hh) = 1 - e^{-hh} and int_0^1 hh e^{-hh(1-u)} u du = phi2(hh) =
(hh - 1 + e^{-hh}) / hh, so the point at lambda_s + c h is, to second order,

    x_c = (sigma_c/sigma_s) e^{-eta c h} x_s + alpha_c phi1(nu c h) D_s + alpha_c w (c/r) (D_r - D_s) + sigma_c n_c

with (D_r - D_s) / r the estimate of h D' from a stage at lambda_s + r h and w = phi2(nu c h) ("taylor") or
phi1(nu c h) / 2 ("phi1", equal to leading order: DPM-Solver++(2S), Lu et al. 2022b Alg. 1). An
:class:`ExponentialTableau` lists the stage fractions 0 < c_1 < ... < 1: the first stage is the order-1 point,
every later stage and the final point (c = 1) correct with the latest stage (r = the previous c).

* order 1 (no stage): DDIM at eta = 0 (Lu et al. 2022b eq. 10); the DDPM ancestral step (posterior of x_t
  given x_s and x_0 = D_s) in data form at eta = 1;
* order 2 (r = 1/2): DPM-Solver++(2S) / SEEDS-2;
* order 3 (r1 = 1/3, r2 = 2/3): stage 2 with (c/r) = r2/r1 from D_1, the final point with 1/r2 from D_2
  (DPM-Solver-3, Lu et al. 2022a Alg. 5, in data form; SEEDS-3). phi2(h) (D_2 - D_s) / r2 carries
  phi2(h) r2 h^2 D'' / 2 ~ r2 h^3 D'' / 4 against the exact h^3 D'' / 6: third order needs r2 = 2/3 (any r1).

At eta = 1 the SEEDS-3 stage-2 coefficient is alpha_2 [expm1(-2 r2 h)/(2 r2 h) + 1] r2/r1; the released code's
expm1(-2 c2 h)/(c2 h) + 1 tends to -1 (not 0) as h -> 0, not Taylor-consistent (1-D Gaussian data, VP, 256 log-SNR
steps: SEEDS-3 first order, variance error 2.1e-3 against 6.3e-6 here; at eta = 0 8.3e-4 against 1.1e-8).

Shared Brownian noise. The stage noises are the same stochastic integral stopped at the stage points, an
Ornstein-Uhlenbeck process of unit stationary variance in lambda, sampled exactly: n_0 = 0,
n_{k+1} = e^{-eta dc_k h} n_k + sqrt(1 - e^{-2 eta dc_k h}) xi_{k+1} (dc_k = c_{k+1} - c_k); the final n_t
continues the recursion, so a k-stage step draws k standard normals per sample (none at eta = 0).

Noise form. With eps = (y - D) / sigma~ the same family reads dy = -nu e^{-lambda} eps dlambda + sqrt(2 eta)
e^{-lambda} dW (no linear part), so (Lu et al. 2022a eq. 3.4 at eta = 0)

    x_c = (alpha_c/alpha_s) x_s - nu sigma_c [(e^{ch} - 1) eps_s + w (c/r) (eps_r - eps_s)] + alpha_c N_c,

w = psi(ch) = (e^{ch} - 1 - ch)/(ch) ("taylor") or (e^{ch} - 1) / 2 ("phi1"), N_{k+1} = N_k +
sqrt(eta (sigma~_k^2 - sigma~_{k+1}^2)) xi_{k+1} (a Brownian motion in -sigma~^2 / 2 scaled by eta). Order 1
at eta = 1: x_t = (alpha_t/alpha_s) x_s - 2 sigma_t (e^h - 1) eps_s + sigma_t sqrt(e^{2h} - 1) xi.

Orders (declared on each tableau). Deterministic (eta = 0): k for k <= 3 stages. Weak (eta > 0): with noise the
state is only Holder-1/2 in lambda, so D(x_lambda) has no second derivative along the path and the iterated
integrals int int dW dlambda of a third-order step are not matched: 1 / 2 / 2 for SEEDS-1/2/3 (tests/test_seeds.py).

A step ending at sigma_t = 0 (lambda = +inf, a k-diffusion schedule ending in 0) is every formula's limit
x_t = alpha_t D(x_s) (one NFE, no noise). ``denoise=True`` adds one counted Tweedie step x <- D(x, t_end).
"""
from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import torch
from torch import Tensor

from .._tensor import like
from ..brownian import NoiseSource
from ..parameterization import ScoreModel
from ..sde import SDE
from .base import SampleResult
from .common import (
    Draw,
    check_prediction,
    check_steps,
    coefs,
    declare_orders,
    fixed_order,
    make_grid,
    noise_draw,
    phi1,
    phi2,
    psi,
    run_steps,
)

__all__ = ["TABLEAUX", "WEIGHTS", "ExponentialTableau", "ddim", "ddim_step", "dpmpp_2m", "etd_erk", "etd_erk_1",
           "etd_erk_2", "etd_erk_3", "exponential_sample", "exponential_stages", "exponential_step", "exponential_tableau",
           "stage_times", "StageRequest"]

#: the Taylor weight of a corrected point: "taylor" (phi2 / psi) or "phi1" (phi1 / 2, DPM-Solver++(2S))
WEIGHTS = ("taylor", "phi1")


def attainable_order(c: tuple[float, ...], weights: tuple[str, ...]) -> int:
    """The deterministic order a stage chain reaches: 1 without stages, 3 with >= 2 stages whose last sits at
    c = 2/3 and a "taylor" final weight, else 2 (each point only sees the latest stage's D' estimate)."""
    if not c:
        return 1
    return 3 if len(c) >= 2 and weights[-1] == "taylor" and abs(c[-1] - 2 / 3) < 1e-12 else 2


@dataclass(frozen=True)
class ExponentialTableau:
    """The stages of one exponential method, shared by its ODE (ETD-ERK, eta = 0) and SDE (SEEDS, eta > 0) forms.

    ``c``: intermediate stage fractions of the step in lambda, 0 < c_1 < ... < 1 (the final point c = 1 implied);
    ``weights``: the Taylor weight (one of :data:`WEIGHTS`) of each corrected point: the stages after the first,
    then the final point, so ``len(weights) == len(c)``; ``order_deterministic``: global order at eta = 0;
    ``order_weak``: weak order at eta > 0. Validated on construction (ValueError). NFE per step: :attr:`stages`.
    """

    name: str
    c: tuple[float, ...] = ()
    weights: tuple[str, ...] = ()
    order_deterministic: int = 1
    order_weak: int = 1

    def __post_init__(self):
        c, w = tuple(float(v) for v in self.c), tuple(self.weights)
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "weights", w)
        where = f"exponential tableau {self.name!r}"
        bounds = (0.0, *c, 1.0)
        if not all(a < b for a, b in zip(bounds, bounds[1:])):
            raise ValueError(f"{where}: stage fractions must satisfy 0 < c_1 < c_2 < ... < 1 (0 < r1 < r2 < 1), "
                             f"got {c}")
        if len(w) != len(c):
            raise ValueError(f"{where}: needs one weight per corrected point (each stage after the first, then the "
                             f"final point), i.e. {len(c)}, got {len(w)}")
        if any(v not in WEIGHTS for v in w):
            raise ValueError(f"{where}: unknown weight in {w}; expected one of {', '.join(WEIGHTS)}")
        det, weak = self.order_deterministic, self.order_weak
        if not all(isinstance(o, int) and not isinstance(o, bool) and o >= 1 for o in (det, weak)):
            raise ValueError(f"{where}: orders must be positive integers, got deterministic {det!r}, weak {weak!r}")
        top = attainable_order(c, w)
        if det > top:
            raise ValueError(f"{where}: declared deterministic order {det} exceeds the {top} its stages reach "
                             "(order 3 needs two stages, the last at c = 2/3, and a 'taylor' final weight)")
        if weak > min(det, 2):
            raise ValueError(f"{where}: declared weak order {weak} exceeds min(deterministic order, 2) = "
                             f"{min(det, 2)} (with noise the path is only Holder-1/2 in lambda)")

    @property
    def stages(self) -> int:
        """Model evaluations per step (and standard normals drawn per step when eta > 0)."""
        return len(self.c) + 1


#: the named tableaux of SEEDS-k / ETD-ERK-k
TABLEAUX = {t.name: t for t in (
    ExponentialTableau("exp1", (), (), order_deterministic=1, order_weak=1),
    ExponentialTableau("exp2", (1 / 2,), ("taylor",), order_deterministic=2, order_weak=2),
    ExponentialTableau("exp2-phi1", (1 / 2,), ("phi1",), order_deterministic=2, order_weak=2),
    ExponentialTableau("exp3", (1 / 3, 2 / 3), ("taylor", "taylor"), order_deterministic=3, order_weak=2),
)}


def exponential_tableau(order: int = 3, variant: str = "taylor", r1: float | None = None,
                        r2: float | None = None) -> ExponentialTableau:
    """The tableau of SEEDS-k / ETD-ERK-k (k = ``order``): a named one, or a validated one for chosen r1 / r2.

    order 2: one stage at r1 (default 1/2), final weight ``variant``; order 3: stages at r1 < r2 (default 1/3,
    2/3), "taylor" weights. A chosen tableau declares what its stages reach (:func:`attainable_order`: order 3
    needs r2 = 2/3) and weak order min(that, 2).
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order}")
    if variant not in WEIGHTS:
        raise ValueError(f"variant must be 'taylor' or 'phi1', got {variant!r}")
    if variant == "phi1" and order != 2:
        raise ValueError(f"variant 'phi1' (DPM-Solver++(2S)) exists for order 2 only, got order {order}")
    if r1 is None and (r2 is None or order < 3) or order == 1:
        return TABLEAUX[f"exp{order}" + ("-phi1" if variant == "phi1" else "")]
    c = (float(r1),) if order == 2 else (1 / 3 if r1 is None else float(r1), 2 / 3 if r2 is None else float(r2))
    w = ("taylor",) * (len(c) - 1) + (variant,) if c else ()
    det = attainable_order(c, w)
    return ExponentialTableau(f"exp{order}{'-phi1' if variant == 'phi1' else ''}(c={', '.join(f'{v:g}' for v in c)})",
                              c, w, order_deterministic=det, order_weak=min(det, 2))


def _weight(kind: str, z: Tensor, data: bool) -> Tensor:
    if kind == "taylor":
        return phi2(z) if data else psi(z)
    # why: phi1(z) / 2 and (e^z - 1) / 2 match phi2 / psi at leading order (z / 2) only: enough for second
    # order at the final point; at an intermediate stage the O(h^3) state error it adds stays harmless
    return (phi1(z) if data else torch.expm1(z)) / 2


#: what a step asks of the model: (state, per-sample time, "data" for D or "eps" for the noise prediction)
StageRequest = tuple[Tensor, Tensor, str]


def exponential_stages(sde: SDE, x: Tensor, t_s: Tensor, t_t: Tensor, tableau: ExponentialTableau, *,
                       eta: float = 0.0, prediction: str = "data", draw: Draw | None = None,
                       s_noise: float = 1.0) -> Generator[StageRequest, Tensor, tuple[Tensor, Tensor]]:
    """One step s -> t of ``tableau`` (module docstring) as a coroutine that asks for each model evaluation.

    It yields a :data:`StageRequest` (x_c, t_c, kind) for every evaluation (``tableau.stages`` of them; 1 when
    sigma_t = 0), is sent the model's prediction of that kind at (x_c, t_c), and returns (x_t, D(x_s)). The first
    request is (x, t_s). :func:`exponential_step` drives it with a :class:`ScoreModel`; a diffusers scheduler
    (:mod:`scoresde.interop.schedulers`) drives the same code with the outputs a pipeline computes.
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    check_prediction(prediction)
    if eta > 0 and draw is None:
        raise ValueError("a stochastic step (eta > 0) needs a draw")
    a_s, s_s, l_s = coefs(sde, t_s)
    a_t, s_t, l_t = coefs(sde, t_t)
    data = prediction == "data"
    kind = "data" if data else "eps"
    F0 = yield x, t_s, kind
    D_s = F0 if data else (x - like(s_s, x) * F0) / like(a_s, x)
    if bool((s_t == 0).all()):
        return like(a_t, x) * D_s, D_s
    h = l_t - l_s
    nu = 1.0 + eta
    points = tableau.c + (1.0,)
    F = [F0]  # the prediction (D or eps) at s and at each stage evaluated so far
    n = torch.zeros_like(x)  # unit-scale OU noise (data form) / y-space Brownian integral (noise form)
    c_prev, sig_prev = 0.0, s_s / a_s
    for k, c in enumerate(points):
        final = k == len(tableau.c)
        t_c = t_t if final else sde.t_from_log_snr(l_s + c * h)
        a_c, s_c, _ = (a_t, s_t, l_t) if final else coefs(sde, t_c)
        sig_c = s_c / a_c
        if eta > 0:
            # why: the stages must see one Brownian path, not fresh noise each: the noise at c continues the
            # noise at the previous point (exact OU / Brownian transition), so the final point's noise is the
            # exact n_t and each stage's D is evaluated on the same path the final point integrates along
            xi = draw(sig_prev[0], sig_c[0]).to(x)
            dh = (c - c_prev) * h
            if data:
                n = like(torch.exp(-eta * dh), x) * n + like(torch.sqrt(phi1(2 * eta * dh)), x) * xi
            else:
                n = n + like(sig_c * torch.sqrt(eta * torch.expm1(2 * dh)), x) * xi
        if data:
            u = like(s_c / s_s * torch.exp(-eta * c * h), x) * x + like(a_c * phi1(nu * c * h), x) * D_s
        else:
            u = like(a_c / a_s, x) * x - like(nu * s_c * torch.expm1(c * h), x) * F0
        if k >= 1:  # correct with the latest stage: (F_k - F_0) / r estimates h F'
            w = _weight(tableau.weights[k - 1], nu * c * h if data else c * h, data) * (c / points[k - 1])
            u = u + like(a_c * w, x) * (F[k] - D_s) if data else u - like(nu * s_c * w, x) * (F[k] - F0)
        if eta > 0:
            u = u + like(s_noise * (s_c if data else a_c), x) * n
        if final:
            return u, D_s
        F.append((yield u, t_c, kind))
        c_prev, sig_prev = c, sig_c
    raise AssertionError("unreachable")


def stage_times(sde: SDE, t_s: Tensor, t_t: Tensor, tableau: ExponentialTableau) -> list[Tensor]:
    """The times at which :func:`exponential_stages` evaluates the model over s -> t: t_s, then each stage's
    (computed exactly as the step computes them; only t_s when sigma_t = 0)."""
    _, _, l_s = coefs(sde, t_s)
    _, s_t, l_t = coefs(sde, t_t)
    if bool((s_t == 0).all()):
        return [t_s]
    return [t_s] + [sde.t_from_log_snr(l_s + c * (l_t - l_s)) for c in tableau.c]


@torch.no_grad()
def exponential_step(model: ScoreModel, x: Tensor, t_s: Tensor, t_t: Tensor, tableau: ExponentialTableau, *,
                     eta: float = 0.0, prediction: str = "data", draw: Draw | None = None,
                     s_noise: float = 1.0) -> tuple[Tensor, Tensor]:
    """One step s -> t of ``tableau`` (module docstring): ETD-ERK at eta = 0 (no noise drawn), SEEDS at eta > 0.

    ``draw(sigma_from, sigma_to)`` returns the standard normal of each sub-interval (``tableau.stages`` per step
    when eta > 0). Returns (x_t, D(x_s)); costs ``tableau.stages`` NFE (1 when sigma_t = 0). The step itself is
    :func:`exponential_stages`, driven here with ``model``.
    """
    steps = exponential_stages(model.sde, x, t_s, t_t, tableau, eta=eta, prediction=prediction, draw=draw,
                               s_noise=s_noise)
    try:
        u, t_c, kind = next(steps)
        while True:
            u, t_c, kind = steps.send(model.denoised(u, t_c) if kind == "data" else model.eps(u, t_c))
    except StopIteration as done:
        return done.value


@torch.no_grad()
def exponential_sample(model: ScoreModel, x: Tensor, noise: NoiseSource | None, tableau: ExponentialTableau, *,
                       eta: float, steps: int = 20, grid: str | Tensor = "logsnr", t_end: float | None = None,
                       prediction: str = "data", s_noise: float = 1.0, denoise: bool = False, progress: bool = False,
                       callback: Callable[[dict], None] | None = None, draw: Draw | None = None,
                       desc: str = "exponential") -> SampleResult:
    """``steps`` steps of :func:`exponential_step` over a log-SNR (or other) grid; NFE = tableau.stages * steps
    (+1 with ``denoise``). eta > 0 draws ``tableau.stages`` normals per sample and step from ``noise`` (or ``draw``)."""
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    check_prediction(prediction)
    check_steps(steps)
    g = make_grid(model.sde, steps, grid, t_end)
    draw = draw or noise_draw(noise, eta > 0)

    def step(x, i, t_s, t_t):
        return exponential_step(model, x, t_s, t_t, tableau, eta=eta, prediction=prediction, draw=draw,
                                s_noise=s_noise)

    return run_steps(model, x, g, step, denoise=denoise, progress=progress, desc=desc, callback=callback,
                     info={"order": tableau.stages, "tableau": tableau.name, "eta": eta, "prediction": prediction})


def etd_erk(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, order: int = 3, steps: int = 20,
            grid: str | Tensor = "logsnr", t_end: float | None = None, prediction: str = "data",
            variant: str = "taylor", r1: float | None = None, r2: float | None = None, denoise: bool = False,
            progress: bool = False, callback: Callable[[dict], None] | None = None,
            tableau: ExponentialTableau | None = None) -> SampleResult:
    """ETD-ERK of order 1-3 = DPM-Solver++ (data) / DPM-Solver (noise) singlestep (Lu et al. 2022a Alg. 1, 4, 5).

    ``tableau`` (else :func:`exponential_tableau` of order / variant / r1 / r2) sets the stages;
    NFE = stages * steps (+1 with ``denoise``; a step ending at sigma = 0 costs one). ``noise`` is unused.
    """
    tab = tableau or exponential_tableau(order, variant, r1, r2)
    return exponential_sample(model, x, None, tab, eta=0.0, steps=steps, grid=grid, t_end=t_end,
                              prediction=prediction, denoise=denoise, progress=progress, callback=callback,
                              desc=f"etd-erk{tab.stages}")


#: each order's defaults where they differ from :func:`etd_erk`'s (log-SNR grid): measured by benchmarks/grids.py
#: (benchmarks/results/grids.md); for orders 2 and 3 the quadratic grid was 19 % / 8 % better, under the 20 % margin
MEASURED_DEFAULTS: dict[int, dict] = {1: {"grid": "quadratic"}, 2: {}, 3: {}}


def _etd(k: int, doc: str):
    return fixed_order(etd_erk, k, f"etd_erk_{k}", doc, TABLEAUX[f"exp{k}"].order_deterministic,
                       defaults=MEASURED_DEFAULTS[k])


etd_erk_1 = _etd(1, "ETD-ERK order 1 = DPM-Solver++1 = DDIM (Lu et al. 2022b eq. 10); quadratic grid by default "
                      "(measured).")
etd_erk_2 = _etd(2, "ETD-ERK order 2 = DPM-Solver++(2S) (Lu et al. 2022b Alg. 1; \"taylor\" weight by default).")
etd_erk_3 = _etd(3, "ETD-ERK order 3 = DPM-Solver++3 singlestep (Lu et al. 2022a Alg. 5 in data form).")


@declare_orders(2)
@torch.no_grad()
def dpmpp_2m(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, steps: int = 20,
             grid: str | Tensor = "logsnr", t_end: float | None = None, denoise: bool = False, progress: bool = False,
             callback: Callable[[dict], None] | None = None) -> SampleResult:
    """DPM-Solver++(2M) multistep (Lu et al. 2022b Alg. 2): one NFE per step, order 2 after an order-1 first step.

    x_t = (sigma_t/sigma_s) x_s + alpha_t phi1(h) [(1 + 1/(2r)) D_s - D_prev / (2r)], r = h_prev / h.
    """
    check_steps(steps)
    sde = model.sde
    g = make_grid(sde, steps, grid, t_end)
    state: dict[str, Tensor] = {}

    def step(x, i, t_s, t_t):
        _a_s, s_s, l_s = coefs(sde, t_s)
        a_t, s_t, l_t = coefs(sde, t_t)
        D_s = model.denoised(x, t_s)
        if bool((s_t == 0).all()):
            return like(a_t, x) * D_s, D_s
        h = l_t - l_s
        D_eff = D_s
        if "D" in state:
            r = state["h"] / h
            D_eff = like(1 + 1 / (2 * r), x) * D_s - like(1 / (2 * r), x) * state["D"]
        state["D"], state["h"] = D_s, h
        return like(s_t / s_s, x) * x + like(a_t * phi1(h), x) * D_eff, D_s

    return run_steps(model, x, g, step, denoise=denoise, progress=progress, desc="dpm++2m", callback=callback)


@torch.no_grad()
def ddim_step(model: ScoreModel, x: Tensor, t_s: Tensor, t_t: Tensor, xi: Tensor | None, eta: float = 0.0,
              s_noise: float = 1.0) -> tuple[Tensor, Tensor]:
    """One DDIM(eta) step (Song, Meng & Ermon 2021 eq. 12) for any SDE; returns (x_t, D(x_s)).

    x_t = alpha_t D + sqrt(sigma_t^2 - c^2) eps_hat + c xi, c = eta sigma_t sqrt(1 - e^{-2h}) (their sigma_t(eta)).
    """
    sde = model.sde
    a_s, s_s, l_s = coefs(sde, t_s)
    a_t, s_t, l_t = coefs(sde, t_t)
    D = model.denoised(x, t_s)
    if bool((s_t == 0).all()):
        return like(a_t, x) * D, D
    e_hat = (x - like(a_s, x) * D) / like(s_s, x)
    c = eta * s_t * torch.sqrt(phi1(2 * (l_t - l_s)))
    out = like(a_t, x) * D + like(torch.sqrt(s_t**2 - c**2), x) * e_hat
    if eta > 0:
        out = out + like(c * s_noise, x) * xi
    return out, D


@declare_orders(1, weak=1)
@torch.no_grad()
def ddim(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, steps: int = 20,
         grid: str | Tensor = "quadratic", eta: float = 0.0, s_noise: float = 1.0, t_end: float | None = None,
         denoise: bool = False, progress: bool = False, callback: Callable[[dict], None] | None = None,
         draw: Draw | None = None) -> SampleResult:
    """DDIM(eta) (Song, Meng & Ermon 2021 eq. 12): eta = 0 is ETD-ERK-1, eta = 1 the ancestral step; 1 NFE a step.

    For eta > 0 each step draws one standard normal per sample from ``noise``. The default grid is quadratic: at
    eta 0 it needed fewer NFE to the arena's target than log-SNR (benchmarks/results/grids.md, as ETD-ERK-1).
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"DDIM eta must lie in [0, 1], got {eta}")
    check_steps(steps)
    g = make_grid(model.sde, steps, grid, t_end)
    draw = draw or noise_draw(noise, eta > 0)

    def step(x, i, t_s, t_t):
        xi = draw(model.sde.sigma_tilde(t_s), model.sde.sigma_tilde(t_t)).to(x) if eta > 0 else None
        return ddim_step(model, x, t_s, t_t, xi, eta, s_noise)

    return run_steps(model, x, g, step, denoise=denoise, progress=progress, desc="ddim", callback=callback,
                     info={"eta": eta})
