"""Lesson 4 - MNIST with the VP SDE, discrete and continuous, and the sub-VP SDE (Song et al. 2021, sec. 3.4 and
App. B; Ho et al. 2020; the xdiffusion score-SDE lesson's three configs, ``configs/mnist/score_sde_*.yaml``).

Three ways to train and sample the same small U-Net on the bundled digits (``mnist5k``), equal steps each:
* VP discrete (DDPM): the DDPM loss E || eps_hat(x_i, i) - n ||^2 over the N = 1000 steps of the discrete chain
  (Ho et al. eq. 14), the network fed the step index; ancestral sampling (the DDPM posterior step).
* VP continuous: denoising score matching at t ~ U(1e-5, 1) of the VP SDE dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw
  (Song et al. eq. 7, lambda(t) = sigma_t^2); Euler-Maruyama on the reverse SDE.
* sub-VP: the same loss on dx = -beta(t) x / 2 dt + sqrt(beta(t) (1 - exp(-2 int beta))) dw, whose marginal has the
  same mean factor alpha_t but variance sigma_t^2 = (1 - alpha_t^2)^2, smaller than VP's 1 - alpha_t^2 at every
  t > 0; predictor-corrector sampling (reverse diffusion + Langevin).
Each model is judged by its samples (the offline digit judge: Frechet distance in its feature space against the
training digits, the class histogram) and by bits/dim of held-out digits through the probability-flow ODE.
The full-size configs (6.47 M parameters, an hour on a GPU) are ``configs/mnist/*.yaml``; this lesson overrides the
network with a smaller one of the same kind (see SMALL) so that it trains on two CPU cores.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from scoresde.config import config_from_dict
from scoresde.data import mnist5k
from scoresde.likelihood import bits_per_dim
from scoresde.metrics import digit_report, load_digit_classifier, train_digit_classifier
from scoresde.plotting import image_grid
from scoresde.train import Trainer
from scoresde.workdir import model_from_workdir, sample_from, to_unit_range

TITLE = "MNIST with the VP SDE (discrete and continuous) and the sub-VP SDE: samples, bits/dim, the digit judge"

#: what distinguishes the three variants: exactly the keys of the xdiffusion lesson's configs (configs/mnist/<config>),
#: except the discrete variant's time input (see the module doc of this lesson's page) and the number of sampling steps
VARIANTS = {
    "VP discrete": {"config": "score_sde_vpsde_discrete.yaml",
                    "sde": {"name": "vp", "beta_min": 0.1, "beta_max": 20.0, "N": 1000},
                    "model": {"prediction": "eps", "time_input": "ddpm_index"},
                    "training": {"loss": "ddpm"},
                    "sampling": {"sampler": "pc", "predictor": "ancestral_sampling", "corrector": "none"}},
    "VP continuous": {"config": "score_sde_vpsde_continuous.yaml",
                      "sde": {"name": "vp", "beta_min": 0.1, "beta_max": 20.0, "N": 1000},
                      "model": {"prediction": "eps", "time_input": "999t"},
                      "training": {"loss": "dsm"},
                      "sampling": {"sampler": "pc", "predictor": "euler_maruyama", "corrector": "none"}},
    "sub-VP": {"config": "score_sde_subvpsde.yaml",
               "sde": {"name": "subvp", "beta_min": 0.1, "beta_max": 20.0, "N": 1000},
               "model": {"prediction": "eps", "time_input": "999t"},
               "training": {"loss": "dsm"},
               "sampling": {"sampler": "pc", "predictor": "reverse_diffusion", "corrector": "langevin", "snr": 0.16,
                            "n_corrector": 1}},
}

#: the small network and training of the full run: the U-Net of configs/mnist_cpu.yaml at half its width (nf 8, 71 k
#: parameters instead of 0.28 M; the full-size configs have nf 64, 6.47 M), batch 32, Adam 1e-3
SMALL = {"model": {"arch": "unet", "kwargs": {"nf": 8, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [7],
                                              "image_size": 28, "dropout": 0.0, "resblock_type": "ddpm",
                                              "embedding_type": "positional"}},
         "training": {"reduce": "mean", "batch_size": 32, "n_iters": 800, "lr": 1.0e-3, "warmup": 100, "grad_clip": 1.0,
                      "ema_rate": 0.999, "snapshot_every": 200, "log_every": 25, "sample_every": 0}}
#: the quick run: a tiny U-Net, a few steps (tests)
QUICK = {"model": {"arch": "unet", "kwargs": {"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [],
                                              "image_size": 28, "dropout": 0.0, "resblock_type": "ddpm",
                                              "embedding_type": "positional"}},
         "training": {"reduce": "mean", "batch_size": 16, "n_iters": 10, "lr": 1.0e-3, "warmup": 0, "grad_clip": 1.0,
                      "ema_rate": 0.999, "snapshot_every": 10, "log_every": 5, "sample_every": 0}}

#: sampling budget: the same NFE for every variant (PC spends one predictor and one corrector evaluation per step)
NFE = {"full": 200, "quick": 10}


def config(name: str, quick: bool = False):
    """The lesson's config of variant ``name``: the variant's keys over SMALL (or QUICK)."""
    v, base = VARIANTS[name], copy.deepcopy(QUICK if quick else SMALL)
    nfe = NFE["quick" if quick else "full"]
    steps = nfe // 2 if v["sampling"].get("corrector", "none") != "none" else nfe
    d = {"data": {"dataset": "mnist5k", "scale": "[-1,1]"}, "sde": dict(v["sde"]),
         "model": {**base["model"], **v["model"]}, "training": {**base["training"], **v["training"]},
         "sampling": {**v["sampling"], "steps": steps, "num": 64}}
    return config_from_dict(d)


def marginal_std(sde, t: torch.Tensor) -> torch.Tensor:
    """sigma_t of x_t = alpha_t x_0 + sigma_t n (Song et al. eq. 29 / 31): sqrt(1 - alpha^2) VP, 1 - alpha^2 sub-VP."""
    return sde.marginal(t)[1]


def run(out: Path, quick: bool = False, seed: int = 0) -> dict:
    n_samples, n_bpd, rtol = (8, 2, 1e-2) if quick else (64, 16, 1e-4)
    test_x, _ = mnist5k("test")                                   # the 500 held-out digits, in [0, 1]
    pick = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(seed))
    held_out = test_x[pick[:n_bpd]]
    # the judge: cached after its first training (~30 s); the quick run trains a 1-epoch one instead (a code path only)
    judge = train_digit_classifier(epochs=1) if quick else load_digit_classifier(progress=False)
    real = digit_report(test_x[pick[:n_samples]], judge)
    print(f"real held-out digits ({n_samples}): FD {real.fd:.2f} (the floor at this N), class TV {real.class_tv:.3f}")

    rows, grids, sdes, logs = {}, {}, {}, {}
    for name in VARIANTS:
        cfg = config(name, quick)
        workdir = Path(out) / "workdirs" / (name.lower().replace(" ", "_").replace("-", "") + ("_quick" if quick else ""))
        t0 = time.perf_counter()
        trainer = Trainer(cfg, workdir, progress=False)
        resumed = trainer.step
        trainer.train()
        train_s = time.perf_counter() - t0
        if resumed >= cfg.training.n_iters:  # trained by an earlier run into the same folder: its logged time
            train_s = _logged_wall(workdir / "log.csv")
        model, cfg, shape, step = model_from_workdir(workdir, device="cpu")
        sdes[name] = model.sde
        t0 = time.perf_counter()
        res = sample_from(model, cfg, shape, n_samples, seed=seed, progress=False)
        sample_s = time.perf_counter() - t0
        x01 = to_unit_range(res.samples.float(), cfg.data.scale)
        rep = digit_report(x01, judge)
        t0 = time.perf_counter()
        bpd = bits_per_dim(model, held_out, data_range=cfg.data.scale, seed=seed, divergence="hutchinson",
                           rtol=rtol, atol=rtol)
        bpd_s = time.perf_counter() - t0
        rows[name] = {"workdir": str(workdir), "steps": step, "resumed_from": resumed, "train_s": train_s,
                      "nfe": res.nfe, "sample_s": sample_s, "fd": rep.fd, "kid": rep.kid, "class_hist": rep.class_hist,
                      "class_tv": rep.class_tv, "bpd": bpd.mean, "bpd_se": bpd.stderr, "bpd_nfe": bpd.nfe, "bpd_s": bpd_s,
                      "outside": float(((res.samples < -1.2) | (res.samples > 1.2)).double().mean())}
        grids[name] = x01
        logs[name] = _loss_curve(workdir / "log.csv")
        r = rows[name]
        print(f"{name:14s} {cfg.training.loss} loss, {step} steps in {train_s:.0f} s"
              f"{f' (resumed at {resumed})' if resumed else ''}; {cfg.sampling.sampler} "
              f"{cfg.sampling.options.get('predictor')}+{cfg.sampling.options.get('corrector')} NFE {r['nfe']} "
              f"({sample_s:.0f} s): FD {r['fd']:.2f}, class TV {r['class_tv']:.3f}; bits/dim {r['bpd']:.3f} +- "
              f"{r['bpd_se']:.3f} ({n_bpd} held-out digits, ODE NFE {r['bpd_nfe']}, {bpd_s:.0f} s)")

    # the two SDEs' marginal standard deviations on a grid of times (the variance claim, from the lesson's own SDEs)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)[1:]
    std = {"VP": marginal_std(sdes["VP continuous"], t), "sub-VP": marginal_std(sdes["sub-VP"], t)}
    ratio = std["sub-VP"] / std["VP"]
    print(f"marginal std sub-VP / VP: {float(ratio.min()):.4f} .. {float(ratio.max()):.4f} over t in (0, 1] "
          f"(= sqrt(1 - alpha_t^2) < 1)")
    _samples(out / "04_samples.png", grids, rows, real.fd)
    _compare(out / "04_compare.png", t, std, rows, real, logs)
    return {"rows": rows, "real": {"fd": real.fd, "class_tv": real.class_tv, "class_hist": real.class_hist},
            "n_samples": n_samples, "n_bpd": n_bpd, "t": t, "std": std, "sdes": sdes,
            "configs": {name: config(name, quick) for name in VARIANTS}}


def _logged_wall(log: Path) -> float:
    """The wall time the last training session logged (log.csv's wall_s)."""
    lines = [ln.split(",") for ln in log.read_text().splitlines()[1:] if ln.split(",")[0].isdigit()]
    return float(lines[-1][5]) if lines else float("nan")


def _loss_curve(log: Path) -> tuple[list[int], list[float]]:
    steps, losses = [], []
    for line in log.read_text().splitlines()[1:]:
        parts = line.split(",")
        if parts[0].isdigit():
            steps.append(int(parts[0]))
            losses.append(float(parts[1]))
    return steps, losses


def _samples(path: Path, grids: dict, rows: dict, real_fd: float) -> None:
    fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids), 4.8))
    for ax, (name, x) in zip(axes, grids.items()):
        r = rows[name]
        ax.imshow(image_grid(x.numpy(), nrow=int(math.ceil(math.sqrt(len(x)))))[..., 0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{name} ({r['steps']} training steps)\nNFE {r['nfe']}, FD {r['fd']:.1f} (real {real_fd:.1f}), "
                     f"{r['bpd']:.2f} bits/dim", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def _compare(path: Path, t: torch.Tensor, std: dict, rows: dict, real, logs: dict) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for name, s in std.items():
        ax.plot(t.numpy(), s.numpy(), label=f"{name}: sigma_t = {'sqrt(1 - a^2)' if name == 'VP' else '1 - a^2'}")
    ax.set_yscale("log"), ax.set_xlabel("t")
    ax.set_title("marginal std of x_t = a_t x_0 + sigma_t n (same a_t);\nsub-VP / VP = sqrt(1 - a_t^2) < 1", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    width = 0.8 / (len(rows) + 1)
    for k, (name, r) in enumerate([("real held-out", {"class_hist": real.class_hist})] + list(rows.items())):
        ax.bar([c - 0.4 + width * (k + 0.5) for c in range(10)], r["class_hist"], width=width, label=name)
    ax.axhline(0.1, ls="--", c="k", lw=1)
    ax.set_xticks(range(10)), ax.set_xlabel("digit (the judge's prediction)"), ax.legend(fontsize=8)
    ax.set_title("class histogram of the samples (data: 0.1 each)", fontsize=10)
    ax = axes[2]
    for name, (steps, losses) in logs.items():
        ax.plot(steps, losses, label=name)
    ax.set_yscale("log"), ax.set_xlabel("training step"), ax.legend(fontsize=8)
    ax.set_title("training loss (per-pixel eps-MSE, batch of the step)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
