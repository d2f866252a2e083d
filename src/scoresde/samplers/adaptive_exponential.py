"""Adaptive exponential SDE solver: SEEDS-1 inside SEEDS-2 as an embedded pair over log-SNR steps, per sample.

Derivation (the data form of :mod:`.exponential`, whose module docstring derives the family). In lambda = log(alpha/sigma)
the marginal-preserving reverse processes dy = (1 + eta)(D - y) dlambda + sqrt(2 eta) sigma~ dW (y = x / alpha,
eta in [0, 1]: 0 the probability-flow ODE, 1 the reverse SDE) have, from lambda_s to lambda_t = lambda_s + h
(nu = 1 + eta), the exact linear part and noise of

    x_t   = (sigma_t/sigma_s) e^{-eta h} x_s + alpha_t phi1(nu h) D_s + sigma_t n_t              (low: SEEDS-1 / DDIM)
    u     = (sigma_c/sigma_s) e^{-eta c h} x_s + alpha_c phi1(nu c h) D_s + sigma_c n_c,  c = 1/2   (the stage)
    x_t^+ = x_t + alpha_t phi2(nu h) (D(u) - D_s) / c                                          (high: SEEDS-2)

with n_c, n_t the Ornstein-Uhlenbeck integrals n_l = sqrt(2 eta) int_s^l e^{-eta (l - m)} dW_m. Both solutions share
the noise, so their difference alpha_t phi2(nu h) (D(u) - D_s) / c is the drift's local error estimate alone.

One Brownian motion for all of it. With v = e^{2 eta lambda}, M(lambda) = int sqrt(2 eta) e^{eta m} dW_m is a standard
Brownian motion B in the variable v (its quadratic variation is int 2 eta e^{2 eta m} dm = dv), so

    n_l = e^{-eta lambda_l} (B(v_l) - B(v_s))      for the stage (l = c) and the end (l = t) alike,

exactly the shared-noise recursion of SEEDS (variance 1 - e^{-2 eta (l - s)}). Each sample keeps its B as a
:class:`~scoresde.brownian.BrownianPath` in v: a rejected attempt is retried with a shorter step on the Brownian
bridge between the points already revealed, so the accept/reject decisions cannot bias the law of the noise (the fix
of GGF's bias, :mod:`.adaptive`).

Error control relative to the noise level. The estimate is measured in VE space (divided by alpha_t, where sigma~ is
the noise level) per element against delta = max(atol, rtol sigma~_t): a per-element tolerance that means the same at
sigma~ = 80 and at sigma~ = 0.01, with ``atol`` the floor near the data (default one 8-bit level of data in [-1, 1]).
E = the root-mean-square of error / delta (any dimension; ``norm``), accepted iff E <= 1; the next step from the
controller (default the I controller of the pair's local order: PID with order 2 at eta = 0, 1 at eta > 0, as
k-diffusion's dpm_adaptive). Accepted steps continue from x_t^+ (local extrapolation).

Orders: the pair is the exp1 / exp2 tableaux of :mod:`.exponential` (deterministic 1 / 2, weak 1 / 2), so at
fixed steps the low and high solutions are those samplers' steps (tests/test_adaptive_exponential.py checks the
equality and the orders); the local error estimate is O(h^2).

NFE, honestly: an attempt evaluates D at its start (1 NFE) and at the stage (1 NFE); a retry after a rejection
reuses the cached D at the start, so costs 1; ``denoise=True`` adds one Tweedie step D(x, t_end) per sample. Every
batched call is one NFE of ``nfe``; ``nfe_per_sample`` counts the evaluations each sample took part in.

Full batches. :func:`adaptive_exponential_stream` runs ``num`` samples through ``batch_size`` slots: a slot whose
sample finished takes the next sample (index, seed) at once, so the batch stays full until the stream runs out and
the batched calls per sample approach the per-sample NFE. Sample i's noise comes from (seed, i) alone - its start
x_T and its Brownian path - so the samples do not depend on the batch size or on which slot ran them.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .._tensor import like
from ..brownian import NOISE_MODES, BrownianPath, NoiseMode, NoiseSource, SampleStreams
from ..parameterization import DenoiserModel, ScoreModel
from ..sde import VESDE
from ..seeding import BROWNIAN
from .adaptive import _SNAP, DEFAULT_ATOL, ERROR_NORMS, Norm, _check_positive, _on_grid, error_norm
from .base import SampleResult, callback_state, progress_bar, progress_from_disable
from .common import coefs, phi1, phi2
from .controller import PIDController, StepSizeController
from .slots import Feed, Slots, in_batch_order, stream_start

__all__ = ["adaptive_exponential", "adaptive_exponential_stream", "sample_adaptive"]

#: the stage fraction of the embedded pair (SEEDS-2's midpoint in lambda)
_C = 0.5


def _v_offsets(lam: Tensor, dl: Tensor, eta: float) -> Tensor:
    """v_{lam + dl} - v_lam = e^{2 eta lam} expm1(2 eta dl) per sample, element by element in Python.

    Why Python floats: torch's vectorised exp may round a value differently (by an ulp) depending on its SIMD lane,
    i.e. on the batch around it; these offsets place the Brownian path's points, where an ulp would grow into
    visibly different samples for different batch sizes.
    """
    return torch.tensor([math.exp(2 * eta * a) * math.expm1(2 * eta * b) for a, b in zip(lam.tolist(), dl.tolist())],
                        dtype=torch.float64)


def _check(model: ScoreModel, rtol: float, atol: float, eta: float, h_init: float, norm: str, noise_mode: str,
           t_end: float | None) -> tuple[float, float, float, float, float]:
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    rtol = _check_positive("rtol", rtol, allow_zero=True)
    atol = _check_positive("atol", atol, allow_zero=True)
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol cannot both be 0")
    _check_positive("h_init", h_init)
    if norm not in ERROR_NORMS:
        raise ValueError(f"unknown error norm {norm!r}; expected one of {', '.join(ERROR_NORMS)}")
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"unknown noise mode {noise_mode!r}; expected one of {', '.join(NOISE_MODES)}")
    sde = model.sde
    T = float(sde.T)
    t_end = float(sde.t_end if t_end is None else t_end)
    if not 0 <= t_end < T:
        raise ValueError(f"t_end must lie in [0, T={T}), got {t_end}")
    lam_T = float(sde.log_snr(torch.tensor(T, dtype=torch.float64)))
    lam_end = float(sde.log_snr(torch.tensor(t_end, dtype=torch.float64)))
    if not math.isfinite(lam_end):
        raise ValueError(f"the adaptive solver needs a noise level > 0 at t_end (got t_end={t_end:g}); "
                         "the final denoise step takes it to the data")
    return rtol, atol, T, t_end, lam_end - lam_T


def _integrate(model: ScoreModel, x: Tensor, streams: SampleStreams | None, feed: Feed | None, total: int, *,
               rtol: float, atol: float, eta: float, h_init: float, h_max: float, norm: Norm, extrapolate: bool,
               noise_mode: NoiseMode, controller: StepSizeController | None, h_min: float | None,
               max_steps: int | None, t_end: float | None, denoise: bool, progress: bool,
               callback: Callable[[dict[str, Any]], None] | None, indices: Sequence[int]) -> SampleResult:
    """The one loop: slots of a batch integrate their samples; a finished slot takes the feed's next sample."""
    rtol, atol, T, t_end, span = _check(model, rtol, atol, eta, h_init, norm, noise_mode, t_end)
    sde = model.sde
    f64 = torch.float64
    n = x.shape[0]
    h_min = 1e-5 * span if h_min is None else _check_positive("h_min", h_min)
    if controller is None:
        controller = PIDController(order=1.0 if eta > 0 else 2.0)
    ctrl = controller.init(n, h_min=h_min)
    if max_steps is None:
        max_steps = int(2 * span / ctrl.h_min + 1000) if ctrl.h_min > 0 else 10**6
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    path = BrownianPath(streams, noise_mode) if eta > 0 else None
    lam_T = float(sde.log_snr(torch.tensor(T, dtype=f64)))
    lam_end = lam_T + span
    h_max = _check_positive("h_max", h_max, allow_inf=True)
    h0 = min(max(min(h_init, h_max), ctrl.h_min), span)

    start = model.nfe
    x = x.clone()
    slots = Slots(indices, feed, streams, path, controller)
    calls, accepted, rejected, live = slots.calls, slots.accepted, slots.rejected, slots.live
    lam = torch.full((n,), lam_T, dtype=f64)
    t = torch.full((n,), T, dtype=f64)
    h = _on_grid(torch.full((n,), h0, dtype=f64), ctrl.h_min)
    D = torch.zeros_like(x)
    have = torch.zeros(n, dtype=torch.bool)  # D at the slot's current point is cached
    waiting: list[tuple[int, Tensor, tuple[int, int, int]]] = []  # finished, awaiting the final denoise
    iteration = 0

    def finish(row: int) -> None:
        nonlocal ctrl
        nxt, ctrl, (idx, done) = slots.finish(row, None if denoise else x[row].clone(), ctrl)
        if denoise:
            waiting.append((idx, x[row].clone(), done))
        if nxt is not None:
            x[row] = nxt[1].to(x)
            lam[row], t[row], h[row] = lam_T, T, _on_grid(torch.tensor([h0], dtype=f64), ctrl.h_min)
            have[row] = False

    with torch.no_grad(), progress_bar(total, progress, f"adaptive (eta {eta:g})") as bar:
        while bool(live.any()) or waiting:
            iteration += 1
            # every slot makes one evaluation per iteration, all in one batched call: D at the start of an attempt
            # (slots without it cached), or the stage of an attempt (slots with it); plus the final denoises waiting
            start_rows = (live & ~have).nonzero().squeeze(1)
            rows = (live & have).nonzero().squeeze(1)
            if rows.numel() and int((accepted[rows] + rejected[rows]).max()) >= int(max_steps):
                raise RuntimeError(f"adaptive_exponential: a sample made max_steps={max_steps} attempts before "
                                   f"reaching t_end={t_end:g}; raise max_steps or h_min, or loosen rtol/atol")
            xa, Ds, ls, ts = x[rows], D[rows], lam[rows], t[rows]
            remaining = lam_end - ls
            last = h[rows] >= remaining - _SNAP
            hh = torch.where(last, remaining, h[rows])
            lc, lt = ls + _C * hh, torch.where(last, torch.full_like(ls, lam_end), ls + hh)
            t_c = sde.t_from_log_snr(lc)
            t_t = torch.where(last, torch.full_like(ls, t_end), sde.t_from_log_snr(lt))
            a_s, s_s, _ = coefs(sde, ts)
            a_c, s_c, _ = coefs(sde, t_c)
            a_t, s_t, _ = coefs(sde, t_t)
            nu = 1.0 + eta
            low = like(s_t / s_s * torch.exp(-eta * hh), xa) * xa + like(a_t * phi1(nu * hh), xa) * Ds
            u = like(s_c / s_s * torch.exp(-eta * _C * hh), xa) * xa + like(a_c * phi1(nu * _C * hh), xa) * Ds
            if path is not None and rows.numel():
                # n_l = e^{-eta lambda_l} (B(v_l) - B(v_s)): the stage's and the end's noise on one Brownian path
                dv_c, dv_t = _v_offsets(ls, _C * hh, eta), _v_offsets(ls, hh, eta)
                w_c = path.increment(rows, dv_c).to(xa)
                w_t = path.increment(rows, dv_t).to(xa)
                low = low + like(s_t * torch.exp(-eta * lt), xa) * w_t
                u = u + like(s_c * torch.exp(-eta * lc), xa) * w_c
            k0, k1, k2 = start_rows.numel(), rows.numel(), len(waiting)
            xs = torch.cat([x[start_rows], u] + [w[1][None] for w in waiting])
            ts_all = torch.cat([t[start_rows], t_c, torch.full((k2,), t_end, dtype=f64)])
            d = model.denoised(xs, ts_all)
            D[start_rows], have[start_rows] = d[:k0], True
            calls[start_rows] += 1
            calls[rows] += 1
            for j, (idx, _, (c, a_, r)) in enumerate(waiting):
                slots.store(idx, d[k0 + k1 + j], (c + 1, a_, r))
            waiting.clear()
            if k1:
                Du = d[k0:k0 + k1]
                corr = like(phi2(nu * hh) / _C, xa) * (Du - Ds)  # VE-space difference of the pair (y = x / alpha)
                high = low + like(a_t, xa) * corr
                delta = (rtol * s_t / a_t).clamp_min(atol)
                error = error_norm(corr / like(delta, corr), norm).cpu()
                ok, h_new, ctrl = controller.propose(ctrl, error, hh, remaining, rows)
                acc = rows[ok]
                ok_x = ok.to(x.device)
                x_new = (high if extrapolate else low)[ok_x]
                if not bool(torch.isfinite(x_new).all()):
                    raise FloatingPointError("adaptive_exponential: a non-finite state was accepted (the model "
                                             "returned inf/nan?)")
                if callback is not None:
                    x_before, t_before = x.clone(), t.clone()
                x[acc], lam[acc], t[acc] = x_new, lt[ok], t_t[ok]
                have[acc] = False
                if path is not None:
                    path.advance(acc, dv_t[ok], w_t[ok_x])
                accepted[acc] += 1
                rejected[rows[~ok]] += 1
                h[rows] = _on_grid(h_new.clamp_max(h_max), ctrl.h_min)
                if callback is not None:
                    callback(callback_state(iteration - 1, x_before, t_before, sde, None, x_next=x.clone(),
                                            t_next=t.clone(), h=h.clone(), accepted=ok, rows=rows, error=error,
                                            samples=list(slots.index)))
                for row in acc[last[ok]].tolist():
                    finish(row)
            bar.update(len(slots.out) - bar.n)
    samples, per, info = slots.result(x)
    info.update({"iterations": iteration, "denoise_nfe": int(denoise), "eta": eta, "rtol": rtol, "atol": atol,
                 "norm": norm, "noise_mode": noise_mode, "slots": n})
    return SampleResult(samples, model.nfe - start, per, info)


def adaptive_exponential(model: ScoreModel, x: Tensor, noise: NoiseSource | SampleStreams | None = None, *,
                         rtol: float = 0.05, atol: float = DEFAULT_ATOL, eta: float = 1.0, h_init: float = 0.05,
                         h_max: float = 1.0,
                         norm: Norm = "l2_scaled", extrapolate: bool = True, noise_mode: NoiseMode = "bridge",
                         controller: StepSizeController | None = None, h_min: float | None = None,
                         max_steps: int | None = None, t_end: float | None = None, denoise: bool = True,
                         progress: bool = False, callback: Callable[[dict[str, Any]], None] | None = None
                         ) -> SampleResult:
    """Adaptive exponential SDE solver (SEEDS-1/2 embedded pair, Gonzalez et al. 2023 + module docstring), per sample.

    ``eta`` in [0, 1] (1: the reverse SDE, 0: the probability-flow ODE, an adaptive DPM-Solver-12); ``rtol`` /
    ``atol``: delta = max(atol, rtol sigma~_t) per element in VE space; ``h_init``, ``h_min`` in log-SNR units
    (``h_min`` default 1e-5 of the span; a step at the floor is accepted whatever its error); ``controller``: a
    :class:`~.controller.StepSizeController` (default PID as an I controller of order 1 (eta > 0) or 2 (eta = 0));
    ``noise_mode``: "bridge" (retries on the Brownian bridge, unbiased; the default) or "fresh" (redraws);
    ``noise``: the batch's :class:`NoiseSource` (its Brownian side stream drives the paths) or
    :class:`SampleStreams`; unused at eta = 0. Returns nfe (batched calls), nfe_per_sample and in ``info`` the
    accepted / rejected attempts. For a stream of samples in full batches use :func:`adaptive_exponential_stream`.
    """
    streams = None
    if eta > 0:
        if noise is None:
            raise ValueError("a stochastic run (eta > 0) needs a noise source")
        streams = noise.substream(BROWNIAN) if isinstance(noise, NoiseSource) else noise
        if streams.batch_size != x.shape[0] or tuple(streams.shape) != tuple(x.shape[1:]):
            raise ValueError(f"the noise source is for {streams.batch_size} samples of shape {tuple(streams.shape)}, "
                             f"x holds {x.shape[0]} of shape {tuple(x.shape[1:])}")
    indices = list(streams.indices) if streams is not None else (
        list(noise.indices) if noise is not None else list(range(x.shape[0])))
    res = _integrate(model, x, streams, None, x.shape[0], rtol=rtol, atol=atol, eta=eta, h_init=h_init, h_max=h_max,
                     norm=norm,
                     extrapolate=extrapolate, noise_mode=noise_mode, controller=controller, h_min=h_min,
                     max_steps=max_steps, t_end=t_end, denoise=denoise, progress=progress, callback=callback,
                     indices=indices)
    res.samples, res.nfe_per_sample = in_batch_order(res.samples, res.nfe_per_sample, res.info, indices)
    return res


def adaptive_exponential_stream(model: ScoreModel, num: int, seed: int, shape: Sequence[int], batch_size: int = 256,
                                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                                start_index: int = 0, **options: Any) -> SampleResult:
    """``num`` samples of :func:`adaptive_exponential` through ``batch_size`` slots kept full (refilled per sample).

    Sample i uses seed (seed, start_index + i) for its start and its Brownian path, as :func:`~.base.sample` does,
    so the samples equal those of any batch size. ``nfe`` is the batch cost per sample, ceil(total batched calls *
    slots / num) (``info["calls_per_sample"]`` unrounded, ``info["total_calls"]`` the calls), to compare with
    ``nfe_per_sample``.
    """
    options = _with_defaults(options)
    x, first, feed, streams = stream_start(model, num, seed, shape, batch_size, dtype, device, start_index,
                                           brownian=float(options["eta"]) > 0)
    res = _integrate(model, x, streams, feed, num, indices=first, **options)
    # as sample()'s nfe (evaluations per sample path, comparable with a fixed-step sampler's): the batched calls
    # spread over the samples they served; all the batched calls in info["total_calls"]
    res.info["total_calls"] = res.nfe
    res.info["calls_per_sample"] = res.nfe * len(first) / num
    res.nfe = math.ceil(res.info["calls_per_sample"])
    return res


def _with_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed with :func:`adaptive_exponential`'s defaults (defined once, in its signature)."""
    params = inspect.signature(adaptive_exponential).parameters
    keys = {k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY}
    unknown = set(options) - set(keys)
    if unknown:
        raise TypeError(f"adaptive_exponential_stream got unexpected option(s): {', '.join(sorted(unknown))}")
    return {**keys, **options}


adaptive_exponential.stream = adaptive_exponential_stream  # type: ignore[attr-defined]


def sample_adaptive(model: Callable[..., Tensor], x: Tensor, sigmas: Tensor | None = None,
                    extra_args: dict[str, Any] | None = None, callback: Callable[[dict[str, Any]], None] | None = None,
                    disable: bool | None = None, rtol: float = 0.05, atol: float = DEFAULT_ATOL, eta: float = 1.0,
                    seed: int | None = None, **kwargs: Any) -> Tensor:
    """k-diffusion entry point of the adaptive exponential SDE solver (module docstring) on a denoiser D(x, sigma).

    As :func:`~.adaptive.sample_ggf`: the run goes from sigma_max to sigma_min (from ``sigmas`` or the model's
    attributes) on the VE SDE, ending with D(x, sigma_min) when ``sigmas`` ends in 0 or is None; ``seed`` seeds the
    per-sample Brownian paths (random if None); further keywords go to :func:`adaptive_exponential`.
    """
    extra_args = {} if extra_args is None else extra_args
    if sigmas is not None:
        s = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
        pos = s[s > 0]
        if pos.numel() == 0:
            raise ValueError("sigmas must contain a positive noise level")
        sigma_min, sigma_max, final = float(pos.min()), float(pos.max()), bool((s == 0).any())
    else:
        if not (hasattr(model, "sigma_min") and hasattr(model, "sigma_max")):
            raise ValueError("sample_adaptive needs sigmas, or a model with sigma_min and sigma_max attributes")
        sigma_min, sigma_max, final = float(model.sigma_min), float(model.sigma_max), True
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"sample_adaptive needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    sde = VESDE(sigma_min, sigma_max, t_end=0.0)
    wrapped = DenoiserModel(lambda xv, sigma: model(xv, sigma.to(xv.dtype), **extra_args), sde)
    seed = int(torch.randint(0, 2**62, (1,))) if seed is None else int(seed)
    streams = SampleStreams(seed, x.shape[1:], range(x.shape[0]), stream=BROWNIAN, dtype=x.dtype, device=x.device)
    return adaptive_exponential(wrapped, x, streams, rtol=rtol, atol=atol, eta=eta, denoise=final,
                                progress=progress_from_disable(disable), callback=callback, **kwargs).samples
