"""Lesson 3 - NCSNv2's techniques on MNIST digits (Song & Ermon 2020, "Improved techniques for training
score-based generative models"; the score-based-lessons tutorial 03).

NCSN's hand-picked settings (sigma_1 = 1, L = 10 levels, T = 100 Langevin steps of eps = 2e-5 per level) fail on
data whose points are far apart: NCSNv2 computes them from the data instead.
* Technique 1: sigma_1 = the largest distance between two training points, so that the first level's noised
  density lets a chain reach every data point.
* Technique 2: a geometric sequence of levels whose ratio gamma keeps neighbouring levels' shells overlapping:
  Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) = 0.5.
* Technique 4: T steps per level with step alpha_i = eps sigma_i^2 / sigma_L^2, eps making the chain's variance
  after T steps match sigma_i^2 (f(eps) = 1).
* Technique 5: EMA of the weights (lesson 2 measures it). Technique 3, s(x, sigma) = s(x) / sigma, is the
  ``scaled_score`` prediction of :class:`scoresde.NetworkModel`.
The sampler here uses the *exact* score of the digits' empirical distribution (scoresde.exact), so what we see is
the effect of the settings alone, not of a network: the chains end on training digits, and which digits they reach
shows whether the settings let them explore.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import scoresde as s
from scoresde import ncsnv2
from scoresde.data import mnist5k
from scoresde.plotting import image_grid
from scoresde.samplers import annealed_langevin, pc_sample, sample

TITLE = "NCSNv2's techniques on MNIST: sigma_1, the number of levels and the step size computed from the data"

SIGMA_L = 0.01


def annealed_langevin_samples(data: torch.Tensor, sigma_1: float, levels: int, steps: int, eps: float, num: int,
                              seed: int) -> torch.Tensor:
    """Annealed Langevin (NCSNv2's Algorithm 1) on the exact empirical score: step eps sigma_i^2 / sigma_L^2."""
    model = s.ExactScoreModel(s.EmpiricalDistribution(data), s.VESDE(sigma_min=SIGMA_L, sigma_max=sigma_1))
    grid = torch.cat([torch.linspace(1, 0, levels, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    return sample(model, num, seed, pc_sample, tuple(data.shape[1:]), batch_size=num, grid=grid, predictor=None,
                  corrector=annealed_langevin, n_corrector=steps, snr=ncsnv2.ald_snr(eps, SIGMA_L)).samples


def judge(samples: torch.Tensor, data: torch.Tensor, labels: torch.Tensor) -> dict:
    """Each sample's nearest training digit: its class histogram and how many distinct digits were reached."""
    d = torch.cdist(samples.reshape(len(samples), -1).double(), data.reshape(len(data), -1).double())
    dist, idx = d.min(1)
    hist = torch.bincount(labels[idx], minlength=10).double() / len(samples)
    return {"class_hist": hist.tolist(), "class_tv": 0.5 * float((hist - 0.1).abs().sum()),
            "distinct": int(idx.unique().numel()), "median_distance": float(dist.median())}


def run(out: Path, quick: bool = False, seed: int = 0) -> dict:
    x, y = mnist5k("train")                                       # 4,500 digits in [0, 1], 450 per class
    n_data, num = (500, 36) if quick else (2000, 64)
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n_data]
    data, labels = x[pick], y[pick]
    dim = data[0].numel()

    sigma_1 = ncsnv2.max_pairwise_distance(data)                  # Technique 1
    gamma = ncsnv2.geometric_ratio(dim)                          # Technique 2
    levels = ncsnv2.num_noise_levels(sigma_1, SIGMA_L, gamma)
    steps = 5
    eps = ncsnv2.langevin_step_size(SIGMA_L, gamma, steps)       # Technique 4
    f_eps = ncsnv2.step_size_criterion(eps, SIGMA_L, gamma, steps)
    print(f"data: {n_data} digits, D = {dim}")
    print(f"Technique 1: sigma_1 = max pairwise distance = {sigma_1:.3f}")
    print(f"Technique 2: gamma = {gamma:.5f} (criterion {ncsnv2.ratio_criterion(gamma, dim):.4f}); "
          f"L = {levels} levels from {sigma_1:.2f} to {SIGMA_L}")
    print(f"Technique 4: T = {steps} steps per level, eps = {eps:.3e} (f(eps) = {f_eps:.4f}; "
          f"f at NCSN's eps 2e-5 with T = 100: {ncsnv2.step_size_criterion(2e-5, SIGMA_L, gamma, 100):.4f})")

    # how many training digits the first level can reach: exp(entropy) of p(digit | x) for x from the prior
    prior = torch.randn((64, dim), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    empirical = s.EmpiricalDistribution(data)
    reach = {}
    for name, sig in (("NCSN", 1.0), ("NCSNv2", sigma_1)):
        r = empirical.responsibilities(sig * prior, 1.0, sig)
        reach[name] = float((-(r * r.clamp_min(1e-300).log()).sum(-1)).exp().mean())
        print(f"{name:6s} sigma_1 = {sig:6.2f}: a chain starting from the prior sees {reach[name]:.1f} of "
              f"{n_data} digits (effective number, exp of the entropy of p(digit | x))")

    v1_steps = 20 if quick else 100
    settings = {"NCSN (sigma_1 1, L 10, eps 2e-5)": (1.0, 10, v1_steps, 2e-5 / 2),  # its step is eps sigma^2/sigma_L^2 / 2
                f"NCSNv2 (sigma_1 {sigma_1:.1f}, L {levels}, eps {eps:.1e})": (sigma_1, levels, steps, eps)}
    results, grids = {}, {}
    for name, (sig1, lev, t, e) in settings.items():
        xs = annealed_langevin_samples(data, sig1, lev, t, e, num, seed)
        results[name] = {**judge(xs, data, labels), "nfe": lev * t}
        grids[name] = xs
        r = results[name]
        print(f"{name}: NFE {r['nfe']}, distinct digits reached {r['distinct']} / {num}, class TV to uniform "
              f"{r['class_tv']:.3f}, class histogram " + " ".join(f"{h:.2f}" for h in r["class_hist"]))

    _criteria(out / "03_criteria.png", dim, gamma, eps, steps)
    _samples(out / "03_samples.png", grids, results)
    return {"n_data": n_data, "dim": dim, "sigma_1": sigma_1, "gamma": gamma, "levels": levels, "steps": steps,
            "eps": eps, "f_eps": f_eps, "reach": reach, "results": results, "data": data}


def _criteria(path: Path, dim: int, gamma: float, eps: float, steps: int) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    gs = [1 + 0.3 * i / 400 for i in range(401)]
    axes[0].plot(gs, [ncsnv2.ratio_criterion(g, dim) for g in gs])
    axes[0].axhline(0.5, ls="--", c="k", lw=1), axes[0].axvline(gamma, ls=":", c="tab:red")
    axes[0].set_xlabel("ratio gamma = sigma_(i-1) / sigma_i"), axes[0].set_title(
        f"Technique 2 (D = {dim}): overlap criterion, chosen gamma {gamma:.4f}", fontsize=10)
    es = [SIGMA_L**2 * 10 ** (-4 + 4 * i / 400) for i in range(400)]
    axes[1].semilogx(es, [ncsnv2.step_size_criterion(e, SIGMA_L, gamma, steps) for e in es], label=f"T = {steps}")
    axes[1].semilogx(es, [ncsnv2.step_size_criterion(e, SIGMA_L, gamma, 100) for e in es], label="T = 100")
    axes[1].axhline(1, ls="--", c="k", lw=1), axes[1].axvline(eps, ls=":", c="tab:red")
    axes[1].set_ylim(0.9, 1.4), axes[1].set_xlabel("eps"), axes[1].legend(fontsize=8)
    axes[1].set_title(f"Technique 4: variance ratio f(eps), chosen eps {eps:.2e}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def _samples(path: Path, grids: dict, results: dict) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    for ax, (name, xs) in zip(axes, grids.items()):
        ax.imshow(image_grid(xs.clamp(0, 1).numpy(), nrow=int(math.ceil(math.sqrt(len(xs)))))[..., 0], cmap="gray")
        ax.set_title(f"{name}\n{results[name]['distinct']} distinct digits of {len(xs)}", fontsize=9)
        ax.axis("off")
    ax = axes[2]
    for k, (name, r) in enumerate(results.items()):
        ax.bar([c + 0.4 * k - 0.2 for c in range(10)], r["class_hist"], width=0.4, label=name.split(" (")[0])
    ax.axhline(0.1, ls="--", c="k", lw=1)
    ax.set_xticks(range(10)), ax.set_xlabel("class of the nearest training digit"), ax.legend(fontsize=8)
    ax.set_title("class histogram of the samples (data: 0.1 each)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
