"""Lesson 1 - Langevin dynamics with an exact score (Song & Ermon 2019, section 2; the score-based-lessons tutorial 01).

Unadjusted Langevin dynamics x <- x + eps grad log p(x) + sqrt(2 eps) z samples p as eps -> 0 and the number
of steps -> infinity. Here the score is exact: the closed form of a 2-D Gaussian mixture (scoresde.exact).
Two modes far apart, weights 0.8 / 0.2: the chains started from broad noise stay in the basin they start in, so
the sampled mode weights are those of the start, not 0.8 / 0.2. Annealing - Langevin on the noised densities
p_sigma for a decreasing sequence of sigma (annealed Langevin dynamics) - lets the chains cross while the modes
still overlap, and the weights come out right.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import scoresde as s
from scoresde.quality import mixture_report
from scoresde.samplers import annealed_langevin, pc_sample, sample

TITLE = "Langevin dynamics with an exact score: wrong mode weights, and annealing repairs them"


def langevin(score, x: torch.Tensor, step: float, steps: int, generator: torch.Generator) -> torch.Tensor:
    """Plain (unadjusted) Langevin dynamics: x <- x + step * score(x) + sqrt(2 step) z."""
    for _ in range(steps):
        x = x + step * score(x) + math.sqrt(2 * step) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x


def run(out: Path, quick: bool = False, seed: int = 0) -> dict:
    n = 2000 if quick else 10000
    problem = s.load_problem("gmm2")  # weights 0.8 / 0.2, means (-0.6, 0) and (0.6, 0), std 0.1
    g = torch.Generator().manual_seed(seed)
    truth = problem.sample(n, generator=g)

    # 1. plain Langevin on the data score, started from uniform noise over [-1.5, 1.5]^2
    x0 = (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * 3
    step, steps = 1e-3, (300 if quick else 1000)
    plain = langevin(lambda x: problem.score(x, 1.0, 0.0), x0, step, steps, g)

    # 2. annealed Langevin: the same chain at each of L noise levels sigma_1 > ... > sigma_L (VE: x_t = x_0 + sigma_t n),
    #    step 2 (snr sigma_i)^2 (Song & Ermon 2019's alpha_i proportional to sigma_i^2), T steps per level.
    #    Coarse (10 levels, as NCSN on images) and slow (100-200 levels): the weights freeze while the modes separate,
    #    so the chains must stay near equilibrium through that range of sigma.
    sde = s.VESDE(sigma_min=0.01, sigma_max=2.0)
    model = s.ExactScoreModel(problem, sde)

    def annealed(levels: int, per_level: int) -> torch.Tensor:
        grid = torch.cat([torch.linspace(1, 0, levels, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
        return sample(model, n, seed, pc_sample, (2,), batch_size=n, grid=grid, predictor=None,
                      corrector=annealed_langevin, n_corrector=per_level, snr=0.3).samples

    coarse = annealed(10, 30)
    levels, per_level = (100, 10) if quick else (200, 10)
    slow = annealed(levels, per_level)

    rows = {}
    runs = {"exact samples": truth, "plain Langevin": plain, "annealed, 10 levels": coarse,
            f"annealed, {levels} levels": slow}
    for name, x in runs.items():
        rep = mixture_report(problem, x)
        w = rep.weights.tolist()
        se = math.sqrt(0.8 * 0.2 / n)  # Monte-Carlo standard error of a sampled weight
        rows[name] = {"weights": w, "error": abs(w[0] - 0.8), "se": se}
        print(f"{name:20s} mode weights {w[0]:.3f} / {w[1]:.3f} (true 0.800 / 0.200); "
              f"|error| {abs(w[0] - 0.8):.3f} = {abs(w[0] - 0.8) / se:.1f} Monte-Carlo standard errors ({se:.4f})")

    _figure(out / "01_langevin.png", problem, runs, rows)
    return {"n": n, "exact": rows["exact samples"], "plain": rows["plain Langevin"],
            "coarse": rows["annealed, 10 levels"], "annealed": rows[f"annealed, {levels} levels"],
            "nfe": {"plain": steps, "coarse": 300, "annealed": levels * per_level}}


def _figure(path: Path, problem, runs, rows) -> None:
    fig, axes = plt.subplots(1, 5, figsize=(20, 4))
    lim = (-1.2, 1.2)
    xs = torch.linspace(*lim, 200, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    dens = problem.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)).exp().reshape(200, 200)
    for ax, (name, x) in zip(axes[:4], runs.items()):
        ax.contour(gx.numpy(), gy.numpy(), dens.numpy(), levels=6, colors="0.6", linewidths=0.6)
        ax.hist2d(x[:, 0].numpy(), x[:, 1].numpy(), bins=80, range=[lim, lim], cmap="Blues", cmin=1)
        w = rows[name]["weights"]
        ax.set_title(f"{name}\nleft / right mode: {w[0]:.2f} / {w[1]:.2f}", fontsize=10)
        ax.set_xlim(*lim), ax.set_ylim(-0.7, 0.7), ax.set_aspect("equal")
    ax = axes[4]
    names = list(rows)
    for j, name in enumerate(names):
        ax.bar(j, rows[name]["weights"][0], color=("0.5", "tab:red", "tab:orange", "tab:green")[j],
               yerr=2 * rows[name]["se"], capsize=4)
    ax.axhline(0.8, color="k", ls="--", lw=1, label="true weight 0.8")
    ax.set_xticks(range(len(names)), ["exact", "plain", "annealed\n10 levels", f"annealed\n{names[3].split()[1]} levels"])
    ax.set_ylabel("weight of the left mode")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=9)
    ax.set_title("mode weight (bars: +-2 Monte-Carlo s.e.)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
