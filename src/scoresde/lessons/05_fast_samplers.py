"""Lesson 5 - fast samplers side by side: quality against the number of score evaluations (NFE).

On an exact problem (the sharp 8-mode ring ``gmm8`` under the VP SDE, closed-form score) every sampler's error is
the solver's alone. The judge is closed-form too: the sampled mode weights against the true ones (total variation,
with the floor an exact sampler would show with this many samples) and the spread within each mode (1 = right).
* Euler-Maruyama on the reverse SDE (Song et al. 2021) and predictor-corrector (reverse diffusion + Langevin):
  first-order, they need hundreds of steps.
* The probability-flow ODE with an adaptive Runge-Kutta solver (dopri5): deterministic, few steps when smooth.
* Gotta Go Fast (Jolicoeur-Martineau et al. 2021): an adaptive SDE solver, each sample its own step sizes.
* SEEDS (Gonzalez et al. 2023) and DPM-Solver++ (Lu et al. 2022): exponential integrators that solve the linear part
  of the SDE / ODE exactly and take large steps in log-SNR; and the adaptive exponential SDE solver.
Each sampler reports its NFE; the model counts its own calls, and the two agree (the tests check it).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import scoresde as s
from scoresde.quality import mixture_report
from scoresde.samplers import sample
from scoresde.samplers.registry import describe, resolve

TITLE = "Fast samplers side by side: quality against NFE on an exact 8-mode mixture"

#: (family, sampler name, options) - each family at a few budgets
RUNS = {
    "Euler-Maruyama": [("pc", {"predictor": "euler_maruyama", "corrector": "none", "steps": k}) for k in (20, 100, 500)],
    "PC (RD + Langevin)": [("pc", {"steps": k}) for k in (10, 50, 250)],
    "ODE dopri5": [("ode", {"rtol": r, "atol": r, "denoise": True}) for r in (1e-2, 1e-3, 1e-5)],
    "GGF (adaptive SDE)": [("ggf", {"rtol": r, "denoise": True}) for r in (0.2, 0.05, 0.01)],
    "SEEDS-2": [("seeds2", {"steps": k, "denoise": True}) for k in (5, 15, 50)],
    "DPM-Solver++(2M)": [("dpmpp2m", {"steps": k, "denoise": True}) for k in (5, 15, 50)],
    "adaptive exponential": [("adaptive", {"rtol": r, "denoise": True}) for r in (0.2, 0.05, 0.01)],
}


def run(out: Path, quick: bool = False, seed: int = 0) -> dict:
    problem = s.load_problem("gmm8")
    model = s.ExactScoreModel(problem, s.VPSDE())
    n = 500 if quick else 10000
    table = {}
    for family, runs in RUNS.items():
        for name, options in (runs[:2] if quick else runs):
            fn, kwargs = resolve(name, options)
            before = model.nfe
            res = sample(model, n, seed, fn, (2,), batch_size=n, refill=False, **kwargs)
            counted = model.nfe - before
            rep = mixture_report(problem, res.samples)
            spread = float(rep.spread_ratio.mean())
            row = {"family": family, "sampler": describe(name, options), "nfe": res.nfe,
                   "reported_calls": res.info["total_calls"], "counted_calls": counted, "tv": rep.tv,
                   "tv_floor": rep.tv_noise, "spread": spread}
            table[row["sampler"]] = row
            print(f"{family:22s} {row['sampler']:45s} NFE {res.nfe:5d} (calls counted by the model {counted:5d}); "
                  f"mode-weight TV {rep.tv:.3f} (floor {rep.tv_noise:.3f}); spread / true {spread:.2f}")
    _figure(out / "05_quality_vs_nfe.png", table, n)
    return {"n": n, "table": table}


def _figure(path: Path, table: dict, n: int) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    families = list(dict.fromkeys(r["family"] for r in table.values()))
    for fam in families:
        rows = sorted((r for r in table.values() if r["family"] == fam), key=lambda r: r["nfe"])
        nfe = [r["nfe"] for r in rows]
        axes[0].plot(nfe, [r["tv"] for r in rows], "o-", label=fam)
        axes[1].plot(nfe, [abs(r["spread"] - 1) for r in rows], "o-", label=fam)
    floor = next(iter(table.values()))["tv_floor"]
    axes[0].axhline(floor, ls="--", c="k", lw=1, label=f"exact sampler, n = {n}")
    axes[0].set_ylabel("mode-weight total variation"), axes[1].set_ylabel("|within-mode spread / true - 1|")
    for ax in axes:
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("NFE per sample")
    axes[0].legend(fontsize=7)
    axes[0].set_title("gmm8 under VP: weights of the 8 modes", fontsize=10)
    axes[1].set_title("width of the modes", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
