"""The sampler contract: what every sampler returns, what its callback sees, its progress bar, and the batch loop.

Every sampler ``sampler(model, x_T, noise, **options) -> SampleResult``:

* runs under ``torch.no_grad()`` (no autograd history, whoever calls it);
* counts NFE through the model (:attr:`ScoreModel.nfe`), never by itself;
* ``denoise=True`` means one thing everywhere: a final Tweedie step x <- D(x, t_end), one more NFE;
* ``callback(state)`` (optional) receives :func:`callback_state`'s keys after every step or attempt:
  ``i`` (step / attempt index), ``x`` (the state before the step), ``t``, ``sigma`` (VE sigma at t),
  ``sigma_hat`` (the noise level the model was evaluated at: EDM's churned level, else sigma),
  ``denoised`` (D(x) at that level, or None where the step never forms it), plus sampler-specific extras;
* ``progress=True`` shows one tqdm bar on stderr (steps for fixed-step samplers, time for adaptive ones);
  library calls default to no bar, the CLI turns it on, k-diffusion-style ``disable=None`` shows it on a tty.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..brownian import NoiseSource
from ..parameterization import ScoreModel

__all__ = ["SampleResult", "callback_state", "progress_bar", "progress_from_disable", "sample"]


@dataclass
class SampleResult:
    """Samples and the exact number of function (network) evaluations spent on them.

    ``nfe`` counts batched calls of the model; ``nfe_per_sample`` (when a sampler steps samples
    individually) counts the evaluations each sample took part in.
    """

    samples: Tensor
    nfe: int
    nfe_per_sample: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


def progress_bar(total: int | None, enabled: bool, desc: str):
    """A tqdm bar on stderr when enabled (a no-op context otherwise)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, leave=False, dynamic_ncols=True)


def progress_from_disable(disable: bool | None) -> bool:
    """k-diffusion's ``disable`` argument as a ``progress`` flag: None shows the bar on a terminal only."""
    import sys

    return sys.stderr.isatty() if disable is None else not disable


def callback_state(i: int, x: Tensor, t: Tensor, sde, denoised: Tensor | None, sigma_hat: Tensor | None = None,
                   **extra: Any) -> dict[str, Any]:
    """The dictionary every sampler passes to its callback (keys: see the module docstring)."""
    sigma = sde.sigma_tilde(t)
    return {"i": int(i), "x": x, "t": t, "sigma": sigma, "sigma_hat": sigma if sigma_hat is None else sigma_hat,
            "denoised": denoised, **extra}


def sample(model: ScoreModel, num: int, seed: int, sampler: Callable[..., SampleResult], shape: Sequence[int],
           batch_size: int = 256, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
           start_index: int = 0, **kwargs: Any) -> SampleResult:
    """Draw ``num`` samples in batches; sample i uses the per-sample seed (seed, start_index + i).

    The result's ``nfe`` is the number of network evaluations per sample (the most any batch spent);
    ``info["total_calls"]`` counts all batched calls.

    ``sampler(model, x_T, noise, **kwargs)`` is any sampler of :mod:`scoresde.samplers`; x_T is
    drawn from the SDE's prior with the first draw of each sample's stream.

    A sampler with a ``stream`` attribute (the per-sample adaptive solvers) runs the whole stream through
    ``batch_size`` slots it keeps full instead (same samples, fewer idle evaluations); ``refill=False`` turns
    that off.
    """
    if num < 1 or batch_size < 1:
        raise ValueError("num and batch_size must be >= 1")
    stream = getattr(sampler, "stream", None)
    if kwargs.pop("refill", True) and stream is not None:
        return stream(model, num, seed, shape, batch_size=batch_size, dtype=dtype, device=device,
                      start_index=start_index, **kwargs)
    outs, nfe, per_sample, infos, batch_nfe = [], 0, [], [], []
    for lo in range(0, num, batch_size):
        idx = range(start_index + lo, start_index + min(lo + batch_size, num))
        noise = NoiseSource(seed, shape, idx, dtype=dtype, device=device)
        x = model.sde.prior_sample(noise.draw())
        res = sampler(model, x, noise, **kwargs)
        outs.append(res.samples)
        nfe += res.nfe
        batch_nfe.append(res.nfe)
        if res.nfe_per_sample is not None:
            per_sample.append(res.nfe_per_sample)
        infos.append(res.info)
    # NFE per sample path: the largest batch's count (batches of one run spend the same, up to the
    # adaptive solvers); the total number of batched network calls goes in info
    return SampleResult(torch.cat(outs), max(batch_nfe), torch.cat(per_sample) if per_sample else None,
                        {"batches": infos, "total_calls": nfe})
