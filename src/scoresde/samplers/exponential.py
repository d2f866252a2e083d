"""Deterministic exponential integrators over the half log-SNR lambda = log(alpha_t / sigma_t).

With D the denoiser and eps the noise prediction, the probability-flow ODE has the exact-linear-part
solution from s to t (h = lambda_t - lambda_s > 0, Lu et al. 2022a eq. 3.4 and 2022b eq. 9):

    x_t = (sigma_t / sigma_s) x_s + alpha_t int_{lambda_s}^{lambda_t} e^{-(lambda_t - l)} D dl      (data form)
    x_t = (alpha_t / alpha_s) x_s - sigma_t int_{lambda_s}^{lambda_t} e^{l - lambda_t} eps dl      (noise form)

Expanding D (or eps) in a Taylor series in lambda and estimating the derivatives from stage values
gives the ETD-ERK / DPM-Solver(++) family. With phi1(h) = 1 - e^{-h}, phi2(h) = (h - 1 + e^{-h}) / h
(data form) and e^h - 1, psi(h) = (e^h - 1 - h) / h (noise form):

* order 1: x_t = (sigma_t/sigma_s) x_s + alpha_t phi1(h) D_s  (= DDIM; both forms agree);
* order 2 (stage at r h): + alpha_t phi2(h) / r (D_1 - D_s)  ("taylor"), or alpha_t phi1(h) / (2r) (D_1 - D_s)
  ("phi1", DPM-Solver++(2S) of Lu et al. 2022b Alg. 1);
* order 3 (stages at r1 h, r2 h; r1 = 1/3, r2 = 2/3): stage 2 uses the order-2 Taylor formula with the
  derivative from (D_1 - D_s) / r1, the final step alpha_t phi2(h) / r2 (D_2 - D_s) (DPM-Solver-3,
  Lu et al. 2022a Alg. 5, in data form). phi2(h)/r2 matches the exact h^2 D'' weight up to O(h),
  which the overall factor h makes a fourth-order local error;
* DPM-Solver++(2M) (Lu et al. 2022b Alg. 2): x_t = (sigma_t/sigma_s) x_s + alpha_t phi1(h) [(1 + 1/(2r)) D_s
  - 1/(2r) D_prev], r = h_prev / h; its first step is order 1;
* DDIM(eta) (Song, Meng & Ermon 2021 eq. 12): x_t = alpha_t D + sqrt(sigma_t^2 - c^2) eps_hat + c xi with
  c = eta sigma_t sqrt(1 - e^{-2h}) (their sigma_t(eta) for VP, written for any SDE); eta = 1 is the
  ancestral (DDPM posterior) step.

A step that ends at sigma_t = 0 (lambda = +inf, e.g. a k-diffusion schedule ending in 0) is the limit of
every formula: x_t = alpha_t D(x_s) (one NFE). With ``denoise=True`` the samplers add one Tweedie step
x <- D(x, t_end) at the end, counted as one more NFE; without it they return x at t = t_end.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._tensor import as_time, like
from ..brownian import NoiseSource
from ..parameterization import ScoreModel
from ..schedules import edm_rho, log_snr_uniform, quadratic_time, uniform_time
from ..sde import SDE
from .base import SampleResult, progress_bar

__all__ = [
    "GRIDS",
    "ddim",
    "ddim_step",
    "dpmpp_2m",
    "etd_erk",
    "etd_erk_1",
    "etd_erk_2",
    "etd_erk_3",
    "etd_erk_step",
    "make_grid",
]

#: grid names accepted by every sampler of this family
GRIDS = ("logsnr", "time", "quadratic", "edm")

#: a source of standard-normal noise for the sub-interval [sigma_from, sigma_to] (VE sigmas) of a step
Draw = Callable[[Tensor, Tensor], Tensor]


def make_grid(sde: SDE, steps: int, grid: str | Tensor = "logsnr", t_end: float | None = None,
              rho: float = 7.0) -> Tensor:
    """The float64 time grid T -> t_end of ``steps`` steps: "logsnr" | "time" | "quadratic" | "edm" (rho), or a tensor."""
    if isinstance(grid, Tensor):
        g = grid.detach().to(torch.float64).reshape(-1)
        if g.numel() < 2 or not bool((g[1:] < g[:-1]).all()) or bool((g < 0).any()):
            raise ValueError("a grid must be a 1-D tensor of at least 2 decreasing times >= 0")
        return g
    builders = {"logsnr": log_snr_uniform, "time": uniform_time, "quadratic": quadratic_time,
                "edm": lambda s, n, e: edm_rho(s, n, e, rho=rho)}
    if grid not in builders:
        raise ValueError(f"unknown grid {grid!r}; expected one of {', '.join(GRIDS)} or a tensor of times")
    return builders[grid](sde, steps, t_end)


def check_steps(steps: int) -> None:
    if int(steps) < 1:
        raise ValueError(f"the number of steps must be >= 1, got {steps}")


def coefs(sde: SDE, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(alpha_t, sigma_t, lambda_t) in float64; lambda = +inf where sigma_t = 0."""
    alpha, sigma = sde.marginal(t)
    return alpha, sigma, torch.log(alpha) - torch.log(sigma)


def phi1(h: Tensor) -> Tensor:
    """1 - e^{-h}."""
    return -torch.expm1(-h)


def phi2(h: Tensor) -> Tensor:
    """(h - 1 + e^{-h}) / h = int_0^1 h e^{-h (1 - u)} u du, with a series near 0."""
    small = h.abs() < 1e-4
    hs = torch.where(small, torch.ones_like(h), h)
    return torch.where(small, h / 2 - h**2 / 6 + h**3 / 24, (torch.expm1(-hs) + hs) / hs)


def psi(h: Tensor) -> Tensor:
    """(e^h - 1 - h) / h, the noise-form second-order weight, with a series near 0."""
    small = h.abs() < 1e-4
    hs = torch.where(small, torch.ones_like(h), h)
    return torch.where(small, h / 2 + h**2 / 6 + h**3 / 24, (torch.expm1(hs) - hs) / hs)


def _stage_time(sde: SDE, lam: Tensor) -> Tensor:
    return sde.t_from_log_snr(lam)


def etd_erk_step(model: ScoreModel, x: Tensor, t_s: Tensor, t_t: Tensor, *, order: int = 3,
                 prediction: str = "data", variant: str = "taylor", r1: float | None = None,
                 r2: float | None = None) -> tuple[Tensor, Tensor]:
    """One ETD-ERK step s -> t (DPM-Solver++ singlestep in data form, DPM-Solver in noise form; Lu et al. 2022).

    Returns (x_t, D(x_s)); costs ``order`` NFE (1 when sigma_t = 0).
    """
    sde = model.sde
    a_s, s_s, l_s = coefs(sde, t_s)
    a_t, s_t, l_t = coefs(sde, t_t)
    D_s = model.denoised(x, t_s) if prediction == "data" else None
    e_s = model.eps(x, t_s) if prediction == "noise" else None
    if D_s is None:
        D_s = (x - like(s_s, x) * e_s) / like(a_s, x)
    if bool((s_t == 0).all()):
        return like(a_t, x) * D_s, D_s
    h = l_t - l_s
    if order == 1:
        r = []
    elif order == 2:
        r = [0.5 if r1 is None else float(r1)]
    else:
        r = [1 / 3 if r1 is None else float(r1), 2 / 3 if r2 is None else float(r2)]

    def at(c: float):
        t_c = _stage_time(sde, l_s + c * h)
        a_c, s_c, _ = coefs(sde, t_c)
        return t_c, a_c, s_c

    if prediction == "data":
        def lin(a_c, s_c, c):  # the order-1 part to the point lambda_s + c h
            return like(s_c / s_s, x) * x + like(a_c * phi1(c * h), x) * D_s

        F = [D_s]
        for k, c in enumerate(r):
            t_c, a_c, s_c = at(c)
            u = lin(a_c, s_c, c)
            if k == 1:  # second stage of order 3: the Taylor order-2 formula at c
                u = u + like(a_c * phi2(c * h) * (c / r[0]), x) * (F[1] - D_s)
            F.append(model.denoised(u, t_c))
        out = lin(a_t, s_t, 1.0)
        if order == 2:
            w = phi2(h) / r[0] if variant == "taylor" else phi1(h) / (2 * r[0])
            out = out + like(a_t * w, x) * (F[1] - D_s)
        elif order == 3:
            out = out + like(a_t * phi2(h) / r[1], x) * (F[2] - D_s)
        return out, D_s

    def lin_e(a_c, s_c, c):
        return like(a_c / a_s, x) * x - like(s_c * torch.expm1(c * h), x) * e_s

    F = [e_s]
    for k, c in enumerate(r):
        t_c, a_c, s_c = at(c)
        u = lin_e(a_c, s_c, c)
        if k == 1:
            u = u - like(s_c * psi(c * h) * (c / r[0]), x) * (F[1] - e_s)
        F.append(model.eps(u, t_c))
    out = lin_e(a_t, s_t, 1.0)
    if order == 2:
        w = psi(h) / r[0] if variant == "taylor" else torch.expm1(h) / (2 * r[0])
        out = out - like(s_t * w, x) * (F[1] - e_s)
    elif order == 3:
        out = out - like(s_t * psi(h) / r[1], x) * (F[2] - e_s)
    return out, D_s


def check_common(order: int | None = None, prediction: str = "data", variant: str = "taylor") -> None:
    if order is not None and order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order}")
    if prediction not in ("data", "noise"):
        raise ValueError(f"prediction must be 'data' or 'noise', got {prediction!r}")
    if variant not in ("taylor", "phi1"):
        raise ValueError(f"variant must be 'taylor' or 'phi1', got {variant!r}")


def run_steps(model: ScoreModel, x: Tensor, grid: Tensor, step, *, denoise: bool, progress: bool, desc: str,
              callback: Callable[[dict], None] | None = None, info: dict | None = None) -> SampleResult:
    """Run ``step(x, i, t_s, t_t) -> (x, denoised)`` over the grid; optional final Tweedie denoise (one NFE)."""
    start = model.nfe
    with torch.no_grad(), progress_bar(len(grid) - 1, progress, desc) as bar:
        for i in range(len(grid) - 1):
            t_s, t_t = as_time(grid[i], x), as_time(grid[i + 1], x)
            x_new, d = step(x, i, t_s, t_t)
            if callback is not None:
                callback({"x": x, "i": i, "sigma": model.sde.sigma_tilde(grid[i]),
                          "sigma_hat": model.sde.sigma_tilde(grid[i]), "denoised": d})
            x = x_new
            bar.update()
        if denoise and float(model.sde.sigma(grid[-1])) > 0:
            x = model.denoised(x, as_time(grid[-1], x))
    return SampleResult(x, model.nfe - start, info=dict(info or {}, grid=grid))


def etd_erk(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, order: int = 3, steps: int = 20,
            grid: str | Tensor = "logsnr", t_end: float | None = None, prediction: str = "data",
            variant: str = "taylor", r1: float | None = None, r2: float | None = None, denoise: bool = False,
            progress: bool = False, callback: Callable[[dict], None] | None = None) -> SampleResult:
    """ETD-ERK of order 1-3 = DPM-Solver++ (data) / DPM-Solver (noise) singlestep (Lu et al. 2022a Alg. 1, 4, 5).

    NFE = order * steps (+1 with ``denoise``; a step ending at sigma = 0 costs one). ``noise`` is unused.
    """
    check_common(order, prediction, variant)
    check_steps(steps)
    g = make_grid(model.sde, steps, grid, t_end)

    def step(x, i, t_s, t_t):
        return etd_erk_step(model, x, t_s, t_t, order=order, prediction=prediction, variant=variant, r1=r1, r2=r2)

    return run_steps(model, x, g, step, denoise=denoise, progress=progress, desc=f"etd-erk{order}",
                     callback=callback, info={"order": order, "prediction": prediction})


def etd_erk_1(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, **kw) -> SampleResult:
    """ETD-ERK order 1 = DPM-Solver++1 = DDIM (Lu et al. 2022b eq. 10)."""
    return etd_erk(model, x, noise, order=1, **kw)


def etd_erk_2(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, **kw) -> SampleResult:
    """ETD-ERK order 2 = DPM-Solver++(2S) (Lu et al. 2022b Alg. 1; "taylor" weight phi2 by default)."""
    return etd_erk(model, x, noise, order=2, **kw)


def etd_erk_3(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, **kw) -> SampleResult:
    """ETD-ERK order 3 = DPM-Solver++3 singlestep (Lu et al. 2022a Alg. 5 in data form)."""
    return etd_erk(model, x, noise, order=3, **kw)


def dpmpp_2m(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, steps: int = 20,
             grid: str | Tensor = "logsnr", t_end: float | None = None, denoise: bool = False, progress: bool = False,
             callback: Callable[[dict], None] | None = None) -> SampleResult:
    """DPM-Solver++(2M) multistep (Lu et al. 2022b Alg. 2): one NFE per step, order 2 after an order-1 first step."""
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


def ddim_step(model: ScoreModel, x: Tensor, t_s: Tensor, t_t: Tensor, xi: Tensor | None, eta: float = 0.0,
              s_noise: float = 1.0) -> tuple[Tensor, Tensor]:
    """One DDIM(eta) step (Song, Meng & Ermon 2021 eq. 12) for any SDE; returns (x_t, D(x_s))."""
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


def ddim(model: ScoreModel, x: Tensor, noise: NoiseSource | None = None, *, steps: int = 50,
         grid: str | Tensor = "logsnr", eta: float = 0.0, s_noise: float = 1.0, t_end: float | None = None,
         denoise: bool = False, progress: bool = False, callback: Callable[[dict], None] | None = None,
         draw: Draw | None = None) -> SampleResult:
    """DDIM(eta) (Song, Meng & Ermon 2021 eq. 12): eta = 0 is ETD-ERK-1, eta = 1 the ancestral step; 1 NFE a step.

    For eta > 0 each step draws one standard normal per sample from ``noise``.
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


def noise_draw(noise: NoiseSource | None, needed: bool) -> Draw:
    """A :data:`Draw` taking the next per-sample draw of a NoiseSource (its interval arguments unused)."""
    if needed and noise is None:
        raise ValueError("a stochastic sampler (eta > 0) needs a NoiseSource")

    def draw(sigma_from: Tensor, sigma_to: Tensor) -> Tensor:
        return noise.draw()

    return draw
