"""Gotta Go Fast: the adaptive reverse-SDE solver of Jolicoeur-Martineau et al. (2021), per sample.

Each sample keeps its own time t and step size h. One attempt from t to t - h, with the reverse
drift b(x, t) = f(x, t) - g(t)^2 score(x, t) and the Brownian increment W over [t - h, t]:

    K1 = -h b(x, t) + g(t) W,            x' = x + K1                  (Euler-Maruyama)
    K2 = -h b(x', t - h) + g(t - h) W,   x'' = x + (K1 + K2) / 2      (stochastic improved Euler)
    delta = max(atol, rtol max(|x'|, |x_prev|)),  E = ||(x'' - x') / delta||

(both stages share W: the same Brownian increment). Accept iff E <= 1: x <- x'' (extrapolation;
x' without it), t <- t - h, x_prev <- x'. Then h <- min(t - t_end, theta h E^(-r)) (or any
:mod:`~scoresde.samplers.controller`). At the end a Tweedie step x <- (x + sigma_eps^2 score)/alpha_eps.

The Brownian increments come from :class:`~scoresde.brownian.BrownianPath`. In ``"bridge"`` mode a
retry after a rejection reuses the increment already drawn through the Brownian bridge, so the
accept/reject decisions cannot bias the driving noise; ``"fresh"`` mode redraws it, as the
paper's code does, which biases the samples (measured in benchmarks/ggf_bias.py).

NFE, counted honestly: every attempt makes two batched model calls over the samples still
integrating (finished samples are not evaluated); each batched call is one NFE of ``nfe``, and
``nfe_per_sample`` counts the calls each sample took part in (2 per attempt, rejections included).
The final denoise is one more model call, counted in both (``info["denoise_nfe"]``).
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from .._tensor import like
from ..brownian import NOISE_MODES, BrownianPath, NoiseMode, NoiseSource, SampleStreams
from ..parameterization import DenoiserModel, ScoreModel
from ..sde import VESDE
from ..seeding import BROWNIAN
from .base import SampleResult, callback_state, progress_bar, progress_from_disable
from .controller import ControllerState, GGFController, StepSizeController
from .slots import Feed, Slots, in_batch_order, stream_start

__all__ = ["ERROR_NORMS", "TOLERANCES", "error_norm", "ggf_sample", "ggf_stream", "sample_ggf"]

Norm = Literal["l2_scaled", "l2", "linf"]
ERROR_NORMS: tuple[str, ...] = ("l2_scaled", "l2", "linf")
Tolerance = Literal["mixed", "noise"]
#: "mixed": GGF's delta = max(atol, rtol max(|x'|, |x_prev|)) in data units; "noise": delta = max(alpha_t atol,
#: rtol sigma_t), relative to the noise level at the step's end (the adaptive exponential solver's rule)
TOLERANCES: tuple[str, ...] = ("mixed", "noise")
#: GGF's absolute tolerance for data in [-1, 1] (one 8-bit level, 2/255); use 0.0039 for [0, 1]
DEFAULT_ATOL = 0.0078
#: step sizes live on a grid of this spacing. Why: torch's vectorised exp/pow/sqrt round a value differently
#: (by an ulp) depending on its lane in a SIMD register, i.e. on the batch around it; an unrounded step size
#: would carry that ulp into the times and the Brownian bridge, where it grows into visibly different samples
#: for different batch sizes. On the grid (2^-32 ~ 2.3e-10, far below any useful step) an ulp of noise in the
#: controller's proposal rounds away (+, -, *, / and sqrt are correctly rounded in every lane; exp and pow are not).
_H_GRID = 2.0**-32
_SNAP = 4 * _H_GRID  # steps ending within this of t_end end exactly on it


def _on_grid(h: Tensor, floor: float) -> Tensor:
    """Step sizes rounded to the grid; 0 (finished) and the floor h_min (a forced step) stay as they are."""
    keep = (h <= 0) | (h <= floor * (1 + 1e-12))
    return torch.where(keep, h, (torch.round(h / _H_GRID) * _H_GRID).clamp_min(floor))


def error_norm(e: Tensor, norm: Norm = "l2_scaled") -> Tensor:
    """Per-sample norm of a scaled error: l2 / sqrt(#elements) (GGF's E_2), l2, or max-abs."""
    flat = e.reshape(e.shape[0], -1).double()
    if norm == "l2_scaled":
        return flat.pow(2).mean(-1).sqrt() if flat.shape[1] else flat.new_zeros(flat.shape[0])
    if norm == "l2":
        return flat.norm(dim=-1)
    if norm == "linf":
        return flat.abs().amax(-1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    raise ValueError(f"unknown error norm {norm!r}; expected one of {', '.join(ERROR_NORMS)}")


def _check_positive(name: str, value: float, allow_zero: bool = False, allow_inf: bool = False) -> float:
    value = float(value)
    ok = (value >= 0 if allow_zero else value > 0) and (math.isfinite(value) or (allow_inf and value == math.inf))
    if not ok:
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {value}")
    return value


def ggf_sample(model: ScoreModel, x: Tensor, noise: NoiseSource | SampleStreams, *, rtol: float = 0.05,
               atol: float | None = None, h_init: float = 0.01, norm: Norm = "l2_scaled", extrapolate: bool = True,
               drift_error_only: bool = False, noise_mode: NoiseMode = "bridge", tolerance: Tolerance = "mixed",
               controller: StepSizeController | None = None, factor_max: float | None = 10.0,
               h_min: float | None = None, max_steps: int | None = None, t_end: float | None = None,
               denoise: bool = True, progress: bool = False,
               callback: Callable[[dict[str, Any]], None] | None = None) -> SampleResult:
    """Adaptive SDE solver of Gotta Go Fast (Jolicoeur-Martineau et al. 2021, Algorithm 1), from x_T at T to t_end.

    ``rtol``/``atol``: the mixed tolerance delta = max(atol, rtol max(|x'|, |x_prev|)) (atol defaults
    to 0.0078, one 8-bit level of data in [-1, 1]); ``norm``: "l2_scaled" (GGF's E_2), "l2" or "linf".
    ``extrapolate``: continue from the improved-Euler x'' (True) or the Euler-Maruyama x'.
    ``drift_error_only``: Lamba's (2003) error estimate - the improved-Euler stage keeps the EM noise g(t) W,
    so x'' - x' = -h (b(x', t - h) - b(x, t)) / 2 measures the drift only.
    ``noise_mode``: "bridge" (unbiased retries, the default) or "fresh" (the paper's redraw).
    ``controller``: a :class:`~.controller.StepSizeController` (default GGF theta = r = 0.9, its
    growth per attempt capped at ``factor_max``; None is the paper's unbounded rule, which lets a
    lucky small error estimate license a huge step - measured on sharp Gaussian data, sub-VP,
    rtol 0.05: variance error 146% unbounded, 1.5% capped at 10, same NFE).
    The controller is not changed by a run: its state (``controller.init`` / ``propose``) lives in the run.
    ``h_min`` (default 1e-5 (T - t_end)): floor of h (the larger of it and the controller's own ``h_min``);
    a step at the floor is accepted whatever its error.
    ``max_steps`` (default 2 (T - t_end) / h_min + 1000): most attempts a sample may make; beyond it
    the run stops with an error. ``callback(state)`` is called after every attempt i with
    :func:`~.base.callback_state`'s keys for the whole batch (x and t before the attempt, ``denoised``
    None) and the extras ``x_next``, ``t_next`` (the batch after it), ``h`` (the next step sizes),
    ``accepted`` (mask over ``rows``), ``rows`` (the samples attempted) and ``error`` (their error estimates).

    ``noise`` gives each sample's Brownian path through its per-sample side stream (a
    :class:`NoiseSource`, or :class:`SampleStreams` directly), so sample i's result does not
    depend on its batch. Returns nfe (batched model calls), nfe_per_sample and in ``info`` the
    accepted / rejected attempts (totals and per sample).
    """
    opts = _checked(model, x.shape[0], rtol=rtol, atol=atol, h_init=h_init, norm=norm, extrapolate=extrapolate,
                    drift_error_only=drift_error_only, noise_mode=noise_mode, tolerance=tolerance, controller=controller,
                    factor_max=factor_max, h_min=h_min, max_steps=max_steps, t_end=t_end, denoise=denoise,
                    progress=progress, callback=callback)
    n = x.shape[0]
    streams = noise.substream(BROWNIAN) if isinstance(noise, NoiseSource) else noise
    if streams.batch_size != n or tuple(streams.shape) != tuple(x.shape[1:]):
        raise ValueError(f"the noise source is for {streams.batch_size} samples of shape {tuple(streams.shape)}, "
                         f"x holds {n} of shape {tuple(x.shape[1:])}")
    indices = list(streams.indices)
    res = _integrate(model, x, streams, None, n, indices, **opts)
    res.samples, res.nfe_per_sample = in_batch_order(res.samples, res.nfe_per_sample, res.info, indices)
    return res


def _checked(model: ScoreModel, n: int, *, rtol: float, atol: float | None, h_init: float, norm: str,
             extrapolate: bool, drift_error_only: bool, noise_mode: str, tolerance: str,
             controller: StepSizeController | None, factor_max: float | None, h_min: float | None,
             max_steps: int | None, t_end: float | None, denoise: bool, progress: bool,
             callback: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """:func:`ggf_sample`'s options validated and completed (the loop's keyword arguments, controller state included)."""
    sde = model.sde
    t_end = float(sde.t_end if t_end is None else t_end)
    T = float(sde.T)
    if not 0 <= t_end < T:
        raise ValueError(f"t_end must lie in [0, T={T}), got {t_end}")
    rtol = _check_positive("rtol", rtol, allow_zero=True)
    atol = _check_positive("atol", DEFAULT_ATOL if atol is None else atol, allow_zero=True)
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol cannot both be 0")
    h_init = _check_positive("h_init", h_init)
    if norm not in ERROR_NORMS:
        raise ValueError(f"unknown error norm {norm!r}; expected one of {', '.join(ERROR_NORMS)}")
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"unknown noise mode {noise_mode!r}; expected one of {', '.join(NOISE_MODES)}")
    if tolerance not in TOLERANCES:
        raise ValueError(f"unknown tolerance {tolerance!r}; expected one of {', '.join(TOLERANCES)}")
    span = T - t_end
    h_min = 1e-5 * span if h_min is None else _check_positive("h_min", h_min)
    if controller is None:
        controller = GGFController(factor_max=factor_max)
    ctrl = controller.init(n, h_min=h_min)
    max_steps = int(2 * span / ctrl.h_min + 1000) if max_steps is None and ctrl.h_min > 0 else max_steps
    if max_steps is None or int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    return {"controller": controller, "ctrl": ctrl, "rtol": rtol, "atol": atol, "h_init": h_init, "norm": norm,
            "extrapolate": extrapolate, "drift_error_only": drift_error_only, "noise_mode": noise_mode,
            "tolerance": tolerance, "max_steps": int(max_steps), "t_end": t_end, "denoise": denoise,
            "progress": progress, "callback": callback}


def _integrate(model: ScoreModel, x: Tensor, streams: SampleStreams, feed: Feed | None, total: int,
               indices: list[int], *, controller: StepSizeController, ctrl: ControllerState, rtol: float, atol: float,
               h_init: float, norm: Norm, extrapolate: bool, drift_error_only: bool, noise_mode: NoiseMode,
               tolerance: Tolerance, max_steps: int, t_end: float, denoise: bool, progress: bool,
               callback: Callable[[dict[str, Any]], None] | None) -> SampleResult:
    """GGF's loop over the slots of a batch; with a feed, a finished slot takes the next sample at once."""
    sde = model.sde
    T = float(sde.T)
    span = T - t_end
    n = x.shape[0]
    path = BrownianPath(streams, noise_mode)
    slots = Slots(indices, feed, streams, path, controller)
    accepted, rejected, live = slots.accepted, slots.rejected, slots.live
    h0 = _on_grid(torch.tensor([min(max(h_init, ctrl.h_min), span)], dtype=torch.float64), ctrl.h_min)

    start = model.nfe
    x = x.clone()
    x_prev = x.clone()
    t = torch.full((n,), T, dtype=torch.float64)
    h = h0.expand(n).clone()
    waiting: list[tuple[int, Tensor, tuple[int, int, int]]] = []  # finished, awaiting the final denoise
    iteration = 0

    def denoise_waiting() -> None:
        xs = torch.stack([w[1] for w in waiting])
        d = model.denoised(xs, torch.full((len(waiting),), t_end, dtype=torch.float64))
        for j, (idx, _, (c, a_, r)) in enumerate(waiting):
            slots.store(idx, d[j], (c + 1, a_, r))
        waiting.clear()

    with torch.no_grad(), progress_bar(total, progress, f"ggf ({noise_mode})") as bar:
        while bool(live.any()):
            iteration += 1
            rows = live.nonzero().squeeze(1)
            if int((accepted[rows] + rejected[rows]).max()) >= max_steps:
                left = int(((accepted + rejected >= max_steps) & live).sum())
                raise RuntimeError(f"ggf_sample: {left} sample(s) made max_steps={max_steps} attempts above "
                                   f"t_end={t_end:g} (smallest t {float(t[rows].min()):.3g}); raise max_steps or h_min, "
                                   "or loosen rtol/atol")
            xa, ta, ha = x[rows], t[rows], h[rows]
            remaining = ta - t_end
            # a step within rounding of the end goes to the end (no sliver steps left by t - h)
            last = ha >= remaining - _SNAP
            ha = torch.where(last, remaining, ha)
            t_next = torch.where(last, torch.full_like(ta, t_end), ta - ha)
            w = path.increment(rows, ha).to(device=x.device, dtype=x.dtype)
            hx = like(ha, xa)
            g_t = like(sde.diffusion(ta), xa)
            k1 = -hx * sde.reverse_drift(xa, ta, model.score(xa, ta)) + g_t * w
            x1 = xa + k1
            g2 = g_t if drift_error_only else like(sde.diffusion(t_next), xa)
            k2 = -hx * sde.reverse_drift(x1, t_next, model.score(x1, t_next)) + g2 * w
            x2 = xa + 0.5 * (k1 + k2)
            if tolerance == "noise":
                a_n, s_n = sde.marginal(t_next)
                delta = like(torch.maximum(atol * a_n, rtol * s_n), xa)
            else:
                delta = (torch.maximum(x1.abs(), x_prev[rows].abs()) * rtol).clamp_min(atol)
            error = error_norm((x2 - x1) / delta, norm).cpu()
            ok, h_new, ctrl = controller.propose(ctrl, error, ha, remaining, rows)
            slots.calls[rows] += 2
            acc_rows = rows[ok]
            ok_x = ok.to(x.device)
            if callback is not None:  # the batch before the attempt, kept as it is for the callback
                x_before, t_before = x.clone(), t.clone()
            x_new = x2[ok_x] if extrapolate else x1[ok_x]
            if not bool(torch.isfinite(x_new).all()):
                raise FloatingPointError(f"ggf_sample: a non-finite state was accepted at t={float(ta[ok].max()):.3g} "
                                         "(the model returned inf/nan?)")
            x[acc_rows] = x_new
            x_prev[acc_rows] = x1[ok_x]
            t[acc_rows] = t_next[ok]
            path.advance(acc_rows, ha[ok], w[ok_x])
            accepted[acc_rows] += 1
            rejected[rows[~ok]] += 1
            h[rows] = _on_grid(h_new, ctrl.h_min)
            if callback is not None:
                callback(callback_state(iteration - 1, x_before, t_before, sde, None, x_next=x.clone(),
                                        t_next=t.clone(), h=h.clone(), accepted=ok, rows=rows, error=error,
                                        samples=list(slots.index)))
            for row in acc_rows[last[ok]].tolist():
                nxt, ctrl, (idx, done) = slots.finish(row, None if denoise else x[row].clone(), ctrl)
                if denoise:
                    waiting.append((idx, x[row].clone(), done))
                if nxt is not None:
                    x[row] = x_prev[row] = nxt[1].to(x)
                    t[row], h[row] = T, h0[0]
            # the final denoises in batches as full as the run's (one batched call for n finished samples)
            if denoise and waiting and (len(waiting) >= n or not bool(live.any())):
                denoise_waiting()
            bar.update(len(slots.out) - bar.n)
    samples, per, info = slots.result(x)
    info.update({"iterations": iteration, "denoise_nfe": int(denoise), "noise_mode": noise_mode, "rtol": rtol,
                 "atol": atol, "norm": norm, "tolerance": tolerance, "slots": n})
    return SampleResult(samples, model.nfe - start, per, info)


def ggf_stream(model: ScoreModel, num: int, seed: int, shape: Sequence[int], batch_size: int = 256,
               dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", start_index: int = 0,
               **options: Any) -> SampleResult:
    """``num`` samples of :func:`ggf_sample` through ``batch_size`` slots kept full (refilled per sample).

    As :func:`~.adaptive_exponential.adaptive_exponential_stream`: sample i is seeded by (seed, start_index + i) alone,
    so the samples equal those of any batch size; ``nfe`` is ceil(total batched calls * slots / num).
    """
    params = inspect.signature(ggf_sample).parameters
    keys = {k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY}
    unknown = set(options) - set(keys)
    if unknown:
        raise TypeError(f"ggf_stream got unexpected option(s): {', '.join(sorted(unknown))}")
    x, first, feed, streams = stream_start(model, num, seed, shape, batch_size, dtype, device, start_index,
                                           brownian=True)
    res = _integrate(model, x, streams, feed, num, first, **_checked(model, x.shape[0], **{**keys, **options}))
    res.info["total_calls"] = res.nfe
    res.info["calls_per_sample"] = res.nfe * len(first) / num
    res.nfe = math.ceil(res.info["calls_per_sample"])
    return res


ggf_sample.stream = ggf_stream  # type: ignore[attr-defined]

def sample_ggf(model: Callable[..., Tensor], x: Tensor, sigmas: Tensor | None = None,
               extra_args: dict[str, Any] | None = None, callback: Callable[[dict[str, Any]], None] | None = None,
               disable: bool | None = None, rtol: float = 0.05, atol: float = DEFAULT_ATOL, h_init: float = 0.01,
               norm: Norm = "l2_scaled", noise_mode: NoiseMode = "bridge", seed: int | None = None,
               **kwargs: Any) -> Tensor:
    """k-diffusion entry point for Gotta Go Fast (Jolicoeur-Martineau et al. 2021) on a denoiser D(x, sigma).

    ``model(x, sigma, **extra_args)`` is a k-diffusion denoiser in VE space; x is the start at
    sigma_max (noise * sigma_max). The solver runs on the VE SDE sigma(t) = sigma_min
    (sigma_max/sigma_min)^t from t = 1 to t = 0; ``sigmas`` only give sigma_max (the largest) and
    sigma_min (the smallest positive) - without them, ``model.sigma_min`` / ``model.sigma_max``.
    If ``sigmas`` ends in 0 (or is None) the result is the final denoise D(x, sigma_min), as
    k-diffusion's samplers end. ``callback`` gets :func:`ggf_sample`'s callback keys after every
    attempt: the standard "x", "i", "t", "sigma", "sigma_hat" (per sample), "denoised" (None) and GGF's
    extras; ``disable`` hides the progress bar (None: shown on a terminal only). ``seed`` seeds the
    per-sample Brownian paths (random if None). Further keywords go to :func:`ggf_sample`.
    """
    extra_args = {} if extra_args is None else extra_args
    if sigmas is not None:
        s = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
        pos = s[s > 0]
        if pos.numel() == 0:
            raise ValueError("sigmas must contain a positive noise level")
        sigma_min, sigma_max = float(pos.min()), float(pos.max())
        final_denoise = bool((s == 0).any())
    else:
        if not (hasattr(model, "sigma_min") and hasattr(model, "sigma_max")):
            raise ValueError("sample_ggf needs sigmas, or a model with sigma_min and sigma_max attributes")
        sigma_min, sigma_max = float(model.sigma_min), float(model.sigma_max)
        final_denoise = True
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"sample_ggf needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    sde = VESDE(sigma_min, sigma_max, t_end=0.0)
    wrapped = DenoiserModel(model, sde, extra_args)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    streams = SampleStreams(seed, x.shape[1:], range(x.shape[0]), stream=BROWNIAN, dtype=x.dtype,
                            device=x.device)

    res = ggf_sample(wrapped, x, streams, rtol=rtol, atol=atol, h_init=h_init, norm=norm, noise_mode=noise_mode,
                     denoise=final_denoise, progress=progress_from_disable(disable), callback=callback, **kwargs)
    return res.samples
