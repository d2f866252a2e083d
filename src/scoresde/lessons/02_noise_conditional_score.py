"""Lesson 2 - learning a noise-conditional score in 2-D (Song & Ermon 2019; Song et al. 2021, eq. 7).

We do not know the score of real data, but denoising score matching learns it: for x_sigma = x_0 + sigma n, the
minimiser of E || s(x_sigma, sigma) + n / sigma ||^2 is grad log p_sigma (Vincent 2011). One network conditioned
on sigma learns every noise level at once; the noisy levels fill the empty space between the modes, where the
data alone says nothing. The data here is an 8-mode ring whose score is known in closed form, so we can compare
the learned field with the exact one at every level, then sample with it: annealed Langevin over the levels, and
the same network as a continuous VE SDE (the PC sampler and the probability-flow ODE). A second network learns
the VP SDE's noise prediction for comparison. Both keep an exponential moving average of their weights (EMA).

Spectral bias: at small sigma the score is steep near each mode and flat between them, a function a plain MLP on the
raw coordinates learns very slowly (relative error ~0.5 / 0.7 at sigma = 0.2 / 0.1, however long it trains here).
Random Fourier features of x (Tancik et al. 2020: the input [x, sin(2 pi x B), cos(2 pi x B)], ``MLP(...,
fourier_features=32, fourier_scale=0.3)``) let it represent them; the lesson trains both and compares.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import scoresde as s
from scoresde.ema import EMA
from scoresde.losses import dsm_loss
from scoresde.nets import MLP
from scoresde.parameterization import scaled_time
from scoresde.quality import mixture_report
from scoresde.samplers import annealed_langevin, ode_sample, pc_sample, reverse_diffusion, sample

TITLE = "Learning a noise-conditional score in 2-D: denoising score matching, quiver plots, ALD / PC / ODE"

#: the noise levels at which the learned score is compared with the exact one (and drawn)
CHECK_SIGMAS = (1.0, 0.5, 0.2, 0.1)
#: the levels of the error-vs-sigma curve
CURVE_SIGMAS = (2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02)
#: random Fourier features of x: how many frequencies, and their scale (B ~ N(0, scale^2))
FOURIER = {"fourier_features": 32, "fourier_scale": 0.3}


def ring(k: int = 8, radius: float = 1.0, std: float = 0.1) -> s.GaussianMixture:
    """k equal Gaussian modes on a circle."""
    ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    return s.GaussianMixture(torch.full((k,), 1.0 / k), radius * torch.stack([ang.cos(), ang.sin()], -1), std)


def train(model: s.NetworkModel, data: torch.Tensor, iters: int, seed: int, batch: int = 256) -> tuple[list, EMA]:
    """Denoising score matching (Song et al. 2021, eq. 7) with Adam; returns the loss curve and the EMA of the weights."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.net.parameters(), lr=2e-3)
    ema = EMA(model.net, 0.999)
    losses = []
    for _ in range(iters):
        x0 = data[torch.randint(len(data), (batch,), generator=g)]
        u = torch.rand(batch, generator=g, dtype=torch.float64)
        loss = dsm_loss(model, x0, u, torch.randn(x0.shape, generator=g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model.net)
        losses.append(float(loss.detach()))
    return losses, ema


def score_error(model: s.ScoreModel, exact: s.ExactScoreModel, sigma: float, n: int, g: torch.Generator) -> float:
    """sqrt(E ||s_theta - s||^2 / E ||s||^2) over x ~ p_sigma: the learned score's relative error at one level."""
    sde = model.sde
    t = sde.t_from_sigma_tilde(torch.tensor(sigma, dtype=torch.float64))
    alpha, sig = sde.marginal(t)
    x = (alpha * exact.problem.sample(n, generator=g) + sig * torch.randn(n, 2, generator=g, dtype=torch.float64)).float()
    with torch.no_grad():
        learned, true = model.score(x, t).double(), exact.score(x, t).double()
    return math.sqrt(float(((learned - true) ** 2).sum(-1).mean() / (true**2).sum(-1).mean()))


def run(out: Path, quick: bool = False, seed: int = 0) -> dict:
    problem = ring()
    g = torch.Generator().manual_seed(seed)
    data = problem.sample(20000, generator=g).float()
    iters, n, width = (600, 400, 64) if quick else (4000, 2000, 128)

    ve = s.VESDE(sigma_min=0.01, sigma_max=3.0)   # sigma_max ~ the largest distance between two data points
    vp = s.VPSDE()
    # "VE" and "VP" see Fourier features of x; "VE plain" is the same MLP on the raw coordinates (the comparison)
    nets = {"VE": s.NetworkModel(MLP(2, width=width, depth=3, **FOURIER), ve, "scaled_score", scaled_time(999.0)),
            "VE plain": s.NetworkModel(MLP(2, width=width, depth=3), ve, "scaled_score", scaled_time(999.0)),
            "VP": s.NetworkModel(MLP(2, width=width, depth=3, **FOURIER), vp, "eps", scaled_time(999.0))}
    if quick:  # the quick run trains the two VE networks only
        del nets["VP"]
    curves, errors, models, curve = {}, {}, {}, {}
    for name, model in nets.items():
        curves[name], ema = train(model, data, iters, seed)
        averaged = s.NetworkModel(ema.copy_to(model.net).eval(), model.sde, model.prediction, model.time_input)
        exact = s.ExactScoreModel(problem, model.sde)
        model.net.eval()
        for which, m in (("last", model), ("ema", averaged)):
            errors[(name, which)] = [score_error(m, exact, sg, 4000, torch.Generator().manual_seed(seed + 1))
                                     for sg in CHECK_SIGMAS]
            print(f"{name} score network ({which} weights): relative score error at sigma "
                  + ", ".join(f"{sg:g}: {e:.3f}" for sg, e in zip(CHECK_SIGMAS, errors[(name, which)])))
        if name.startswith("VE"):
            curve[name] = [score_error(averaged, exact, sg, 4000, torch.Generator().manual_seed(seed + 1))
                           for sg in CURVE_SIGMAS]
        models[name] = averaged

    # sampling with the learned (EMA) scores, against the same samplers on the exact score
    levels, per_level = (30, 10) if quick else (200, 10)
    grid = torch.cat([torch.linspace(1, 0, levels, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    steps = 60 if quick else 500
    runs = {"VE annealed Langevin": ("VE", dict(sampler=pc_sample, grid=grid, predictor=None, corrector=annealed_langevin,
                                                n_corrector=per_level, snr=0.3)),
            "VE PC (reverse diffusion + Langevin)": ("VE", dict(sampler=pc_sample, steps=steps,
                                                               predictor=reverse_diffusion, snr=0.16)),
            "VE probability-flow ODE": ("VE", dict(sampler=ode_sample, rtol=1e-4, atol=1e-4)),
            "VP PC (reverse diffusion)": ("VP", dict(sampler=pc_sample, steps=steps, predictor=reverse_diffusion,
                                                     corrector=None)),
            "VP probability-flow ODE": ("VP", dict(sampler=ode_sample, rtol=1e-4, atol=1e-4))}
    samples, table = {}, {}
    for label, (sde_name, kw) in runs.items():
        if sde_name not in models:
            continue
        kw = dict(kw)
        fn = kw.pop("sampler")
        exact = s.ExactScoreModel(problem, nets[sde_name].sde)
        for which, m in (("learned", models[sde_name]),) + ((("exact", exact),) if not quick else ()):
            res = sample(m, n, seed, fn, (2,), batch_size=n, **kw)
            rep = mixture_report(problem, res.samples)
            spread = float(rep.spread_ratio.mean())
            table[(label, which)] = {"tv": rep.tv, "tv_floor": rep.tv_noise, "spread": spread, "nfe": res.nfe}
            if which == "learned":
                samples[label] = res.samples
        lr, ex = table[(label, "learned")], table.get((label, "exact"), {"tv": float("nan"), "spread": float("nan")})
        print(f"{label:38s} NFE {lr['nfe']:5d}  mode-weight TV learned {lr['tv']:.3f} / exact score {ex['tv']:.3f} "
              f"(floor {lr['tv_floor']:.3f}); spread / true: learned {lr['spread']:.2f} / exact score {ex['spread']:.2f}")

    _quiver(out / "02_score_fields.png", problem, {"Fourier MLP": models["VE"], "plain MLP": models["VE plain"]}, curve)
    _samples(out / "02_samples.png", problem, data, samples, curves)
    return {"check_sigmas": list(CHECK_SIGMAS), "score_error": {f"{a}_{b}": v for (a, b), v in errors.items()},
            "curve_sigmas": list(CURVE_SIGMAS), "score_error_curve": curve,
            "sampling": {f"{a} / {b}": v for (a, b), v in table.items()}}


def _quiver(path: Path, problem, learned: dict, curve: dict) -> None:
    sde = next(iter(learned.values())).sde
    exact = s.ExactScoreModel(problem, sde)
    xs = torch.linspace(-1.8, 1.8, 21)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    x = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
    rows = [("exact", exact)] + list(learned.items())
    fig, axes = plt.subplots(len(rows), len(CHECK_SIGMAS) + 1, figsize=(4 * (len(CHECK_SIGMAS) + 1), 4 * len(rows)))
    for j, sg in enumerate(CHECK_SIGMAS):
        t = sde.t_from_sigma_tilde(torch.tensor(sg, dtype=torch.float64))
        for i, (name, m) in enumerate(rows):
            with torch.no_grad():
                v = m.score(x, t).double() * sg  # sigma * score: comparable arrows at every level
            ax = axes[i, j]
            ax.quiver(gx.numpy(), gy.numpy(), v[:, 0].reshape(21, 21).numpy(), v[:, 1].reshape(21, 21).numpy(),
                      color="tab:blue" if name == "exact" else "tab:red", angles="xy", scale_units="xy", scale=4)
            ax.scatter(problem.means[:, 0], problem.means[:, 1], s=12, c="k")
            ax.set_title(f"{name}: sigma * score, sigma = {sg:g}", fontsize=10)
            ax.set_aspect("equal"), ax.set_xlim(-1.9, 1.9), ax.set_ylim(-1.9, 1.9)
    ax = axes[0, -1]
    for name, errs in curve.items():
        label = "Fourier MLP" if name == "VE" else "plain MLP"
        ax.loglog(CURVE_SIGMAS, errs, "o-", label=label, c="tab:red" if name == "VE" else "tab:gray")
    ax.axhline(1, ls="--", c="k", lw=1)
    ax.set_xlabel("noise level sigma"), ax.set_ylabel("relative score error (EMA weights)")
    ax.set_title("learned vs exact score, x ~ p_sigma", fontsize=10), ax.legend(fontsize=9)
    for i in range(1, len(rows)):
        axes[i, -1].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def _samples(path: Path, problem, data, samples: dict, curves: dict) -> None:
    panels = [("data", data[:len(next(iter(samples.values())))])] + list(samples.items())
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.6 * (len(panels) + 1), 3.8))
    for ax, (name, x) in zip(axes, panels):
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4, c="tab:blue" if name == "data" else "tab:red", linewidths=0)
        ax.set_title(name.replace(" (", "\n("), fontsize=9)
        ax.set_aspect("equal"), ax.set_xlim(-1.6, 1.6), ax.set_ylim(-1.6, 1.6)
    ax = axes[-1]
    for name, c in curves.items():
        k = max(1, len(c) // 100)
        ax.plot(range(0, len(c) - k + 1, k), [sum(c[i:i + k]) / k for i in range(0, len(c) - k + 1, k)], label=name)
    ax.set_yscale("log"), ax.set_xlabel("training step"), ax.set_title("DSM loss (eps-MSE)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
