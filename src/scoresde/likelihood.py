"""Exact likelihoods, bits/dim and encodings through the probability-flow ODE (Song et al. ICLR 2021, §4.3, App. D.2).

Along the probability-flow ODE dx/dt = f~(x, t) = f(x, t) - g(t)^2 score(x, t) / 2 (eq. 13) the
instantaneous change of variables (Chen et al. 2018) gives (Song et al. eq. 39)

    log p_{t_end}(x) = log p_T(x_T) + int_{t_end}^T div f~(x_t, t) dt,      x_{t_end} = x,

integrated from t_end up to T with an adaptive Runge-Kutta solver (dopri5, rtol = atol = 1e-5 as
score_sde_pytorch). ``log p_T`` is the SDE's prior (:meth:`SDE.prior_logp`). The divergence is either exact
(one backward pass per dimension: low dimension only) or the Hutchinson-Skilling estimate
z^T (d f~ / dx) z with Gaussian or Rademacher probes z drawn once per solve. Probe i comes from the
per-sample stream (seed, i) of :class:`scoresde.brownian.NoiseSource`, so a point's probe does not
depend on the batch it is in. The solver's steps are shared by a batch, so a point's log-density
depends on its batch at the level of the tolerance only.

What is computed is the density of the marginal at t = t_end (data plus a tiny noise sigma_{t_end}),
exactly what score_sde_pytorch reports; compare it with a closed form at (alpha_eps, sigma_eps).

Bits per dimension of 8-bit images (k / 255, k = 0..255), uniformly dequantised as
x = (255 x_01 + u) / 256 = (k + u) / 256, u ~ U[0, 1)^D, with the model's density p over
y = s(x) (s the identity for "[0,1]" data, y = 2x - 1 for "[-1,1]" data):

    v = k + u in [0, 256)^D has density p(s(v / 256)) |ds/dx|^D / 256^D, so
    bpd = -log2 p_v / D = -log p(y) / (D ln 2) + log2(256) - log2 |ds/dx|,

an offset of 8 bits for [0, 1] data and 8 - 1 = 7 for data centred to [-1, 1] (|ds/dx| = 2);
this is score_sde_pytorch's ``offset = 7 - inverse_scaler(-1)``. By Jensen, E_u[bpd] upper-bounds the
discrete model's bits/dim. score_sde_pytorch averages over ``repeats`` dequantisation draws; here each
image's bpd is averaged over the repeats and the standard error is taken across images.

Encoding (score_sde_pytorch's "uniquely identifiable encoding"): x at t_end -> latent x_T along the ODE, and
decoding T -> t_end with the ODE sampler (:func:`scoresde.samplers.ode_sample`).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor
from torchdiffeq import odeint

from ._tensor import as_time
from .brownian import NoiseSource
from .parameterization import ScoreModel
from .samplers.base import progress_bar
from .samplers.ode import ode_sample, probability_flow
from .seeding import DEQUANTISATION, HUTCHINSON_PROBES, derive_seed, sample_seed

__all__ = [
    "DIVERGENCES",
    "PROBES",
    "BitsPerDimResult",
    "FlowMapResult",
    "LikelihoodResult",
    "RoundTripResult",
    "bits_per_dim",
    "bits_per_dim_from_logp",
    "bpd_offset",
    "decode",
    "dequantization_noise",
    "dequantize",
    "divergence_exact",
    "divergence_hutchinson",
    "draw_probes",
    "encode",
    "log_likelihood",
    "round_trip",
]

Divergence = Literal["exact", "hutchinson"]
Probe = Literal["gaussian", "rademacher"]
DIVERGENCES: tuple[str, ...] = ("exact", "hutchinson")
PROBES: tuple[str, ...] = ("gaussian", "rademacher")

# ---- divergence --------------------------------------------------------------------------------------
def draw_probes(seed: int, shape: tuple[int, ...], indices: range | list[int], n: int = 1,
                kind: Probe = "rademacher", dtype: torch.dtype = torch.float64,
                device: torch.device | str = "cpu") -> Tensor:
    """Hutchinson probes (batch, n, *shape): row i from the per-sample stream (seed, indices[i]).

    Gaussian probes are N(0, I); Rademacher probes are the signs of the same normals (+-1 with
    probability 1/2 each). Both have E[z z^T] = I.
    """
    if kind not in PROBES:
        raise ValueError(f"unknown probe {kind!r}; expected one of {', '.join(PROBES)}")
    if int(n) < 1:
        raise ValueError(f"the number of probes must be >= 1, got {n}")
    z = NoiseSource(seed, (int(n),) + tuple(shape), indices, dtype=dtype, device=device).draw()
    if kind == "rademacher":
        z = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
    return z


def divergence_exact(v: Tensor, x: Tensor, chunk_elements: int = 1 << 22) -> Tensor:
    """sum_i d v_i / d x_i per sample: one backward pass per dimension (batched over dimensions).

    ``v`` must be computed from ``x`` (requires_grad) with samples independent of each other. The
    d one-hot vector-Jacobian products are vmapped in chunks of ``chunk_elements`` values; a model
    that vmap cannot batch falls back to one backward pass at a time.
    """
    b = x.shape[0]
    d = x[0].numel()
    div = torch.zeros(b, dtype=v.dtype, device=v.device)
    chunk = max(1, min(d, chunk_elements // max(1, b * d)))
    lo = 0
    while lo < d:
        idx = torch.arange(lo, min(lo + chunk, d), device=v.device)
        c = idx.numel()
        go = torch.zeros(c, b, d, dtype=v.dtype, device=v.device)
        go[torch.arange(c), :, idx] = 1
        try:
            if c > 1:
                (g,) = torch.autograd.grad(v, x, go.reshape((c, *v.shape)), retain_graph=True, is_grads_batched=True)
            else:
                (g,) = torch.autograd.grad(v, x, go.reshape(v.shape), retain_graph=True)
        except (RuntimeError, TypeError, NotImplementedError):
            if chunk == 1:
                raise
            chunk = 1  # an operation without a batching rule: one backward pass per dimension
            continue
        div = div + g.reshape(c, b, d)[torch.arange(c), :, idx].sum(0)
        lo += c
    return div


def divergence_hutchinson(v: Tensor, x: Tensor, z: Tensor) -> Tensor:
    """Hutchinson-Skilling estimate mean_k z_k^T (dv/dx) z_k per sample; z has shape (batch, n, *x.shape[1:])."""
    b, n = z.shape[0], z.shape[1]
    est = torch.zeros(b, dtype=v.dtype, device=v.device)
    for k in range(n):
        zk = z[:, k]
        (g,) = torch.autograd.grad(v, x, zk, retain_graph=True)
        est = est + (g * zk).reshape(b, -1).sum(-1)
    return est / n


# ---- log-likelihood -----------------------------------------------------------------------------------
@dataclass
class LikelihoodResult:
    """Per-point log p_eps(x) (nats) = prior_logp(latent) + delta_logp, with the solver's cost.

    ``nfe`` is the number of model (score) evaluations of the costliest batch (what one point's
    solve took); ``info`` holds ``total_calls`` (all batched model calls), ``backward_passes``
    (vector-Jacobian products spent on divergences) and ``wall_s``.
    """

    logp: Tensor
    prior_logp: Tensor
    delta_logp: Tensor
    latent: Tensor
    nfe: int
    info: dict[str, Any] = field(default_factory=dict)


def _check_data(x: Tensor, what: str = "x") -> None:
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{what} must be a tensor of shape (N, *data_shape) with N >= 1")
    if not x.is_floating_point():
        raise ValueError(f"{what} must hold floating-point values, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} holds non-finite values")


def _check_tol(rtol: float, atol: float) -> None:
    if not (rtol > 0 and atol > 0 and math.isfinite(rtol) and math.isfinite(atol)):
        raise ValueError(f"rtol and atol must be finite and > 0, got {rtol}, {atol}")


def _end_time(model: ScoreModel, t_end: float | None) -> float:
    t_end = 1e-5 if t_end is None else float(t_end)
    if not 0 < t_end < model.sde.T:
        raise ValueError(f"t_end must lie in (0, T={model.sde.T}), got {t_end}")
    return t_end


def _solve_up(f: Callable[[Tensor, Tensor], Tensor], y0: Tensor, t_end: float, T: float, rtol: float,
              atol: float) -> Tensor:
    """dopri5 from t_end to T, landing on T (never evaluating outside [t_end, T])."""
    ts = torch.tensor([t_end, T], dtype=torch.float64, device=y0.device)
    opts = {"step_t": ts[1:], "first_step": 0.01 * (T - t_end)}
    return odeint(f, y0, ts, rtol=rtol, atol=atol, method="dopri5", options=opts)[-1]


def _likelihood_batch(model: ScoreModel, x: Tensor, t_end: float, rtol: float, atol: float, divergence: str,
                      probes: Tensor | None, prior_logp: Callable[[Tensor], Tensor]) -> tuple[Tensor, ...]:
    b, shape = x.shape[0], tuple(x.shape)
    d = x[0].numel()
    counts = {"backward": 0}

    def f(t: Tensor, state: Tensor) -> Tensor:
        xt = state[:, :d].reshape(shape).detach().requires_grad_(True)
        tt = as_time(t.detach().double(), xt)
        with torch.enable_grad():
            v = model.sde.probability_flow_drift(xt, tt, model.score(xt, tt))
            if divergence == "exact":
                div = divergence_exact(v, xt)
                counts["backward"] += d
            else:
                div = divergence_hutchinson(v, xt, probes)
                counts["backward"] += probes.shape[1]
        return torch.cat([v.detach().reshape(b, d), div.detach().to(state.dtype)[:, None]], 1)

    y0 = torch.cat([x.reshape(b, d), torch.zeros(b, 1, dtype=x.dtype, device=x.device)], 1)
    yT = _solve_up(f, y0, t_end, model.sde.T, rtol, atol)
    z = yT[:, :d].reshape(shape)
    delta = yT[:, d].double()
    prior = prior_logp(z).double()
    return prior + delta, prior, delta, z, counts["backward"]


def log_likelihood(model: ScoreModel, x: Tensor, *, divergence: Divergence = "exact", probe: Probe = "rademacher",
                   probes: int = 1, rtol: float = 1e-5, atol: float = 1e-5, t_end: float | None = None,
                   seed: int = 0, start_index: int = 0, batch_size: int | None = None,
                   prior_logp: Callable[[Tensor], Tensor] | None = None, progress: bool = False) -> LikelihoodResult:
    """log p_eps(x) in nats through the probability-flow ODE (Song et al. 2021, eq. 39), batched.

    ``t_end`` defaults to 1e-5 (score_sde_pytorch's likelihood end time for every SDE). ``divergence`` "exact"
    costs one backward pass per dimension and function evaluation; "hutchinson" costs ``probes``.
    Point i (counted from ``start_index``) draws its probes from the stream (seed, i).
    ``prior_logp`` replaces the SDE's prior density at T (e.g. an exact marginal, for tests).
    """
    _check_data(x)
    _check_tol(rtol, atol)
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; expected one of {', '.join(DIVERGENCES)}")
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; expected one of {', '.join(PROBES)}")
    if int(probes) < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    t_end = _end_time(model, t_end)
    n = x.shape[0]
    batch_size = n if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prior_logp = model.sde.prior_logp if prior_logp is None else prior_logp
    probe_seed = derive_seed(seed, HUTCHINSON_PROBES)
    outs: list[tuple[Tensor, ...]] = []
    batch_nfe, backward = [], 0
    t0 = time.perf_counter()
    with progress_bar(n, progress, f"log-likelihood ({divergence})") as bar:
        for lo in range(0, n, batch_size):
            xb = x[lo:lo + batch_size]
            idx = range(start_index + lo, start_index + lo + xb.shape[0])
            z = (draw_probes(probe_seed, tuple(x.shape[1:]), idx, probes, probe, x.dtype, x.device)
                 if divergence == "hutchinson" else None)
            before = model.nfe
            logp, prior, delta, lat, bw = _likelihood_batch(model, xb, t_end, rtol, atol, divergence, z, prior_logp)
            batch_nfe.append(model.nfe - before)
            backward += bw
            outs.append((logp, prior, delta, lat))
            bar.update(xb.shape[0])
            bar.set_postfix(nfe=batch_nfe[-1])
    wall = time.perf_counter() - t0
    logp, prior, delta, lat = (torch.cat(parts) for parts in zip(*outs))
    info = {"total_calls": sum(batch_nfe), "batch_nfe": batch_nfe, "backward_passes": backward, "wall_s": wall,
            "t_end": t_end, "divergence": divergence, "probe": probe if divergence == "hutchinson" else None,
            "probes": int(probes) if divergence == "hutchinson" else 0, "rtol": rtol, "atol": atol}
    return LikelihoodResult(logp, prior, delta, lat, max(batch_nfe), info)


# ---- bits per dimension ---------------------------------------------------------------------------------
_RANGE_LOG2_SCALE = {"[0,1]": 0.0, "[-1,1]": 1.0}  # log2 |ds/dx| of the map from [0,1] to the model's range


def _range(data_range: str) -> str:
    r = data_range.replace(" ", "")
    if r not in _RANGE_LOG2_SCALE:
        raise ValueError(f"unknown data range {data_range!r}: use '[0,1]' or '[-1,1]'")
    return r


def dequantize(x01: Tensor, u: Tensor) -> Tensor:
    """Uniform dequantisation of 8-bit images: (255 x_01 + u) / 256 with u in [0, 1)."""
    return (255.0 * x01 + u) / 256.0


def bpd_offset(data_range: str = "[-1,1]") -> float:
    """log2(256) - log2|ds/dx|: 8 for a model of [0, 1] data, 7 for data centred to [-1, 1]."""
    return 8.0 - _RANGE_LOG2_SCALE[_range(data_range)]


def bits_per_dim_from_logp(logp: Tensor, dim: int, data_range: str = "[-1,1]") -> Tensor:
    """bpd = -log p(y) / (D ln 2) + offset, for log p in nats over the model's data range."""
    return -logp.double() / (dim * math.log(2.0)) + bpd_offset(data_range)


def dequantization_noise(seed: int, repeat: int, shape: tuple[int, ...], indices: range | list[int],
                         dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
    """u ~ U[0, 1)^shape per image (batch, *shape): image i of repeat r from its own stream (seed, r, i)."""
    run_seed = derive_seed(seed, DEQUANTISATION, repeat)
    rows = [torch.rand(tuple(shape), generator=torch.Generator().manual_seed(sample_seed(run_seed, i)),
                       dtype=torch.float64) for i in indices]
    return torch.stack(rows).to(device=device, dtype=dtype)


@dataclass
class BitsPerDimResult:
    """bpd averaged over images and dequantisation repeats, with the standard error across images.

    ``bpd`` has shape (repeats, N); ``nfe`` is the costliest batch's model evaluations.
    """

    mean: float
    stderr: float
    bpd: Tensor
    nfe: int
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        r, n = self.bpd.shape
        return (f"{self.mean:.4f} +- {self.stderr:.4f} bits/dim ({n} images x {r} dequantisation repeats, "
                f"NFE {self.nfe}, {self.info.get('wall_s', float('nan')):.1f} s)")


def bits_per_dim(model: ScoreModel, images01: Tensor, *, data_range: str = "[-1,1]", repeats: int = 1,
                 seed: int = 0, start_index: int = 0, progress: bool = False, **likelihood_kw: Any) -> BitsPerDimResult:
    """Bits/dim of 8-bit images in [0, 1] under ``model`` (Song et al. 2021, App. D.2; offsets in the module doc).

    Each repeat r draws fresh dequantisation noise u (image i from the stream (seed, r, i)) and fresh
    probes. ``likelihood_kw`` go to :func:`log_likelihood`.
    """
    _check_data(images01, "images")
    if images01.min() < 0 or images01.max() > 1:
        raise ValueError("images must lie in [0, 1] (pixel values k / 255)")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = _range(data_range)
    n, d = images01.shape[0], images01[0].numel()
    rows, nfe, calls, backward, wall = [], 0, 0, 0, 0.0
    for r in range(int(repeats)):
        idx = range(start_index, start_index + n)
        u = dequantization_noise(seed, r, tuple(images01.shape[1:]), idx, images01.dtype, images01.device)
        x = dequantize(images01, u)
        y = 2 * x - 1 if rng == "[-1,1]" else x
        res = log_likelihood(model, y, seed=derive_seed(seed, HUTCHINSON_PROBES, r), start_index=start_index,
                             progress=progress, **likelihood_kw)
        rows.append(bits_per_dim_from_logp(res.logp, d, rng))
        nfe = max(nfe, res.nfe)
        calls += res.info["total_calls"]
        backward += res.info["backward_passes"]
        wall += res.info["wall_s"]
    bpd = torch.stack(rows)
    per_image = bpd.mean(0)
    stderr = float(per_image.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    info = {"total_calls": calls, "backward_passes": backward, "wall_s": wall, "data_range": rng,
            "offset": bpd_offset(rng), "dim": d}
    return BitsPerDimResult(float(per_image.mean()), stderr, bpd, nfe, info)


# ---- encoding / decoding --------------------------------------------------------------------------------
@dataclass
class FlowMapResult:
    """The end point of the probability-flow ODE map (latent x_T for encode, data x_eps for decode)."""

    out: Tensor
    nfe: int
    info: dict[str, Any] = field(default_factory=dict)


def encode(model: ScoreModel, x: Tensor, *, rtol: float = 1e-5, atol: float = 1e-5,
           t_end: float | None = None) -> FlowMapResult:
    """Data at t_end -> latent at T along the probability-flow ODE (Song et al. 2021, §4.3: identifiable encoding)."""
    _check_data(x)
    _check_tol(rtol, atol)
    t_end = _end_time(model, t_end)
    start, t0 = model.nfe, time.perf_counter()
    with torch.no_grad():
        z = _solve_up(probability_flow(model), x, t_end, model.sde.T, rtol, atol)
    return FlowMapResult(z, model.nfe - start, {"wall_s": time.perf_counter() - t0, "t_end": t_end})


def decode(model: ScoreModel, z: Tensor, *, rtol: float = 1e-5, atol: float = 1e-5,
           t_end: float | None = None) -> FlowMapResult:
    """Latent at T -> data at t_end: the probability-flow ODE sampler (dopri5) without a final denoise."""
    _check_data(z, "latent")
    _check_tol(rtol, atol)
    t_end = _end_time(model, t_end)
    t0 = time.perf_counter()
    res = ode_sample(model, z, None, method="dopri5", rtol=rtol, atol=atol, t_end=t_end)
    return FlowMapResult(res.samples, res.nfe, {"wall_s": time.perf_counter() - t0, "t_end": t_end})


@dataclass
class RoundTripResult:
    """encode then decode: latents, reconstructions, and the per-point max-abs round-trip error."""

    latent: Tensor
    reconstruction: Tensor
    error: Tensor
    nfe_encode: int
    nfe_decode: int
    info: dict[str, Any] = field(default_factory=dict)


def round_trip(model: ScoreModel, x: Tensor, *, rtol: float = 1e-5, atol: float = 1e-5,
               t_end: float | None = None, batch_size: int | None = None, progress: bool = False) -> RoundTripResult:
    """Encode x to T and decode back to t_end; ``error`` is max_i |x_i - decode(encode(x))_i| per point."""
    _check_data(x)
    n = x.shape[0]
    batch_size = n if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lats, recs, ne, nd, t0 = [], [], 0, 0, time.perf_counter()
    with progress_bar(n, progress, "encode/decode") as bar:
        for lo in range(0, n, batch_size):
            xb = x[lo:lo + batch_size]
            enc = encode(model, xb, rtol=rtol, atol=atol, t_end=t_end)
            dec = decode(model, enc.out, rtol=rtol, atol=atol, t_end=t_end)
            lats.append(enc.out)
            recs.append(dec.out)
            ne, nd = max(ne, enc.nfe), max(nd, dec.nfe)
            bar.update(xb.shape[0])
    lat, rec = torch.cat(lats), torch.cat(recs)
    err = (rec - x).reshape(n, -1).abs().amax(-1)
    return RoundTripResult(lat, rec, err, ne, nd, {"wall_s": time.perf_counter() - t0})
