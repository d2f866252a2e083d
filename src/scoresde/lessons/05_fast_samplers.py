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

The second half does the same on a trained MNIST model (lesson 4's VP-continuous network, or ``workdir=``): there the
judge is the offline digit classifier's Frechet distance (FD) against the training digits, at a few NFE per sampler.
"""
from __future__ import annotations

import importlib
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

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
    "SEEDS-2": [("seeds2", {"steps": k, "grid": "logsnr", "eta": 1.0, "denoise": True}) for k in (5, 15, 50)],
    "DPM-Solver++(2M)": [("dpmpp2m", {"steps": k, "denoise": True}) for k in (5, 15, 50)],
    "adaptive exponential": [("adaptive", {"rtol": r, "denoise": True}) for r in (0.2, 0.05, 0.01)],
}

#: the MNIST half: (family, sampler name, options, the NFE per sample the sampler must report, or None when adaptive)
MNIST_RUNS = {
    "Euler-Maruyama": [("pc", {"predictor": "euler_maruyama", "corrector": "none", "steps": k}, k) for k in (20, 50, 100)],
    "PC (RD + Langevin)": [("pc", {"steps": k}, 2 * k) for k in (10, 25, 50)],
    "SEEDS-2": [("seeds2", {"steps": k, "grid": "logsnr", "eta": 1.0, "denoise": True}, 2 * k + 1) for k in (5, 10, 25)],
    "DPM-Solver++(2M)": [("dpmpp2m", {"steps": k, "denoise": True}, k + 1) for k in (5, 10, 20)],
    "GGF (adaptive SDE)": [("ggf", {"rtol": r, "denoise": True}, None) for r in (0.1, 0.05)],
}


def run(out: Path, quick: bool = False, seed: int = 0, workdir: str | Path | None = None) -> dict:
    if workdir is not None:
        mnist_model(out, quick, workdir)  # a folder without a model fails here, before the mixture half runs
    gmm = _mixture_half(out, quick, seed)
    return {**gmm, "mnist": mnist_half(out, quick, seed, workdir)}


def _mixture_half(out: Path, quick: bool, seed: int) -> dict:
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


def _lesson4():
    return importlib.import_module("scoresde.lessons.04_mnist_vp_subvp")


def mnist_model(out: Path, quick: bool, workdir: str | Path | None):
    """(model, config, shape, step, where): ``workdir``, else lesson 4's VP-continuous model beside ``out``, else one
    trained here with lesson 4's config (full run: 400 steps, about 2 minutes; quick run: lesson 4's 10-step net)."""
    from scoresde.train import Trainer
    from scoresde.workdir import model_from_workdir

    if workdir is None:
        lesson4 = Path(out).parent / "04_mnist_vp_subvp" / "workdirs" / ("vp_continuous" + ("_quick" if quick else ""))
        if (lesson4 / "checkpoints").is_dir() and any((lesson4 / "checkpoints").iterdir()):
            workdir = lesson4
        else:
            cfg = _lesson4().config("VP continuous", quick)
            if not quick:
                cfg.training.n_iters = 400
            workdir = Path(out) / "mnist_workdir"
            Trainer(cfg, workdir, progress=not quick).train()
    model, cfg, shape, step = model_from_workdir(workdir, device="cpu")
    return model, cfg, shape, step, Path(workdir)


def mnist_half(out: Path, quick: bool = False, seed: int = 0, workdir: str | Path | None = None) -> dict:
    """Quality (the digit judge's FD) against NFE on a trained MNIST model, for each family of MNIST_RUNS."""
    from scoresde.data import mnist5k
    from scoresde.metrics import digit_report, load_digit_classifier
    from scoresde.workdir import to_unit_range

    model, cfg, shape, step, where = mnist_model(out, quick, workdir)
    n = 4 if quick else 64
    print(f"MNIST: {where} (step {step}, {cfg.sde.name} SDE, {cfg.model.prediction}-prediction), {n} samples per run")
    judge = None if quick else load_digit_classifier(progress=False)   # the quick run checks the NFE accounting only
    real_fd = float("nan")
    if judge is not None:
        test_x, _ = mnist5k("test")
        pick = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(seed))[:n]
        real_fd = digit_report(test_x[pick], judge).fd
        print(f"real held-out digits ({n}): FD {real_fd:.2f} (the floor at this N)")
    table, grids = {}, {}
    for family, runs in MNIST_RUNS.items():
        for name, options, expected in (runs[:1] if quick else runs):
            fn, kwargs = resolve(name, options)
            before = model.nfe
            t0 = time.perf_counter()
            res = sample(model, n, seed, fn, shape, batch_size=n, refill=False, **kwargs)
            wall = time.perf_counter() - t0
            counted = model.nfe - before
            x01 = to_unit_range(res.samples.float(), cfg.data.scale)
            fd = digit_report(x01, judge).fd if judge is not None else float("nan")
            row = {"family": family, "sampler": describe(name, options), "nfe": res.nfe, "expected_nfe": expected,
                   "reported_calls": res.info["total_calls"], "counted_calls": counted, "fd": fd, "wall_s": wall,
                   "outside": float(((res.samples < -1.2) | (res.samples > 1.2)).double().mean())}
            table[row["sampler"]] = row
            grids[row["sampler"]] = x01
            print(f"{family:22s} {row['sampler']:45s} NFE {res.nfe:4d} (calls counted by the model {counted:5d}); "
                  f"FD {fd:7.2f}; pixels outside [-1.2, 1.2] {100 * row['outside']:.2f} %; {wall:.0f} s")
    _mnist_figure(out / "05_mnist_fd_vs_nfe.png", table, grids, real_fd, n, step)
    return {"n": n, "real_fd": real_fd, "workdir": str(where), "step": step, "table": table}


def _mnist_figure(path: Path, table: dict, grids: dict, real_fd: float, n: int, step: int) -> None:
    from scoresde.plotting import image_grid

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1.4, 1, 1]})
    ax = axes[0]
    for fam in dict.fromkeys(r["family"] for r in table.values()):
        rows = sorted((r for r in table.values() if r["family"] == fam), key=lambda r: r["nfe"])
        ax.plot([r["nfe"] for r in rows], [r["fd"] for r in rows], "o-", label=fam)
    if math.isfinite(real_fd):
        ax.axhline(real_fd, ls="--", c="k", lw=1, label=f"real digits, n = {n}")
    fds = [r["fd"] for r in table.values() if math.isfinite(r["fd"])]
    ax.set_xscale("log"), ax.set_xlabel("NFE per sample")
    if fds and min(fds) > 0:  # a log axis keeps the fast samplers' curves apart (quick runs may have no FD)
        ax.set_yscale("log")
    ax.set_ylabel("digit-judge FD (lower is better)")
    ax.set_title(f"MNIST model (step {step}): FD of {n} samples against NFE", fontsize=10), ax.legend(fontsize=8)
    best = min(table.values(), key=lambda r: (r["fd"] if math.isfinite(r["fd"]) else 0, r["nfe"]))
    cheap = min((r for r in table.values() if r["family"] == "Euler-Maruyama"), key=lambda r: r["nfe"])
    for ax, row in zip(axes[1:], (cheap, best)):
        x = grids[row["sampler"]]
        ax.imshow(image_grid(x.numpy(), nrow=int(math.ceil(math.sqrt(len(x)))))[..., 0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{row['sampler']}\nNFE {row['nfe']}, FD {row['fd']:.1f}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


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
