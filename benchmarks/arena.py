"""The sampler arena: scoresde's SDE samplers against k-diffusion and diffusers on exact-score problems.

    python benchmarks/arena.py                        # the full run (about 20 min on one CPU thread)
    python benchmarks/arena.py --quick                # a smaller run (a few minutes)
    python benchmarks/arena.py --problems gmm8 gmm64 --samplers em seeds-3 kd-dpmpp_3m_sde

Peers (installed into the venv, never project dependencies; torch is left alone):

    pip install --no-deps k-diffusion torchsde trampoline   # k-diffusion's sampling.py + BrownianTree
    pip install diffusers    # pure-python deps only (huggingface_hub, safetensors, regex, requests, ...)
                             # diffusers does not depend on torch; --dry-run first shows nothing touches it

k-diffusion's ``k_diffusion/sampling.py`` is loaded by path with a stub ``utils`` module (importing the
package pulls torchvision). A peer that is not installed is skipped with a printed note.

Every sampler sees the same exact model through the same adapters, starts from the same x_T (the first
draw of each sample's seeded stream) and every model call is counted by one wrapper (:class:`Counted`),
which also times the calls. Adapters: scoresde samplers call ``model.score/denoised/eps``; k-diffusion
gets ``to_denoiser(model)`` = D(x / alpha, sigma~) in VE space over sigma~ in [sigma~(eps), sigma~(T)]
(Karras rho = 7 grids, ``get_sigmas_karras``); diffusers gets the eps-model at the continuous time whose
sigma~ equals the scheduler's own sqrt((1 - abar) / abar) at its (possibly fractional) timestep, with the
1000 training betas linear from 0.1/1000 to 20/1000 (the VP SDE's discrete form).

Judge (design.md section 7). Every sampler stops at its last noisy level sigma_end (scoresde / k-diffusion:
sigma~(eps = 1e-3) = 0.0105; diffusers: its timestep 0, sigma~ = 0.0100), without the final denoise, and is
judged against the closed-form marginal there: the mixture with stds sqrt(s_k^2 + sigma_end^2) (x in VE
space). Mixtures: the mode-weight TV against tv_noise (the Monte-Carlo floor of an exact sampler with as
many samples) and the pooled within-mode spread ratio (1 = right). Empirical MNIST digits (EmpiricalDistribution
of 1000 training digits, 100 per class): the class histogram of the nearest training point (TV vs uniform,
with its floor), the number of distinct points hit (vs its expectation under uniform hitting) and the
spread ratio - NOT the distance to the nearest training point after a final denoise, which every sampler
passes. The trained MNIST U-Net (runs/mnist, if present): one counted final denoise (+1 NFE for every
sampler), then the offline digit judge (Frechet distance in the judge CNN's features, class TV).

Writes benchmarks/results/arena.md (tables, summary, verdicts) and benchmarks/results/arena_<problem>.png.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import sys
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# torchsde warns when k-diffusion queries its tree a rounding error outside [sigma_min, sigma_max]
warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)

import numpy as np
import torch
from torch import Tensor

from scoresde._tensor import like
from scoresde.brownian import NoiseSource
from scoresde.seeding import PEER_NOISE, PEER_NOISE_ALT, sample_seed
from scoresde.exact import (
    EmpiricalDistribution,
    ExactScoreModel,
    GaussianMixture,
    load_problem,
)
from scoresde.parameterization import ScoreModel, to_denoiser
from scoresde.quality import mixture_report
from scoresde.samplers import (
    euler_maruyama,
    langevin,
    pc_sample,
    reverse_diffusion,
    seeds,
)
from scoresde.sde import VPSDE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


# ============================================================================ model wrapper
class Counted(ScoreModel):
    """Counts and times every call of an inner score model: ``nfe`` batched calls, ``sample_evals`` rows."""

    def __init__(self, inner: ScoreModel):
        super().__init__(inner.sde, inner.prediction)
        self.inner = inner
        self.reset()

    def reset(self) -> None:
        self.nfe, self.sample_evals, self.model_time = 0, 0, 0.0

    def _call(self, fn: Callable[[Tensor, Any], Tensor], x: Tensor, t: Any) -> Tensor:
        self.nfe += 1
        self.sample_evals += x.shape[0]
        t0 = time.perf_counter()
        out = fn(x, t)
        self.model_time += time.perf_counter() - t0
        return out

    def output(self, x, t, kind):
        return self._call(lambda xx, tt: self.inner.output(xx, tt, kind), x, t)

    def score(self, x, t):
        return self._call(self.inner.score, x, t)

    def eps(self, x, t):
        return self._call(self.inner.eps, x, t)

    def denoised(self, x, t):
        return self._call(self.inner.denoised, x, t)


# ============================================================================ peers
def load_kdiffusion():
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


def load_diffusers():
    import diffusers  # noqa: F401  (raises ImportError when missing)
    from diffusers import (
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        DPMSolverSDEScheduler,
        EulerAncestralDiscreteScheduler,
    )
    return {"ddpm": DDPMScheduler, "dpmsolver_sde": DPMSolverSDEScheduler,
            "dpmpp_2m_sde": DPMSolverMultistepScheduler, "euler_a": EulerAncestralDiscreteScheduler}


# ============================================================================ problems
@dataclass
class Problem:
    name: str
    title: str
    model: ScoreModel
    shape: tuple[int, ...]
    n: int
    dtype: torch.dtype
    judge: Callable[[Tensor, float], dict[str, float]]
    target: Callable[[dict[str, float]], bool]
    target_text: str
    columns: list[tuple[str, str]]          # (key, header) of the quality columns
    budgets: list[int]                       # NFE budgets of the fixed-step sweeps
    tols: list[float]                        # rtol of the adaptive sweeps (atol = rtol * 0.156)
    final_denoise: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _pooled_spread(judge_mix: GaussianMixture, x: Tensor, label: Tensor) -> float:
    """sqrt(sum of squared distances to the assigned means / sum of their expected values)."""
    d2 = ((x - judge_mix.means[label]) ** 2).sum(-1)
    expect = judge_mix.dim * judge_mix.stds[label] ** 2
    return float((d2.sum() / expect.sum()).sqrt())


def mixture_judge(problem: GaussianMixture) -> Callable[[Tensor, float], dict[str, float]]:
    """Mode-weight TV and pooled spread ratio against the closed-form marginal at sigma_end (VE space)."""

    def judge(x_ve: Tensor, sigma_end: float) -> dict[str, float]:
        mix = GaussianMixture(problem.weights, problem.means, torch.sqrt(problem.stds**2 + sigma_end**2))
        x = x_ve.reshape(x_ve.shape[0], -1).double()
        if not bool(torch.isfinite(x).all()):
            return {"tv": math.nan, "tv_noise": math.nan, "tv_ratio": math.inf, "spread": math.inf, "light": math.nan}
        rep = mixture_report(mix, x)
        label = mix.responsibilities(x).argmax(-1)
        light = problem.weights < problem.weights.max()
        return {"tv": rep.tv, "tv_noise": rep.tv_noise, "tv_ratio": rep.tv / rep.tv_noise,
                "spread": _pooled_spread(mix, x, label), "light": float(rep.weights[light].mean())}

    return judge


def mixture_target(q: dict[str, float]) -> bool:
    return q["tv_ratio"] <= 1.5 and abs(q["spread"] - 1) <= 0.05


def empirical_judge(points: Tensor, labels: Tensor) -> Callable[[Tensor, float], dict[str, float]]:
    """Uniformity of the hit training points and the spread ratio at sigma_end."""
    flat = points.reshape(points.shape[0], -1).double()
    sq = (flat**2).sum(-1)
    m = flat.shape[0]

    def judge(x_ve: Tensor, sigma_end: float) -> dict[str, float]:
        x = x_ve.reshape(x_ve.shape[0], -1).double()
        n = x.shape[0]
        if not bool(torch.isfinite(x).all()):
            return {"class_tv": math.nan, "tv_noise": math.nan, "tv_ratio": math.inf, "spread": math.inf,
                    "distinct": math.nan}
        d2 = (x**2).sum(-1, keepdim=True) - 2 * x @ flat.T + sq
        idx = d2.argmin(-1)
        hist = torch.bincount(labels[idx], minlength=10).double() / n
        tv = 0.5 * float((hist - 0.1).abs().sum())
        floor = 0.5 * 10 * math.sqrt(2 * 0.1 * 0.9 / (math.pi * n))
        spread = math.sqrt(float(d2.gather(1, idx[:, None]).clamp_min(0).sum()) / (n * x.shape[1] * sigma_end**2))
        distinct = idx.unique().numel() / (m * (1 - (1 - 1 / m) ** n))
        return {"class_tv": tv, "tv_noise": floor, "tv_ratio": tv / floor, "spread": spread, "distinct": distinct}

    return judge


def build_problems(names: list[str], quick: bool, unet_num: int) -> list[Problem]:
    sde = VPSDE()
    out = []
    sweep_fine = [4, 6, 8, 10, 14, 20, 28, 40, 56, 80, 113, 160, 226, 320, 453, 640, 905, 1280]
    tols = [2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002]
    mix_cols = [("tv", "mode TV"), ("tv_noise", "TV floor"), ("spread", "spread")]
    for name in names:
        if name in ("gmm8", "gmm64"):
            prob = load_problem(name)
            n = (2000 if quick else 4000) if name == "gmm8" else (1000 if quick else 2000)
            cols = mix_cols + ([("light", "light w")] if name == "gmm8" else [])
            title = {"gmm8": "sharp 2-D 8-mode ring (std 0.05, weights 1/6 and 1/12), VP, exact score, float64",
                     "gmm64": "64-d 4-mode mixture (weights .4/.3/.2/.1, stds .1/.1/.2/.2), VP, exact score, float64"}[name]
            out.append(Problem(name, f"{title}, {n} samples", ExactScoreModel(prob, sde), prob.shape, n, torch.float64,
                               mixture_judge(prob), mixture_target,
                               "mode TV <= 1.5 x floor and |spread - 1| <= 0.05", cols,
                               sweep_fine[:15] if quick else sweep_fine, tols[:8] if quick else tols))
        elif name == "mnist-emp":
            from scoresde.data import mnist5k

            x, y = mnist5k("train")
            g = torch.Generator().manual_seed(0)
            perm = torch.randperm(x.shape[0], generator=g)
            keep = torch.cat([perm[y[perm] == c][:100] for c in range(10)])
            pts, lab = x[keep] * 2 - 1, y[keep]
            prob = EmpiricalDistribution(pts)
            n = 128 if quick else 256
            out.append(Problem(name, f"empirical distribution of 1000 MNIST training digits (100 per class, [-1, 1]), "
                                     f"784-d, VP, exact score, float64, {n} samples",
                               ExactScoreModel(prob, sde), tuple(pts.shape[1:]), n, torch.float64,
                               empirical_judge(pts, lab), lambda q: q["tv_ratio"] <= 1.5 and abs(q["spread"] - 1) <= 0.05,
                               "class TV of the hit points <= 1.5 x floor and |spread - 1| <= 0.05",
                               [("class_tv", "class TV"), ("tv_noise", "TV floor"), ("distinct", "distinct/ideal"),
                                ("spread", "spread")],
                               [3, 5, 7, 10, 20, 40, 80, 160, 320] if quick else [3, 4, 5, 6, 7, 8, 10, 14, 20, 40, 80,
                                                                                   160, 320, 640, 1280],
                               [1.0, 0.2, 0.1, 0.05, 0.02] if quick else [2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01]))
        elif name == "mnist-unet":
            workdir = ROOT / "runs" / "mnist"
            if not (workdir / "checkpoints").is_dir():
                print(f"arena: no trained model in {workdir}; skipping mnist-unet")
                continue
            from scoresde.metrics import digit_report, load_digit_classifier
            from scoresde.workdir import model_from_workdir

            model, _cfg, shape, step = model_from_workdir(workdir, device="cpu")
            judge_net = load_digit_classifier(progress=False)
            from scoresde.data import mnist5k

            x_test, y_test = mnist5k("test")
            real = digit_report(x_test[:unet_num], judge_net, y_test[:unet_num])

            def unet_judge(x: Tensor, sigma_end: float, judge_net=judge_net) -> dict[str, float]:
                img = ((x.float() + 1) / 2).clamp(0, 1)
                rep = digit_report(img, judge_net)
                return {"fd": float(rep.fd), "class_tv": float(rep.class_tv)}

            prob = Problem("mnist-unet", f"trained MNIST U-Net (runs/mnist, step {step}, VP, eps-prediction), "
                                         f"{unet_num} samples, float32, final denoise counted",
                           model, tuple(shape), unet_num, torch.float32, unet_judge, lambda q: False,
                           "FD <= 1.1 x FD of EM-200 (the model's configured sampler) and class TV <= EM-200's + 0.03",
                           [("fd", "FD"), ("class_tv", "class TV")], [25, 50, 100, 200] if not quick else [25, 50],
                           [0.1, 0.05] if not quick else [0.1], final_denoise=True,
                           extra={"real_fd": float(real.fd), "real_class_tv": float(real.class_tv)})
            out.append(prob)
        else:
            raise SystemExit(f"arena: unknown problem {name!r} (gmm8, gmm64, mnist-emp, mnist-unet)")
    return out


# ============================================================================ samplers
@dataclass
class Run:
    x_ve: Tensor         # the state at the last noisy level, in VE space (x / alpha)
    sigma_end: float     # its sigma~
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sampler:
    name: str
    family: str            # scoresde | k-diffusion | diffusers
    kind: str              # sde | ode | adaptive
    order: int             # NFE per step (fixed-step samplers)
    run: Callable[..., Run]
    note: str = ""


def _ve(sde, x: Tensor, t: float) -> Run:
    return Run(x / float(sde.alpha(t)), float(sde.sigma_tilde(t)))


def scoresde_samplers() -> list[Sampler]:
    out = []

    def fixed(name, order, call, note=""):
        def run(ctx, steps):
            m = ctx["model"]
            res = call(m, ctx["x"], ctx["noise"], steps)
            return _ve(m.sde, res.samples, m.sde.t_end)

        out.append(Sampler(name, "scoresde", "sde", order, run, note))

    fixed("em", 1, lambda m, x, nz, s: pc_sample(m, x, nz, steps=s, predictor=euler_maruyama, corrector=None,
                                                 denoise=False), "Euler-Maruyama, uniform t")
    fixed("pc", 2, lambda m, x, nz, s: pc_sample(m, x, nz, steps=s, predictor=reverse_diffusion, corrector=langevin,
                                                 snr=0.01, denoise=False),
          "reverse diffusion + Langevin (snr 0.01, batch-averaged norms), uniform t")
    for k in (1, 2, 3):
        fixed(f"seeds-{k}", k, lambda m, x, nz, s, k=k: seeds(m, x, nz, order=k, steps=s, grid="logsnr"),
              f"SEEDS-{k}, eta 1, log-SNR grid")

    def ggf(mode):
        def run(ctx, rtol):
            from scoresde.samplers.adaptive import ggf_sample

            m = ctx["model"]
            res = ggf_sample(m, ctx["x"], ctx["noise"], rtol=rtol, atol=rtol * 0.156, noise_mode=mode, denoise=False)
            r = _ve(m.sde, res.samples, m.sde.t_end)
            r.info = {"rejected": res.info.get("rejected"), "accepted": res.info.get("accepted")}
            return r

        return run

    out.append(Sampler("ggf", "scoresde", "adaptive", 2, ggf("bridge"),
                       "Gotta Go Fast, Brownian-bridge retries, atol = 0.156 rtol (0.0078 at rtol 0.05)"))
    out.append(Sampler("ggf-fresh", "scoresde", "adaptive", 2, ggf("fresh"),
                       "Gotta Go Fast with the paper's fresh noise after a rejection"))
    return out


def kdiffusion_samplers(kd) -> list[Sampler]:
    def sigma_range(sde):
        return float(sde.sigma_tilde(sde.t_end)), float(sde.sigma_tilde(sde.T))

    def fixed(name, fn, order, tree=False, note=""):
        def run(ctx, steps):
            m = ctx["model"]
            smin, smax = sigma_range(m.sde)
            x = ctx["x"] / float(m.sde.alpha(m.sde.T))
            # sigmas in x's dtype, as k-diffusion expects (a float64 sigma would promote a float32 x)
            sig = kd.get_sigmas_karras(steps + 1, smin, smax, rho=7.0)[:-1].to(torch.float64)
            sig[0], sig[-1] = smax, smin
            sig = sig.to(x.dtype)
            kw = {}
            if tree:
                kw["noise_sampler"] = kd.BrownianTreeNoiseSampler(x, smin * (1 - 1e-6), smax * (1 + 1e-6),
                                                                  seed=ctx["peer_seed"])
            else:  # disjoint intervals: independent per-sample seeded draws have the Brownian tree's law
                noise = ctx["noise"]
                kw["noise_sampler"] = lambda s, s_next: noise.draw()
            out_x = fn(to_denoiser(m), x, sig, disable=True, **kw)
            return Run(out_x, smin)

        return Sampler(name, "k-diffusion", "sde", order, run, note)

    def adaptive(name, eta):
        def run(ctx, rtol):
            m = ctx["model"]
            smin, smax = sigma_range(m.sde)
            x = ctx["x"] / float(m.sde.alpha(m.sde.T))
            kw = {}
            if eta:  # noise is drawn once per accepted step (disjoint intervals): per-sample seeded draws
                noise = ctx["noise"]
                kw["noise_sampler"] = lambda s, s_next: noise.draw()
            out_x, info = kd.sample_dpm_adaptive(to_denoiser(m), x, smin, smax, rtol=rtol, atol=rtol * 0.156, eta=eta,
                                                 disable=True, return_info=True, **kw)
            return Run(out_x, smin, {"rejected": info["n_reject"], "accepted": info["n_accept"]})

        return Sampler(name, "k-diffusion", "adaptive", 3, run,
                       f"DPM-Solver-23 adaptive (batch-shared step, PID I-controller), eta {eta}, atol = 0.156 rtol")

    return [
        fixed("kd-euler_a", kd.sample_euler_ancestral, 1, note="Euler ancestral, Karras grid"),
        fixed("kd-dpmpp_sde", kd.sample_dpmpp_sde, 2, tree=True,
              note="DPM-Solver++ SDE (2 NFE/step), Karras grid, torchsde BrownianTree (one tree per batch)"),
        fixed("kd-dpmpp_2m_sde", kd.sample_dpmpp_2m_sde, 1, note="DPM-Solver++(2M) SDE midpoint, Karras grid"),
        fixed("kd-dpmpp_3m_sde", kd.sample_dpmpp_3m_sde, 1, note="DPM-Solver++(3M) SDE, Karras grid"),
        adaptive("kd-dpm_adaptive", 0.0),
        adaptive("kd-dpm_adaptive_eta1", 1.0),
    ]


def diffusers_samplers(sched_classes) -> list[Sampler]:
    common = {"num_train_timesteps": 1000, "beta_start": 0.1 / 1000, "beta_end": 20 / 1000, "beta_schedule": "linear"}

    def adapter(m, sched):
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

    def gen(ctx):
        return torch.Generator().manual_seed(ctx["peer_seed"])

    def ddpm(ctx, nfe):
        m = ctx["model"]
        sched = sched_classes["ddpm"](**common, clip_sample=False, timestep_spacing="linspace")
        sched.set_timesteps(nfe + 1)
        eps, sigma_at = adapter(m, sched)
        x, g = ctx["x"], gen(ctx)
        ts = sched.timesteps
        for tau in ts[:-1]:  # stop at timestep 0: the last step would be the final denoise
            x = sched.step(eps(x, tau), tau, x, generator=g).prev_sample
        s_end = sigma_at(ts[-1])
        return Run(x * math.sqrt(1 + s_end**2), s_end)

    def euler_like(key, order, **kw):
        def run(ctx, nfe):
            m = ctx["model"]
            steps = max(1, round(nfe / order))
            sched = sched_classes[key](**common, **kw)
            sched.set_timesteps(steps + 1)
            eps, _ = adapter(m, sched)
            x = ctx["x"] * float(sched.init_noise_sigma)
            g = gen(ctx)
            sig = sched.sigmas
            for i, tau in enumerate(sched.timesteps):
                if float(sig[i + 1]) == 0:
                    break
                x_in = sched.scale_model_input(x, tau)
                e = eps(x_in, tau)
                step_kw = {"generator": g} if key == "euler_a" else {}
                x = sched.step(e, tau, x, **step_kw).prev_sample
            return Run(x, float(sig[i]))

        return run

    def dpmsde_multistep(ctx, nfe):
        m = ctx["model"]
        sched = sched_classes["dpmpp_2m_sde"](**common, algorithm_type="sde-dpmsolver++", solver_order=2,
                                              final_sigmas_type="sigma_min", use_karras_sigmas=True)
        sched.set_timesteps(nfe)
        eps, _ = adapter(m, sched)
        x, g = ctx["x"], gen(ctx)
        for tau in sched.timesteps:
            x = sched.step(eps(x, tau), tau, x, generator=g).prev_sample
        s_end = float(sched.sigmas[-1])
        return Run(x * math.sqrt(1 + s_end**2), s_end)

    return [
        Sampler("df-ddpm", "diffusers", "sde", 1, ddpm, "DDPMScheduler (ancestral, fixed_small), linspace timesteps"),
        Sampler("df-euler_a", "diffusers", "sde", 1, euler_like("euler_a", 1),
                "EulerAncestralDiscreteScheduler, linspace timesteps"),
        Sampler("df-dpmsolver_sde", "diffusers", "sde", 2,
                euler_like("dpmsolver_sde", 2, noise_sampler_seed=0, use_karras_sigmas=True),
                "DPMSolverSDEScheduler, Karras sigmas (2 NFE/step, BrownianTree, float32 sigmas)"),
        Sampler("df-dpmpp_2m_sde", "diffusers", "sde", 1, dpmsde_multistep,
                "DPMSolverMultistepScheduler sde-dpmsolver++ order 2, Karras sigmas, final sigma = sigma_min"),
    ]


# ============================================================================ running
@dataclass
class Result:
    problem: str
    sampler: str
    param: float
    nfe_batch: int
    nfe_sample: float
    wall: float
    model_time: float
    quality: dict[str, float]
    ok: bool
    info: dict[str, Any]


def run_one(prob: Problem, s: Sampler, param, seed: int, counted: Counted) -> Result:
    noise = NoiseSource(seed, prob.shape, range(prob.n), dtype=prob.dtype)
    x_T = counted.sde.prior_sample(noise.draw())
    ctx = {"model": counted, "x": x_T, "noise": noise, "peer_seed": int(sample_seed(seed, 0, stream=PEER_NOISE) % 2**31)}
    if s.family == "diffusers":
        ctx["peer_seed"] = int(sample_seed(seed, 0, stream=PEER_NOISE_ALT) % 2**31)
    counted.reset()
    t0 = time.perf_counter()
    with torch.no_grad():
        run = s.run(ctx, param)
        x_out = run.x_ve
        if prob.final_denoise:
            t_end = counted.sde.t_from_sigma_tilde(torch.tensor(run.sigma_end, dtype=torch.float64))
            x_out = counted.denoised(run.x_ve * like(counted.sde.alpha(t_end), run.x_ve), t_end.expand(prob.n))
    wall = time.perf_counter() - t0
    q = prob.judge(x_out, run.sigma_end)
    return Result(prob.name, s.name, param, counted.nfe, counted.sample_evals / prob.n, wall, counted.model_time, q,
                  prob.target(q), run.info)


def sweep_params(prob: Problem, s: Sampler) -> list:
    if s.kind == "adaptive":
        return list(prob.tols)
    if s.family == "diffusers":  # its schedulers take at most the 1000 training timesteps
        return sorted({max(s.order, round(b / s.order) * s.order) for b in prob.budgets if b / s.order < 1000})
    return sorted({max(1, round(b / s.order)) for b in prob.budgets})


def run_sweep(prob: Problem, s: Sampler, seed: int, counted: Counted, log, time_cap: float = 90.0) -> list[Result]:
    """Run the sweep until the target holds at two consecutive settings, or the sweep spent ``time_cap`` seconds."""
    out, met, spent = [], 0, 0.0
    for p in sweep_params(prob, s):
        try:
            r = run_one(prob, s, p, seed, counted)
        except Exception as e:  # noqa: BLE001 - a sampler that fails is reported, not fatal
            log(f"  {s.name} param {p}: FAILED {type(e).__name__}: {e}")
            break
        out.append(r)
        qs = " ".join(f"{k}={r.quality.get(k, math.nan):.4g}" for k, _ in prob.columns)
        log(f"  {s.name:22s} p={p:<7g} NFE {r.nfe_sample:7.1f} (batch {r.nfe_batch:5d})  {qs}  "
            f"{'OK' if r.ok else '  '}  {r.wall:6.2f}s")
        met = met + 1 if r.ok else 0
        if met >= 2:  # stop once the target holds at two consecutive budgets
            break
        if r.nfe_sample > 2.5 * max(prob.budgets):
            break
        spent += r.wall
        if spent > time_cap:
            log(f"  {s.name}: sweep stopped after {spent:.0f} s (time cap {time_cap:.0f} s)")
            r.info["time_cap"] = True
            break
    return out


# ============================================================================ report
def nfe_to_target(results: list[Result], per: str = "sample") -> tuple[str, float]:
    """The first setting of the sweep from which the target holds at two consecutive settings (robust to a lucky hit).

    A target met only at the sweep's last setting counts too (marked '~').
    """
    key = (lambda r: r.nfe_sample) if per == "sample" else (lambda r: r.nfe_batch)
    for i, r in enumerate(results):
        if r.ok and i + 1 < len(results) and results[i + 1].ok:
            return f"{key(r):.0f}", key(r)
    if results and results[-1].ok:
        return f"~{key(results[-1]):.0f}", key(results[-1])
    mx = max((key(r) for r in results), default=0)
    capped = bool(results) and results[-1].info.get("time_cap", False)
    return f">{mx:.0f}{' (time cap)' if capped else ''}", math.inf


def fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.4g}"


def plot_problem(prob: Problem, by_sampler: dict[str, list[Result]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ([("tv_ratio", "TV / Monte-Carlo floor", 1.5), ("spread", "|spread - 1|", 0.05)]
            if prob.name != "mnist-unet" else [("fd", "FD (judge CNN)", None), ("class_tv", "class TV", None)])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    styles = {"scoresde": "-", "k-diffusion": "--", "diffusers": ":"}
    colors = plt.get_cmap("tab20").colors
    for ax, (k, label, line) in zip(axes, keys):
        for j, (name, rs) in enumerate(by_sampler.items()):
            if not rs:
                continue
            xs = [r.nfe_sample for r in rs]
            ys = [abs(r.quality[k] - 1) if k == "spread" else r.quality[k] for r in rs]
            ys = [y if math.isfinite(y) else np.nan for y in ys]
            fam = next(s.family for s in ALL_SAMPLERS if s.name == name)
            ax.plot(xs, ys, styles[fam], color=colors[j % len(colors)], marker="o", ms=3, label=name)
        if line is not None:
            ax.axhline(line, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE per sample")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{prob.name}: quality vs NFE (solid scoresde, dashed k-diffusion, dotted diffusers)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


ALL_SAMPLERS: list[Sampler] = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer samples and shorter sweeps")
    ap.add_argument("--problems", nargs="+", default=["gmm8", "gmm64", "mnist-emp", "mnist-unet"])
    ap.add_argument("--samplers", nargs="+", default=None, help="names (default: all available)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--unet-num", type=int, default=None, help="samples for the U-Net (default 256; --quick 64)")
    ap.add_argument("--out", type=Path, default=RESULTS / "arena.md")
    a = ap.parse_args()
    torch.set_num_threads(1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    notes: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)

    samplers = scoresde_samplers()
    try:
        from scoresde.samplers.adaptive import ggf_sample  # noqa: F401
    except Exception as e:  # noqa: BLE001
        notes.append(f"GGF skipped: scoresde.samplers.adaptive failed to import ({type(e).__name__}: {e})")
        samplers = [s for s in samplers if not s.name.startswith("ggf")]
    try:
        samplers += kdiffusion_samplers(load_kdiffusion())
    except Exception as e:  # noqa: BLE001
        notes.append(f"k-diffusion skipped ({type(e).__name__}: {e})")
    try:
        samplers += diffusers_samplers(load_diffusers())
    except Exception as e:  # noqa: BLE001
        notes.append(f"diffusers skipped ({type(e).__name__}: {e})")
    ALL_SAMPLERS.extend(samplers)
    if a.samplers:
        unknown = sorted(set(a.samplers) - {s.name for s in samplers})
        if unknown:
            raise SystemExit(f"arena: unknown or unavailable sampler(s) {', '.join(unknown)}; "
                             f"available: {', '.join(s.name for s in samplers)}")
        samplers = [s for s in samplers if s.name in a.samplers]
    for n in notes:
        log(f"note: {n}")
    unet_num = a.unet_num or (64 if a.quick else 256)
    problems = build_problems(a.problems, a.quick, unet_num)

    all_results: dict[str, dict[str, list[Result]]] = {}
    for prob in problems:
        log(f"== {prob.name}: {prob.title}")
        counted = Counted(prob.model)
        by: dict[str, list[Result]] = {}
        plist = samplers
        if prob.name == "mnist-unet":
            plist = [s for s in samplers if s.name in UNET_SET]
        for s in plist:
            if prob.name == "mnist-unet":
                params = UNET_PARAMS[s.name](a.quick)
                rs = []
                for p in params:
                    try:
                        r = run_one(prob, s, p, a.seed, counted)
                    except Exception as e:  # noqa: BLE001
                        log(f"  {s.name} param {p}: FAILED {type(e).__name__}: {e}")
                        continue
                    rs.append(r)
                    log(f"  {s.name:22s} p={p:<7g} NFE {r.nfe_sample:7.1f} (batch {r.nfe_batch:4d}) FD {r.quality['fd']:.3f} "
                        f"class TV {r.quality['class_tv']:.3f}  wall {r.wall:6.1f}s model {r.model_time:6.1f}s")
                by[s.name] = rs
            else:
                by[s.name] = run_sweep(prob, s, a.seed, counted, log)
        if prob.name == "mnist-unet":
            ref = [r for r in by.get("em", []) if r.param == 200]
            if ref:
                fd_ref, tv_ref = ref[0].quality["fd"], ref[0].quality["class_tv"]
                prob.extra.update(fd_ref=fd_ref, tv_ref=tv_ref)
                for rs in by.values():
                    for r in rs:
                        r.ok = r.quality["fd"] <= 1.1 * fd_ref and r.quality["class_tv"] <= tv_ref + 0.03
        all_results[prob.name] = by
        plot_problem(prob, by, a.out.parent / f"arena_{prob.name}.png")

    # GGF bias on gmm8: fresh vs bridge light-mode weights at two tolerances
    bias_rows = []
    if any(p.name == "gmm8" for p in problems) and any(s.name == "ggf" for s in samplers):
        prob = next(p for p in problems if p.name == "gmm8")
        counted = Counted(prob.model)
        for rtol in (0.05, 0.01):
            for s in [s for s in ALL_SAMPLERS if s.name in ("ggf", "ggf-fresh")]:
                r = run_one(prob, s, rtol, a.seed, counted)
                bias_rows.append((rtol, s.name, r))
                log(f"  bias: {s.name} rtol {rtol}: light-mode weight {r.quality['light']:.4f} NFE {r.nfe_sample:.1f}")

    total = time.perf_counter() - t_start
    write_report(a, problems, all_results, bias_rows, notes, total)
    log(f"arena: wrote {a.out} in {total:.0f} s")
    return 0


UNET_SET = ("em", "seeds-1", "seeds-2", "seeds-3", "ggf", "kd-euler_a", "kd-dpmpp_2m_sde", "kd-dpmpp_3m_sde",
            "kd-dpm_adaptive", "df-ddpm", "df-dpmpp_2m_sde")
#: U-Net settings (steps, or rtol for the adaptive ones): EM-200 is the model's configured sampler (the reference)
UNET_PARAMS: dict[str, Callable[[bool], list]] = {
    "em": lambda q: [50, 200],
    "seeds-1": lambda q: [50],
    "seeds-2": lambda q: [12] if q else [12, 25],
    "seeds-3": lambda q: [8] if q else [8, 16],
    "ggf": lambda q: [0.1],
    "kd-euler_a": lambda q: [50],
    "kd-dpmpp_2m_sde": lambda q: [25],
    "kd-dpmpp_3m_sde": lambda q: [25],
    "kd-dpm_adaptive": lambda q: [0.1],
    "df-ddpm": lambda q: [50],
    "df-dpmpp_2m_sde": lambda q: [25],
}


def verdicts(problems, all_results) -> list[str]:
    """The brief's targets, answered from the measured NFE-to-target numbers."""
    out = []
    sde_ours = ("em", "pc", "seeds-1", "seeds-2", "seeds-3", "ggf")
    kinds = {s.name: s for s in ALL_SAMPLERS}
    peers_sde = [n for n, s in kinds.items() if s.family != "scoresde" and (s.kind == "sde" or n.endswith("eta1"))]

    def best(by, names, per="sample"):
        vals = [(nfe_to_target(by[n], per)[1], n) for n in names if by.get(n)]
        return min(vals) if vals else (math.inf, "-")

    def ratio(a, b):
        """b / a; inf when only a reached the target, nan when a did not."""
        if not math.isfinite(a):
            return math.nan
        return b / a if math.isfinite(b) else math.inf

    def x(r):
        return "n/a (not reached)" if math.isnan(r) else (">" if math.isinf(r) else "") + (
            "sweep max" if math.isinf(r) else f"{r:.2f}x")

    for prob in problems:
        if prob.name == "mnist-unet":
            continue
        by = all_results.get(prob.name, {})
        o, on = best(by, sde_ours)
        p, pn = best(by, peers_sde)
        out.append(f"- {prob.name}, T1: best scoresde SDE sampler {on} {o:.0f} NFE vs best peer SDE sampler {pn} {p:.0f}: "
                   f"{'met' if o <= p else 'missed'} (peer/ours {x(ratio(o, p))}; aim 2x: "
                   f"{'met' if ratio(o, p) >= 2 else 'missed'})")
        g, _ = best(by, ["ggf"])
        gb, _ = best(by, ["ggf"], "batch")
        d, _ = best(by, ["kd-dpm_adaptive"])
        out.append(f"- {prob.name}, T2: GGF {g:.0f} NFE/sample ({gb:.0f} per batch) vs k-diffusion dpm_adaptive {d:.0f}: "
                   f"{'met' if g < d else 'missed'} per sample, {'met' if gb < d else 'missed'} per batch")
        e, _ = best(by, ["em"])
        out.append(f"- {prob.name}, T3: GGF vs EM ({e:.0f}): {x(ratio(g, e))} fewer per sample, {x(ratio(gb, e))} per batch "
                   f"(>= 2x: {'met' if ratio(g, e) >= 2 else 'missed'} per sample, "
                   f"{'met' if ratio(gb, e) >= 2 else 'missed'} per batch)")
        s, sn = best(by, ["seeds-1", "seeds-2", "seeds-3"])
        c, cn = best(by, ["em", "pc"])
        out.append(f"- {prob.name}, T3: best SEEDS ({sn}, {s:.0f}) vs best of EM/PC ({cn}, {c:.0f}): {x(ratio(s, c))} fewer "
                   f"(>= 3x: {'met' if ratio(s, c) >= 3 else 'missed'})")
    return out


#: structural reasons behind the verdicts (the numbers are in the tables; this text does not depend on them)
NOTES = """## Why (structural notes; check them against the tables of the run above)

- Resolution: NFE to target has the sweep's resolution (about sqrt(2) in NFE) and the mode-weight TV is judged
  against its Monte-Carlo floor with one seed, so a sampler near the threshold can flip between settings; the
  two-consecutive-settings rule removes single lucky hits, not the noise. A sampler that meets the target at
  its first setting may need even fewer NFE.
- Euler-Maruyama / PC (uniform t) are explicit steps of a stiff problem at the data end: near t = eps the
  score's Lipschitz constant is 1/(s^2 + sigma_t^2), so a step is stable and accurate only for
  g^2 dt / (s^2 + sigma_t^2) << 1. With s = 0 (empirical digits, sigma_eps = 0.0105, g^2 = 0.1) that needs
  dt << 1e-3, more than ~1000 uniform steps: EM/PC end far too spread (spread ratio >> 1) until then. The
  exponential integrators (SEEDS, DPM-Solver++ SDE) integrate the linear part exactly and do not have this
  limit; the log-SNR / Karras grids also put their steps where sigma is small.
- GGF vs k-diffusion's dpm_adaptive: dpm_adaptive (eta 0) integrates the probability-flow ODE with a
  third-order exponential integrator (error estimate: orders 2 vs 3) and one step size for the whole batch;
  GGF integrates the reverse SDE with Euler-Maruyama / stochastic improved Euler (strong order 1/2 to 1, error
  estimate from their difference), so at equal tolerance it needs far smaller steps. The stochastic variant
  dpm_adaptive eta 1 is the like-for-like comparison. GGF's per-batch NFE exceeds its per-sample mean because
  a batched call is made while any sample is still integrating.
- GGF on the empirical digits: its mixed tolerance max(atol, rtol |x|) is in data units (|x| ~ 1 per pixel),
  while the state's error that matters at the end is O(sigma_eps) = 0.01 per pixel, below the tolerance, so
  the controller accepts steps for which the (extrapolated) improved-Euler step over-contracts the noise
  (spread ratio < 1; without extrapolation it over-disperses, > 1).
- diffusers' DDPMScheduler / EulerAncestral with "linspace" timesteps are uniform in the training index, so
  their last steps are coarse in sigma near 0: the within-mode spread converges slowly (from below). The
  DPM-Solver schedulers run with Karras sigmas here (use_karras_sigmas=True).
- Fresh noise after a GGF rejection biases the samples (the accepted increments are conditioned on a small
  error estimate); the Brownian bridge keeps the path's law, so "bridge" matches the truth within Monte-Carlo
  error at the same NFE.
- MNIST U-Net: FD at a few hundred samples moves by several units between neighbouring settings (compare the
  two SEEDS-2 rows), so its NFE-to-target is noise-limited; this problem is there for the solver overhead:
  the model call dominates the wall time of every sampler.
"""



def write_report(a, problems, all_results, bias_rows, notes, total) -> None:
    L = ["# Sampler arena: scoresde vs k-diffusion vs diffusers", "",
         (f"Command: `python benchmarks/arena.py {' '.join(sys.argv[1:])}` - wall time {total:.0f} s, "
          f"{platform.machine()}, 1 torch thread, torch {torch.__version__}, seed {a.seed}."), "",
         ("Protocol: same exact model, same adapters, same x_T (per-sample seeded streams); every model call "
         "counted by one wrapper. Each sampler stops at its last noisy level sigma_end (no final denoise) and is "
         "judged against the closed-form marginal there (mixture stds sqrt(s_k^2 + sigma_end^2)); see the "
         "docstring of benchmarks/arena.py. NFE = model evaluations per sample (adaptive GGF: mean over samples; "
         "batch = batched calls). Sweeps stop once the target holds at two consecutive settings; NFE to target is the first "
          "setting of that pair."), ""]
    for n in notes:
        L.append(f"- note: {n}")
    if notes:
        L.append("")
    summary: dict[str, dict[str, str]] = {}
    overhead: dict[str, str] = {}
    for prob in problems:
        by = all_results.get(prob.name, {})
        L += [f"## {prob.name}", "", prob.title + ".", "", f"Target: {prob.target_text}.", ""]
        if prob.name == "mnist-unet":
            L.append(f"Real held-out digits at the same N: FD {prob.extra['real_fd']:.3f}, class TV "
                     f"{prob.extra['real_class_tv']:.3f}.")
            if "fd_ref" in prob.extra:
                L.append(f"Reference EM-200: FD {prob.extra['fd_ref']:.3f}, class TV {prob.extra['tv_ref']:.3f}.")
            L.append("")
        hdr = ["sampler", "setting", "NFE/sample", "NFE batch"] + [h for _, h in prob.columns] + ["target", "wall s",
                                                                                                  "model s", "overhead %"]
        L += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
        for name, rs in by.items():
            for r in rs:
                ov = 100 * (r.wall - r.model_time) / r.wall if r.wall > 0 else math.nan
                setting = f"rtol {r.param:g}" if isinstance(r.param, float) else f"{r.param} steps"
                row = [name, setting, f"{r.nfe_sample:.1f}", str(r.nfe_batch)] + \
                      [fmt(r.quality.get(k, math.nan)) for k, _ in prob.columns] + \
                      ["met" if r.ok else "", f"{r.wall:.2f}", f"{r.model_time:.2f}", f"{ov:.1f}"]
                L.append("| " + " | ".join(row) + " |")
        L += ["", f"![{prob.name}](arena_{prob.name}.png)", ""]
        for name, rs in by.items():
            s, _ = nfe_to_target(rs, "sample")
            sb, _ = nfe_to_target(rs, "batch")
            summary.setdefault(name, {})[prob.name] = s if s == sb else f"{s} (batch {sb})"
        if prob.name == "mnist-unet" or (prob.name == "gmm64" and not any(p.name == "mnist-unet" for p in problems)):
            for name, rs in by.items():
                if rs:
                    ws, ms = sum(r.wall for r in rs), sum(r.model_time for r in rs)
                    overhead[name] = f"{100 * (ws - ms) / ws:.1f}"
    probs = [p.name for p in problems]
    L += ["## Summary: NFE per sample to reach each problem's target", "",
          "('>N': not reached in the sweep, N its largest NFE; GGF shows per-sample mean and per-batch calls.)", "",
          "| sampler | family | " + " | ".join(probs) + " | overhead % (" +
          ("U-Net" if "mnist-unet" in probs else "gmm64") + ") | notes |",
          "|" + "---|" * (len(probs) + 4)]
    for s in ALL_SAMPLERS:
        if s.name not in summary:
            continue
        L.append(f"| {s.name} | {s.family} | " + " | ".join(summary[s.name].get(p, "-") for p in probs) +
                 f" | {overhead.get(s.name, '-')} | {s.note} |")
    L.append("")
    if bias_rows:
        L += ["## GGF bias on gmm8: light-mode weight (truth 1/12 = 0.0833)", "",
              "| rtol | noise mode | light-mode weight | mode TV | spread | NFE/sample | NFE batch |", "|---|---|---|---|---|---|---|"]
        for rtol, name, r in bias_rows:
            L.append(f"| {rtol:g} | {'fresh' if name.endswith('fresh') else 'bridge'} | {r.quality['light']:.4f} | "
                     f"{r.quality['tv']:.4f} | {r.quality['spread']:.3f} | {r.nfe_sample:.1f} | {r.nfe_batch} |")
        L.append("")
    L += ["## Targets (computed from the NFE-to-target numbers above)", ""] + verdicts(problems, all_results)
    if overhead:
        ours = {k: v for k, v in overhead.items() if k in ("em", "seeds-1", "seeds-2", "seeds-3", "ggf", "pc")}
        worst = max(ours.items(), key=lambda kv: float(kv[1])) if ours else None
        if worst:
            L.append(f"- T4 solver overhead (wall beyond model calls, summed over each sampler's runs on "
                     f"{'the U-Net' if 'mnist-unet' in probs else 'gmm64'}): scoresde worst {worst[0]} {worst[1]}% "
                     f"({'met' if float(worst[1]) <= 5 else 'missed'} <= 5%); all: "
                     + ", ".join(f"{k} {v}%" for k, v in ours.items()))
    L += ["", NOTES]
    a.out.write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    sys.exit(main())
