"""The peers: k-diffusion's and diffusers' samplers, loaded from the venv when installed, one entry each.

Adapters (the same exact model every scoresde sampler sees, through the counting wrapper):

* k-diffusion gets ``to_denoiser(model)`` = D(x / alpha, sigma~) in VE space over sigma~ in
  [sigma~(t_end), sigma~(T)] (Karras rho = 7 grids, ``get_sigmas_karras``); its ``sampling.py`` is loaded
  by path with a stub ``utils`` (importing the ``k_diffusion`` package pulls torchvision);
* diffusers gets the eps-model at the continuous time whose sigma~ equals the scheduler's own
  sqrt((1 - abar) / abar) at its (possibly fractional) timestep, with the 1000 training betas linear
  from 0.1/1000 to 20/1000 (the VP SDE's discrete form); it stops at timestep 0 (no final denoise).

Adding a peer sampler is one entry in :data:`KDIFFUSION` or :data:`DIFFUSERS`.
"""
from __future__ import annotations

import importlib.util
import inspect
import math
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scoresde.parameterization import to_denoiser
from scoresde.seeding import PEER_NOISE_ALT

from .base import Contestant, Context, Run


# ============================================================================ k-diffusion
def load_kdiffusion() -> types.ModuleType:
    """k_diffusion/sampling.py loaded by path under a private package name, with a stub ``utils``."""
    spec = importlib.util.find_spec("k_diffusion")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed (pip install --no-deps k-diffusion torchsde trampoline)")
    path = Path(next(iter(spec.submodule_search_locations))) / "sampling.py"
    pkg = types.ModuleType("_kd_peer")
    pkg.__path__ = []
    utils = types.ModuleType("_kd_peer.utils")

    def append_dims(x, target_dims):
        return x.reshape(x.shape + (1,) * (target_dims - x.ndim))

    utils.append_dims = append_dims
    sys.modules["_kd_peer"], sys.modules["_kd_peer.utils"] = pkg, utils
    mspec = importlib.util.spec_from_file_location("_kd_peer.sampling", path)
    mod = importlib.util.module_from_spec(mspec)
    sys.modules["_kd_peer.sampling"] = mod
    mspec.loader.exec_module(mod)
    return mod


def _sigma_range(sde) -> tuple[float, float]:
    return float(sde.sigma_tilde(sde.t_end)), float(sde.sigma_tilde(sde.T))


@dataclass(frozen=True)
class KdFixed:
    """A fixed-step k-diffusion sampler ``fn(denoiser, x, sigmas, noise_sampler=...)`` on a Karras grid."""

    name: str
    fn: str                         # its name in k_diffusion.sampling
    note: str
    nfe_per_step: int = 1
    tree: bool = False              # torchsde BrownianTree noise (else per-sample seeded draws)

    def contestant(self, kd) -> Contestant:
        fn = getattr(kd, self.fn)

        def run(ctx: Context, steps: int) -> Run:
            m = ctx.model
            smin, smax = _sigma_range(m.sde)
            x = ctx.x / float(m.sde.alpha(m.sde.T))
            # sigmas in x's dtype, as k-diffusion expects (a float64 sigma would promote a float32 x)
            sig = kd.get_sigmas_karras(steps + 1, smin, smax, rho=7.0)[:-1].to(torch.float64)
            sig[0], sig[-1] = smax, smin
            sig = sig.to(x.dtype)
            if self.tree:
                ns = kd.BrownianTreeNoiseSampler(x, smin * (1 - 1e-6), smax * (1 + 1e-6), seed=ctx.peer_seed)
            else:  # disjoint intervals: independent per-sample seeded draws have the Brownian tree's law
                def ns(s, s_next, noise=ctx.noise):
                    return noise.draw()
            return Run(fn(to_denoiser(m), x, sig, disable=True, noise_sampler=ns), smin)

        return Contestant(self.name, "k-diffusion", self.note, run, "steps", self.nfe_per_step)


@dataclass(frozen=True)
class KdAdaptive:
    """k-diffusion's ``sample_dpm_adaptive`` (DPM-Solver-23), swept over rtol with atol = 0.156 rtol."""

    name: str
    eta: float

    def contestant(self, kd) -> Contestant:
        def run(ctx: Context, rtol: float) -> Run:
            m = ctx.model
            smin, smax = _sigma_range(m.sde)
            x = ctx.x / float(m.sde.alpha(m.sde.T))
            kw = {}
            if self.eta:  # noise is drawn once per accepted step (disjoint intervals): per-sample seeded draws
                noise = ctx.noise
                kw["noise_sampler"] = lambda s, s_next: noise.draw()
            out, info = kd.sample_dpm_adaptive(to_denoiser(m), x, smin, smax, rtol=rtol, atol=rtol * 0.156,
                                               eta=self.eta, disable=True, return_info=True, **kw)
            return Run(out, smin, {"rejected": info["n_reject"], "accepted": info["n_accept"]})

        return Contestant(self.name, "k-diffusion", f"DPM-Solver-23 adaptive (batch-shared step, PID I-controller), "
                          f"eta {self.eta}, atol = 0.156 rtol", run, "rtol", 3, sde=self.eta > 0)


#: k-diffusion's samplers in the arena
KDIFFUSION = (
    KdFixed("kd-euler_a", "sample_euler_ancestral", "Euler ancestral, Karras grid"),
    KdFixed("kd-dpmpp_sde", "sample_dpmpp_sde", "DPM-Solver++ SDE (2 NFE/step), Karras grid, torchsde BrownianTree "
            "(one tree per batch)", nfe_per_step=2, tree=True),
    KdFixed("kd-dpmpp_2m_sde", "sample_dpmpp_2m_sde", "DPM-Solver++(2M) SDE midpoint, Karras grid"),
    KdFixed("kd-dpmpp_3m_sde", "sample_dpmpp_3m_sde", "DPM-Solver++(3M) SDE, Karras grid"),
    KdAdaptive("kd-dpm_adaptive", 0.0),
    KdAdaptive("kd-dpm_adaptive_eta1", 1.0),
)


# ============================================================================ diffusers
def load_diffusers() -> types.ModuleType:
    import diffusers  # raises ImportError when missing

    return diffusers


DIFFUSERS_BETAS = {"num_train_timesteps": 1000, "beta_start": 0.1 / 1000, "beta_end": 20 / 1000,
                   "beta_schedule": "linear"}


def _eps_at_timestep(m, sched) -> tuple[Callable, Callable[[Any], float]]:
    """eps-model at the continuous time whose sigma~ is the scheduler's sigma at its (fractional) timestep."""
    abar = sched.alphas_cumprod.double()
    log_sig = (0.5 * torch.log((1 - abar) / abar)).numpy()
    grid = np.arange(len(log_sig), dtype=np.float64)

    def sigma_at(tau) -> float:
        return float(np.exp(np.interp(float(tau), grid, log_sig)))

    def eps(x_vp, tau):
        t = m.sde.t_from_sigma_tilde(torch.tensor(sigma_at(tau), dtype=torch.float64))
        return m.eps(x_vp, t.expand(x_vp.shape[0]))

    return eps, sigma_at


def _step_kw(sched, g: torch.Generator) -> dict:
    return {"generator": g} if "generator" in inspect.signature(sched.step).parameters else {}


def ddpm_loop(sched, ctx: Context, steps: int, g: torch.Generator) -> Run:
    """VP-space scheduler over steps + 1 timesteps, stopped at timestep 0 (the last step would be the denoise)."""
    sched.set_timesteps(steps + 1)
    eps, sigma_at = _eps_at_timestep(ctx.model, sched)
    x, ts = ctx.x, sched.timesteps
    for tau in ts[:-1]:
        x = sched.step(eps(x, tau), tau, x, **_step_kw(sched, g)).prev_sample
    s_end = sigma_at(ts[-1])
    return Run(x * math.sqrt(1 + s_end**2), s_end)


def karras_loop(sched, ctx: Context, steps: int, g: torch.Generator) -> Run:
    """VE-space (sigma) scheduler over steps + 1 timesteps, stopped before its step to sigma = 0."""
    sched.set_timesteps(steps + 1)
    eps, _ = _eps_at_timestep(ctx.model, sched)
    x = ctx.x * float(sched.init_noise_sigma)
    sig = sched.sigmas
    for i, tau in enumerate(sched.timesteps):
        if float(sig[i + 1]) == 0:
            break
        x = sched.step(eps(sched.scale_model_input(x, tau), tau), tau, x, **_step_kw(sched, g)).prev_sample
    return Run(x, float(sig[i]))


def multistep_loop(sched, ctx: Context, steps: int, g: torch.Generator) -> Run:
    """VP-space multistep scheduler over ``steps`` timesteps ending at its final sigma (sigma_min)."""
    sched.set_timesteps(steps)
    eps, _ = _eps_at_timestep(ctx.model, sched)
    x = ctx.x
    for tau in sched.timesteps:
        x = sched.step(eps(x, tau), tau, x, **_step_kw(sched, g)).prev_sample
    s_end = float(sched.sigmas[-1])
    return Run(x * math.sqrt(1 + s_end**2), s_end)


@dataclass(frozen=True)
class Df:
    """A diffusers scheduler (class name, config beyond the betas) driven by one of the loops above."""

    name: str
    scheduler: str
    loop: Callable[..., Run]
    note: str
    config: dict[str, Any] = field(default_factory=dict)
    nfe_per_step: int = 1
    sde: bool = True

    def contestant(self, diffusers) -> Contestant:
        cls = getattr(diffusers, self.scheduler)

        def run(ctx: Context, steps: int) -> Run:
            return self.loop(cls(**DIFFUSERS_BETAS, **self.config), ctx, steps,
                             torch.Generator().manual_seed(ctx.peer_seed))

        # its schedulers take at most the 1000 training timesteps
        return Contestant(self.name, "diffusers", self.note, run, "steps", self.nfe_per_step, max_steps=999,
                          sde=self.sde, seed_stream=PEER_NOISE_ALT)


#: diffusers' schedulers in the arena
DIFFUSERS = (
    Df("df-ddpm", "DDPMScheduler", ddpm_loop, "DDPMScheduler (ancestral, fixed_small), linspace timesteps",
       {"clip_sample": False, "timestep_spacing": "linspace"}),
    Df("df-euler_a", "EulerAncestralDiscreteScheduler", karras_loop, "EulerAncestralDiscreteScheduler, linspace "
       "timesteps"),
    Df("df-dpmsolver_sde", "DPMSolverSDEScheduler", karras_loop, "DPMSolverSDEScheduler, Karras sigmas (2 NFE/step, "
       "BrownianTree, float32 sigmas)", {"noise_sampler_seed": 0, "use_karras_sigmas": True}, nfe_per_step=2),
    Df("df-dpmpp_2m_sde", "DPMSolverMultistepScheduler", multistep_loop, "DPMSolverMultistepScheduler "
       "sde-dpmsolver++ order 2, Karras sigmas, final sigma = sigma_min",
       {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "final_sigmas_type": "sigma_min",
        "use_karras_sigmas": True}),
    Df("df-unipc", "UniPCMultistepScheduler", multistep_loop, "UniPCMultistepScheduler (UniPC bh2, order 2, "
       "data prediction; ODE), Karras sigmas, final sigma = sigma_min",
       {"solver_order": 2, "final_sigmas_type": "sigma_min", "use_karras_sigmas": True}, sde=False),
)

#: (family, loader, entries): a missing family is skipped with a note
FAMILIES = (("k-diffusion", load_kdiffusion, KDIFFUSION), ("diffusers", load_diffusers, DIFFUSERS))
