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
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._tensor import like
from .brownian import NoiseSource
from .parameterization import ScoreModel
from .samplers.base import SampleResult
from .samplers.common import make_grid
from .samplers.registry import SAMPLERS, option_default, resolve

__all__ = ["METHODS", "inpaint"]

METHODS = ("replacement", "repaint")
#: samplers that take an explicit time grid (the adaptive ones choose their own steps)
GRID_SAMPLERS = tuple(name for name, spec in SAMPLERS.items() if name not in ("ode", "ggf"))


def _forward(sde, x: Tensor, t_from: Tensor, t_to: Tensor, z: Tensor) -> Tensor:
    """A draw of x_{t_to} given x_{t_from} (t_to > t_from) from the forward transition kernel."""
    a_f, s_f = sde.marginal(t_from)
    a_t, s_t = sde.marginal(t_to)
    ratio = a_t / a_f
    std = torch.sqrt((s_t**2 - ratio**2 * s_f**2).clamp_min(0))
    return like(ratio, x) * x + like(std, x) * z


def inpaint(model: ScoreModel, x: Tensor, noise: NoiseSource, *, known: Tensor, mask: Tensor,
            base: str = "seeds1", steps: int = 100, method: str = "replacement", jump: int = 1,
            resample: int = 1, **options: Any) -> SampleResult:
    """Sample the coordinates where ``mask`` is 0 given ``known`` where it is 1 (replacement or RePaint).

    ``x`` is x_T for the whole state (its known coordinates are overwritten), ``mask`` broadcasts against it
    (1 = known), ``base`` a grid sampler of the registry with its ``options``; ``steps`` grid steps.
    """
    if method not in METHODS:
        raise ValueError(f"unknown inpainting method {method!r}; expected one of {', '.join(METHODS)}")
    if base not in GRID_SAMPLERS:
        raise ValueError(f"inpainting needs a sampler that steps on a grid ({', '.join(GRID_SAMPLERS)}), "
                         f"got {base!r}")
    if int(steps) < 1 or int(jump) < 1 or int(resample) < 1:
        raise ValueError("steps, jump and resample must be >= 1")
    if method == "replacement" and (jump != 1 or resample != 1):
        raise ValueError("jump and resample apply to method repaint")
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

    with torch.no_grad():
        n = len(grid) - 1
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
