"""The ``scoresde`` command line. Names map to callables here, and only here."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CLIError", "main"]

EPILOG_SAMPLE = """\
examples:
  scoresde sample --problem gmm8 --sde vp --num 2000 --seed 0 --out out/gmm8.npz
  scoresde sample --problem gmm8 --sde ve --sampler pc --predictor reverse_diffusion \\
      --corrector langevin --snr 0.16 --steps 500 --out out/ve_pc.npz
  scoresde sample --problem mixture.json --sde subvp --sampler ode --rtol 1e-5 --atol 1e-5 --out out/ode.npz
  scoresde sample --problem gaussian --sampler ode --method rk4 --steps 50 --out out/rk4.npz
  scoresde sample --problem gmm8 --sde vp --sampler seeds3 --steps 20 --out out/seeds3.npz
  scoresde sample --problem gmm8 --sde vp --sampler ggf --rtol 0.05 --out out/ggf.npz
  scoresde sample --problem gmm64 --sde vp --sampler dpmpp2m --steps 15 --grid logsnr --out out/2m.npz
  scoresde sample --workdir runs/mnist --sampler seeds2 --steps 25 --num 64 --out runs/mnist/seeds2.npz

A JSON mixture file holds {"weights": [...], "means": [[...], ...], "stds": [...]}.
The .npz holds `samples` (num x dim, data space) and `nfe` (exact network evaluations);
a PNG plot is written beside it. Sample i of a run with seed S is the same whatever --num
or --batch-size (except with the Langevin corrector, whose step uses batch-averaged norms,
and the adaptive ODE solver, whose steps are shared by a batch; ggf steps every sample on its own).
NFE: pc 1 per predictor/corrector step; seedsK/etdK K per step; dpmpp2m, ddim 1 per step; edm 2 per
step (1 for the last); ggf 2 per attempt, rejections included (the .npz also holds nfe_per_sample);
a final --denoise costs 1.
"""


EPILOG_TRAIN = """\
examples:
  scoresde train --config configs/mnist_cpu.yaml --workdir runs/mnist
  scoresde train --config configs/toy_gmm.yaml --workdir runs/toy --set training.n_iters=3000
  scoresde sample --workdir runs/mnist --num 64 --out runs/mnist/grid.npz
"""


EPILOG_LIKELIHOOD = """\
examples:
  scoresde likelihood --workdir runs/mnist --split test --num 100 --repeats 2
  scoresde likelihood --problem gmm8 --sde vp --num 500 --seed 0 --out out/gmm8_logp.npz
  scoresde likelihood --problem mixture.json --sde ve --data points.npy --out out/logp.npz
  scoresde likelihood --problem gmm64 --sde subvp --divergence hutchinson --probe gaussian --probes 4 \\
      --num 200 --out out/gmm64_logp.npz

log p_{t_end}(x) (nats) = log p_T(x_T) + int_{t_end}^T div f~ dt along the probability-flow ODE (dopri5).
With --workdir on images: bits/dim of uniformly dequantised held-out images, averaged over
--repeats dequantisation draws, +- the standard error across images (offset 8 bits for [0,1]
data, 7 for data centred to [-1,1]). With --problem: per-point `logp` (nats) and `nfe` in the
.npz, compared with the closed-form log-density of the marginal at t_end. --data takes an (N, d)
.npy, or an .npz holding `samples` (the output of `scoresde sample`).
Divergence: exact (one backward pass per dimension; the default for points of up to 64 dims) or
Hutchinson-Skilling with --probes probes per point, fixed for the solve; point i's probes come
from the per-sample seed (--seed, i), whatever --batch-size.
"""

EPILOG_ENCODE = """\
examples:
  scoresde encode --problem gmm8 --sde vp --num 200 --out out/latents.npz
  scoresde encode --workdir runs/mnist --split test --num 16 --rtol 1e-6 --atol 1e-6 --out out/mnist_latents.npz

Encodes data (at t = t_end) to latents at T along the probability-flow ODE, decodes them back and
reports the round-trip error max_i |x_i - decode(encode(x))_i|. The .npz holds `latents`,
`reconstruction`, `error` (per point), `nfe_encode` and `nfe_decode`.
"""


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise CLIError(f"{self.prog}: {message} (see --help)")


def _sde_names() -> dict[str, Callable[..., Any]]:
    from .sde import VESDE, VPSDE, SubVPSDE

    return {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}


def _predictors() -> dict[str, Any]:
    from .samplers import pc

    return {"euler_maruyama": pc.euler_maruyama, "reverse_diffusion": pc.reverse_diffusion,
            "ancestral_sampling": pc.ancestral_sampling, "none": None}


def _correctors() -> dict[str, Any]:
    from .samplers import pc

    return {"langevin": pc.langevin, "ald": pc.annealed_langevin, "none": None}


def _positive(kind: type):
    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {s!r}") from None
        if not v > 0 or (kind is float and not math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
        return v

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _nonneg_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def _add_sde_arguments(group, sde_help: str) -> None:
    """--sde and its parameters (for exact-score problems; a trained model brings its own)."""
    group.add_argument("--sde", choices=sorted(_sde_names()), help=sde_help)
    group.add_argument("--sigma-min", type=_positive(float), help="VE: smallest noise level (default 0.01)")
    group.add_argument("--sigma-max", type=_positive(float), help="VE: largest noise level (default 50)")
    group.add_argument("--beta-min", type=_positive(float), help="VP/sub-VP: beta(0) (default 0.1)")
    group.add_argument("--beta-max", type=_positive(float), help="VP/sub-VP: beta(1) (default 20)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="scoresde", description="Score-based generative modelling through SDEs (Song et al. 2021).",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("sample", help="draw samples with a PC or probability-flow ODE sampler",
                       description="Draw samples from an exact-score problem (a closed-form score, no training) "
                                   "with any sampler, and write them to an .npz plus a PNG plot.",
                       epilog=EPILOG_SAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = s.add_argument_group("what to sample")
    src.add_argument("--problem", metavar="NAME_OR_JSON",
                     help="a built-in problem (see `scoresde problems`) or a JSON mixture file")
    src.add_argument("--workdir", metavar="W", help="a training workdir: sample its newest checkpoint (EMA weights)")
    src.add_argument("--trust-checkpoint", action="store_true",
                     help="allow full unpickling of the checkpoint (only for files you trust)")
    _add_sde_arguments(src, "forward SDE of an exact problem (default vp)")
    src.add_argument("--t-end", "--eps", dest="t_end", type=_positive(float),
                     help="end time of sampling (default 1e-5 VE, 1e-3 VP/sub-VP; --eps is the old name)")

    run = s.add_argument_group("run")
    run.add_argument("--num", type=_positive(int), default=1000, help="number of samples (default 1000)")
    run.add_argument("--seed", type=int, default=0, help="run seed; sample i uses the per-sample seed (seed, i)")
    run.add_argument("--batch-size", type=_positive(int), default=10000, help="samples per batch (default 10000)")
    run.add_argument("--out", required=True, metavar="FILE.npz", help="output .npz; a PNG plot is written beside it")
    run.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    smp = s.add_argument_group("sampler (options apply to the samplers named in brackets)")
    smp.add_argument("--sampler", choices=SAMPLERS,
                     help="pc: predictor-corrector; ode: probability-flow ODE; seeds1/2/3: SEEDS exponential SDE "
                          "solvers; etd1/2/3: exponential ODE solvers (DPM-Solver++ singlestep); dpmpp2m; ddim; "
                          "edm: EDM Heun (+churn); ggf: Gotta Go Fast adaptive SDE solver (default pc; with --workdir the "
                          "trained config's sampler)")
    smp.add_argument("--steps", type=_positive(int), help="[all but ggf] number of steps (default pc 1000, "
                                                          "fixed-step ode 100, fast samplers 20, edm 18)")
    smp.add_argument("--predictor", choices=list(_predictors()), help="[pc] predictor (default reverse_diffusion)")
    smp.add_argument("--corrector", choices=list(_correctors()), help="[pc] corrector (default langevin)")
    smp.add_argument("--snr", type=_positive(float), help="[pc] corrector signal-to-noise ratio (default 0.16 VE, 0.01 VP)")
    smp.add_argument("--n-corrector", type=_nonneg_int, help="[pc] corrector steps per predictor step (default 1)")
    smp.add_argument("--denoise", action=argparse.BooleanOptionalAction, default=None,
                     help="[pc, ggf, fast samplers] final Tweedie denoise at t_end, one NFE (default: on for pc and "
                          "ggf, off for the exponential / edm samplers)")
    smp.add_argument("--method", choices=["dopri5", "euler", "heun", "rk4"], help="[ode] solver (default dopri5)")
    smp.add_argument("--rtol", type=_positive(float), help="[ode dopri5, ggf] relative tolerance "
                                                           "(default ode 1e-5, ggf 0.05)")
    smp.add_argument("--atol", type=_positive(float), help="[ode dopri5, ggf] absolute tolerance "
                                                           "(default ode 1e-5, ggf 0.0078 = 2/255)")
    smp.add_argument("--grid", choices=["logsnr", "time", "quadratic", "edm"],
                     help="[seeds*, etd*, dpmpp2m, ddim, edm] time grid (default logsnr; edm: edm rho=7)")
    smp.add_argument("--eta", type=float, help="[seeds*, ddim] noise level from 0 (ODE) to 1 (reverse SDE) "
                                               "(default seeds 1, ddim 0)")
    smp.add_argument("--form", choices=["data", "noise"], help="[seeds*, etd*] data- or noise-prediction form "
                                                               "(default data)")
    smp.add_argument("--s-churn", type=float, help="[edm] EDM's S_churn (default 0: deterministic Heun)")
    smp.add_argument("--noise-mode", choices=["bridge", "fresh"],
                     help="[ggf] a rejected step is retried on the Brownian bridge of the drawn increment "
                          "(bridge, default: unbiased) or with fresh noise (the paper; biases the samples)")
    smp.add_argument("--norm", choices=["l2_scaled", "l2", "linf"], help="[ggf] error norm (default l2_scaled)")

    t = sub.add_parser("train", help="train a score model (resumes when the workdir holds a checkpoint)",
                       description="Train a score network with denoising score matching. Resumes from the newest "
                                   "checkpoint in --workdir; writes checkpoints/, log.csv, config.yaml and a sample "
                                   "grid there.", epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--config", metavar="C.yaml", help="a YAML config (see configs/); default: all defaults")
    t.add_argument("--workdir", required=True, metavar="W", help="where checkpoints, logs and samples go")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set training.batch_size=64 (repeatable)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")

    lk = sub.add_parser("likelihood", help="log-likelihood / bits-per-dim through the probability-flow ODE",
                        description="Exact log-likelihoods through the probability-flow ODE (Song et al. 2021, "
                                    "eq. 39): bits/dim of a trained model on held-out images (--workdir), or "
                                    "per-point log-densities under an exact-score problem (--problem).",
                        epilog=EPILOG_LIKELIHOOD, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_flow_arguments(lk, "FILE.npz", "optional .npz for per-point logp (nats), nfe (and bpd with --workdir)")
    lk.add_argument("--repeats", type=_positive(int),
                    help="--workdir images: dequantisation draws averaged per image (default 1)")
    div = lk.add_argument_group("divergence")
    div.add_argument("--divergence", choices=["exact", "hutchinson"],
                     help="exact (autograd, one backward pass per dimension) or hutchinson "
                          "(default: hutchinson for images, exact for points of up to 64 dimensions)")
    div.add_argument("--probe", choices=["gaussian", "rademacher"], help="hutchinson probe law (default rademacher)")
    div.add_argument("--probes", type=_positive(int), help="hutchinson probes per point, fixed for the solve (default 1)")

    en = sub.add_parser("encode", help="encode data to latents along the probability-flow ODE and decode back",
                        description="Encode data (at t = t_end) to latents at T along the probability-flow ODE, "
                                    "decode them back with the ODE sampler, and report the round-trip error.",
                        epilog=EPILOG_ENCODE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_flow_arguments(en, "FILE.npz", ".npz for latents, reconstruction, error, nfe_encode, nfe_decode",
                        out_required=True)

    sub.add_parser("problems", help="list the built-in exact-score problems",
                   description="List the built-in exact-score problems usable with --problem.")
    return p


def _add_flow_arguments(p: argparse.ArgumentParser, out_metavar: str, out_help: str, out_required: bool = False):
    """Arguments shared by `likelihood` and `encode`: the data / model source and the ODE solver."""
    src = p.add_argument_group("model and data")
    src.add_argument("--workdir", metavar="W", help="a training workdir: its newest checkpoint (EMA weights) and "
                                                    "its data set's --split")
    src.add_argument("--split", choices=["train", "test", "all"], help="--workdir: data split (default test)")
    src.add_argument("--trust-checkpoint", action="store_true",
                     help="allow full unpickling of the checkpoint (only for files you trust)")
    src.add_argument("--problem", metavar="NAME_OR_JSON",
                     help="a built-in exact-score problem (see `scoresde problems`) or a JSON mixture file")
    _add_sde_arguments(src, "--problem: forward SDE (default vp)")
    src.add_argument("--data", metavar="POINTS.npy", help="--problem: points to evaluate, (N, d) .npy or an .npz "
                                                          "holding `samples` (default: draw --num from the problem)")
    run = p.add_argument_group("run")
    run.add_argument("--num", type=_positive(int), help="points / images to use (default 1000 for --problem, "
                                                        "100 for --workdir)")
    run.add_argument("--seed", type=int, default=0, help="seed of the drawn points, dequantisation and probes")
    run.add_argument("--batch-size", type=_positive(int), help="points per ODE solve (default 10000 problem, 100 "
                                                               "workdir)")
    run.add_argument("--rtol", type=_positive(float), default=1e-5, help="dopri5 relative tolerance (default 1e-5)")
    run.add_argument("--atol", type=_positive(float), default=1e-5, help="dopri5 absolute tolerance (default 1e-5)")
    run.add_argument("--t-end", "--eps", dest="t_end", metavar="T_END", type=_positive(float), default=1e-5,
                     help="the data end of the ODE, t = t_end (default 1e-5, as score_sde_pytorch's likelihood; "
                          "--eps is the old name)")
    run.add_argument("--out", required=out_required, metavar=out_metavar, help=out_help)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def _version() -> str:
    from . import __version__

    return f"scoresde {__version__}"


def _make_sde(args, prog: str = "scoresde sample"):
    names = _sde_names()
    kw = {}
    if args.sde == "ve":
        for k in ("sigma_min", "sigma_max"):
            if getattr(args, k) is not None:
                kw[k] = getattr(args, k)
        bad = [k for k in ("beta_min", "beta_max") if getattr(args, k) is not None]
    else:
        for k in ("beta_min", "beta_max"):
            if getattr(args, k) is not None:
                kw[k] = getattr(args, k)
        bad = [k for k in ("sigma_min", "sigma_max") if getattr(args, k) is not None]
    if bad:
        raise CLIError(f"{prog}: --{bad[0].replace('_', '-')} does not apply to --sde {args.sde}")
    if getattr(args, "t_end", None) is not None:
        kw["t_end"] = args.t_end
    try:
        return names[args.sde](**kw)
    except ValueError as e:
        raise CLIError(f"{prog}: {e}") from None


SAMPLERS = ["pc", "ode", "seeds1", "seeds2", "seeds3", "etd1", "etd2", "etd3", "dpmpp2m", "ddim", "edm", "ggf"]

#: the options each sampler takes (names as on the command line and in a config's sampling section)
SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {
    "pc": ("steps", "predictor", "corrector", "snr", "n_corrector", "denoise"),
    "ode": ("method", "rtol", "atol", "steps"),
    **{f"seeds{k}": ("steps", "grid", "eta", "form", "denoise") for k in (1, 2, 3)},
    **{f"etd{k}": ("steps", "grid", "form", "denoise") for k in (1, 2, 3)},
    "dpmpp2m": ("steps", "grid", "denoise"),
    "ddim": ("steps", "grid", "eta", "denoise"),
    "edm": ("steps", "grid", "s_churn", "denoise"),
    "ggf": ("rtol", "atol", "noise_mode", "norm", "denoise"),
}


def sampler_from_options(sampler: str = "pc", **options: Any):
    """(sampler function, its keyword arguments) from the CLI's / a config's names.

    Options that do not apply to ``sampler`` and options set to None are ignored (None: the default).
    """
    from . import samplers as S

    if sampler not in SAMPLER_OPTIONS:
        raise CLIError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    o = {k: v for k, v in options.items() if k in SAMPLER_OPTIONS[sampler] and v is not None}
    if sampler == "pc":
        return S.pc_sample, {"steps": o.get("steps", 1000),
                             "predictor": _predictors()[o.get("predictor", "reverse_diffusion")],
                             "corrector": _correctors()[o.get("corrector", "langevin")], "snr": o.get("snr", 0.16),
                             "n_corrector": o.get("n_corrector", 1), "denoise": o.get("denoise", True)}
    if sampler == "ode":
        return S.ode_sample, {"method": o.get("method", "dopri5"), "rtol": o.get("rtol", 1e-5),
                              "atol": o.get("atol", 1e-5), "steps": o.get("steps", 100)}
    if sampler == "ggf":
        from .samplers.adaptive import ggf_sample

        return ggf_sample, {"rtol": o.get("rtol", 0.05), "atol": o.get("atol"), "noise_mode": o.get("noise_mode", "bridge"),
                            "norm": o.get("norm", "l2_scaled"), "denoise": o.get("denoise", True)}
    kw = {"steps": o.get("steps", 18 if sampler == "edm" else 20), "grid": o.get("grid", "edm" if sampler == "edm" else "logsnr"),
          "denoise": o.get("denoise", False)}
    if sampler.startswith("seeds"):
        return S.seeds, {**kw, "order": int(sampler[-1]), "eta": o.get("eta", 1.0), "prediction": o.get("form", "data")}
    if sampler.startswith("etd"):
        return S.etd_erk, {**kw, "order": int(sampler[-1]), "prediction": o.get("form", "data")}
    if sampler == "dpmpp2m":
        return S.dpmpp_2m, kw
    if sampler == "ddim":
        return S.ddim, {**kw, "eta": o.get("eta", 0.0)}
    return S.edm_heun, {**kw, "S_churn": o.get("s_churn", 0.0)}


_CLI_OPTIONS = ("steps", "predictor", "corrector", "snr", "n_corrector", "denoise", "method", "rtol", "atol", "grid",
                "eta", "form", "s_churn", "noise_mode", "norm")


def _sampler_kwargs(args, sde) -> dict[str, Any]:
    """The sampler options given on the command line; one that does not apply to --sampler is an error."""
    allowed = SAMPLER_OPTIONS[args.sampler]
    given = {k: getattr(args, k) for k in _CLI_OPTIONS if getattr(args, k, None) is not None}
    wrong = [k for k in given if k not in allowed]
    if wrong:
        flag = "--" + wrong[0].replace("_", "-")
        if wrong[0] == "denoise":
            flag = "--denoise/--no-denoise"
        raise CLIError(f"scoresde sample: {flag} does not apply to --sampler {args.sampler} "
                       f"(it takes {', '.join('--' + k.replace('_', '-') for k in allowed)})")
    if args.sampler == "ode":
        method = given.get("method", "dopri5")
        if method == "dopri5" and "steps" in given:
            raise CLIError("scoresde sample: --steps applies to the fixed-step ODE methods; dopri5 takes --rtol/--atol")
        if method != "dopri5" and ("rtol" in given or "atol" in given):
            raise CLIError(f"scoresde sample: --rtol/--atol apply to dopri5, not --method {method} (use --steps)")
    if args.sampler == "pc" and "snr" not in given:
        given["snr"] = 0.16 if sde == "ve" else 0.01
    if "eta" in given and not 0 <= given["eta"] <= 1:
        raise CLIError(f"scoresde sample: --eta must lie in [0, 1], got {given['eta']}")
    if "s_churn" in given and given["s_churn"] < 0:
        raise CLIError(f"scoresde sample: --s-churn must be >= 0, got {given['s_churn']}")
    return {"sampler": args.sampler, **given}


def cmd_sample(args) -> int:
    out = Path(args.out)
    if out.suffix != ".npz":
        raise CLIError(f"scoresde sample: --out must end in .npz, got {args.out}")
    if (args.problem is None) == (args.workdir is None):
        raise CLIError("scoresde sample: give exactly one of --problem (exact score) or --workdir (trained model)")
    if args.workdir is not None:
        return _sample_workdir(args, out)
    args.sde = args.sde or "vp"
    args.sampler = args.sampler or "pc"
    import numpy as np
    import torch

    from .exact import GaussianMixture, ProblemError, load_problem
    from .samplers import sample

    try:
        problem = load_problem(args.problem)
    except ProblemError as e:
        raise CLIError(f"scoresde sample: {e}") from None
    sde = _make_sde(args)
    kwargs = _sampler_kwargs(args, args.sde)
    from .exact import ExactScoreModel

    model = ExactScoreModel(problem, sde)
    fn, fkw = sampler_from_options(**kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = sample(model, args.num, args.seed, fn, problem.shape, batch_size=args.batch_size, dtype=torch.float64,
                 progress=not args.no_progress, **fkw)
    wall = time.perf_counter() - t0
    x = res.samples.reshape(args.num, -1).numpy()
    if not np.isfinite(x).all():
        print(f"scoresde sample: warning: {int((~np.isfinite(x)).any(1).sum())} samples are not finite "
              "(the sampler diverged; try more steps or a smaller snr)", file=sys.stderr)
    tmp = out.with_name(out.name + ".tmp.npz")
    extra = {} if res.nfe_per_sample is None else {"nfe_per_sample": res.nfe_per_sample.cpu().numpy()}
    np.savez(tmp, samples=x, nfe=np.int64(res.nfe), seed=np.int64(args.seed), sampler=args.sampler,
             sde=args.sde, problem=args.problem, **extra)
    os.replace(tmp, out)
    desc = _describe(args, kwargs)
    line = f"wrote {out} ({args.num} samples, {desc}, NFE {res.nfe}, {wall:.1f} s)"
    if isinstance(problem, GaussianMixture):
        from .quality import mixture_report

        line += "\n" + mixture_report(problem, torch.from_numpy(x)).summary()
    if not args.no_plot:
        from .plotting import scatter_plot

        png = out.with_suffix(".png")
        ref = problem.sample(args.num, generator=torch.Generator().manual_seed(args.seed))
        scatter_plot(x, png, title=f"{args.problem}: {args.sde} {desc}, NFE {res.nfe}", reference=ref.numpy())
        line += f"\nplot: {png}"
    print(line)
    return 0


def _sample_workdir(args, out: Path) -> int:
    import numpy as np

    from .checkpoint import CheckpointError
    from .train import model_from_workdir, sample_from, save_samples_picture

    for k in ("sde", "sigma_min", "sigma_max", "beta_min", "beta_max", "t_end"):
        if getattr(args, k) is not None:
            raise CLIError(f"scoresde sample: --{k.replace('_', '-')} comes from the trained model's config "
                           "with --workdir")
    try:
        model, cfg, shape, step = model_from_workdir(args.workdir, trust=args.trust_checkpoint)
    except CheckpointError as e:
        raise CLIError(f"scoresde sample: {e}") from None
    same = args.sampler is None or args.sampler == cfg.sampling.sampler
    args.sampler = args.sampler or cfg.sampling.sampler
    kwargs = _sampler_kwargs(args, cfg.sde.name)
    if same:  # the trained config's sampler settings are the defaults (command-line options win)
        kwargs = {**_config_sampler_options(cfg), **kwargs}
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = sample_from(model, cfg, shape, args.num, seed=args.seed, progress=not args.no_progress,
                      batch_size=min(args.batch_size, 256), **kwargs)
    wall = time.perf_counter() - t0
    x = res.samples.float().cpu()
    tmp = out.with_name(out.name + ".tmp.npz")
    extra = {} if res.nfe_per_sample is None else {"nfe_per_sample": res.nfe_per_sample.cpu().numpy()}
    np.savez(tmp, samples=x.numpy(), nfe=np.int64(res.nfe), seed=np.int64(args.seed), step=np.int64(step), **extra)
    os.replace(tmp, out)
    line = f"wrote {out} ({args.num} samples from step {step}, {_describe(args, kwargs)}, NFE {res.nfe}, {wall:.1f} s)"
    if not args.no_plot:
        png = out.with_suffix(".png")
        save_samples_picture(x, png, cfg, title=f"NFE {res.nfe}")
        line += f"\nplot: {png}"
    print(line)
    return 0


def _config_sampler_options(cfg) -> dict[str, Any]:
    sc = cfg.sampling
    return {k: getattr(sc, k) for k in _CLI_OPTIONS if getattr(sc, k, None) is not None}


def _describe(args, kw) -> str:
    name = kw["sampler"]
    _, fkw = sampler_from_options(**kw)
    if name == "pc":
        pred, corr = (getattr(fkw[k], "__name__", "none") for k in ("predictor", "corrector"))
        return f"pc {pred}+{corr} {fkw['steps']} steps"
    if name == "ode":
        if fkw["method"] == "dopri5":
            return f"ode dopri5 rtol={fkw['rtol']:g} atol={fkw['atol']:g}"
        return f"ode {fkw['method']} {fkw['steps']} steps"
    if name == "ggf":
        return f"ggf rtol={fkw['rtol']:g} {fkw['noise_mode']} noise"
    extra = "".join(f" {k}={fkw[k]:g}" for k in ("eta", "S_churn") if k in fkw)
    return f"{name} {fkw['steps']} steps {fkw['grid']} grid{extra}"


def cmd_train(args) -> int:
    from .checkpoint import CheckpointError
    from .config import ConfigError, load_config
    from .train import Trainer, TrainingError

    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as e:
        raise CLIError(f"scoresde train: {e}") from None
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        if world > 1:
            import torch
            import torch.distributed as dist

            backend = "nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo"
            dist.init_process_group(backend)
            device = args.device or (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if backend == "nccl" else "cpu")
        else:
            device = args.device
        trainer = Trainer(cfg, args.workdir, device=device, rank=rank, world_size=world,
                          progress=not args.no_progress)
        start = trainer.step
        if rank == 0 and start:
            print(f"resuming from step {start} ({args.workdir}/checkpoints)")
        t0 = time.perf_counter()
        last = trainer.train()
        wall = time.perf_counter() - t0
        if rank == 0:
            grid = Path(args.workdir) / "samples.png"
            trainer.sample_grid(grid)
            done = trainer.step - start
            print(f"trained steps {start}..{trainer.step} in {wall:.0f} s "
                  f"({done * cfg.training.batch_size / max(wall, 1e-9):.0f} items/s), last loss "
                  f"{last.get('loss', float('nan')):.4f}; samples: {grid}")
    except (ConfigError, TrainingError, CheckpointError) as e:
        raise CLIError(f"scoresde train: {e}") from None
    except _data_error() as e:
        raise CLIError(f"scoresde train: {e}") from None
    return 0


def _data_error():
    try:
        from .data import DataError

        return DataError
    except ImportError:  # pragma: no cover
        return ()


# ---- likelihood / encode ----------------------------------------------------------------------------
class _FlowSource:
    """What `likelihood` and `encode` act on: a score model and its data (model range), from either source."""

    def __init__(self, model, x, images01=None, data_range: str | None = None, problem=None, label: str = ""):
        self.model, self.x, self.images01, self.data_range, self.problem, self.label = \
            model, x, images01, data_range, problem, label


def _flow_source(args, prog: str) -> _FlowSource:
    if args.t_end >= 1.0:
        raise CLIError(f"{prog}: --t-end must be < T = 1, got {args.t_end:g}")
    if (args.problem is None) == (args.workdir is None):
        raise CLIError(f"{prog}: give exactly one of --problem (exact score) or --workdir (trained model)")
    if args.workdir is not None:
        for k in ("sde", "sigma_min", "sigma_max", "beta_min", "beta_max", "data"):
            if getattr(args, k) is not None:
                raise CLIError(f"{prog}: --{k.replace('_', '-')} does not apply to --workdir (the model's config "
                               "and data set are used)")
        return _workdir_source(args, prog)
    if args.split is not None or args.trust_checkpoint:
        raise CLIError(f"{prog}: --{'split' if args.split is not None else 'trust-checkpoint'} applies to --workdir")
    if args.data is not None and args.num is not None:
        raise CLIError(f"{prog}: give --data or --num, not both")
    import torch

    from .exact import ExactScoreModel, ProblemError, load_problem

    try:
        problem = load_problem(args.problem)
    except ProblemError as e:
        raise CLIError(f"{prog}: {e}") from None
    args.sde = args.sde or "vp"
    sde = _make_sde(args, prog)
    if args.data is not None:
        x = _load_points(args.data, problem.dim, prog)
    else:
        x = problem.sample(args.num or 1000, generator=torch.Generator().manual_seed(args.seed))
    x = x.reshape((x.shape[0],) + tuple(problem.shape))
    return _FlowSource(ExactScoreModel(problem, sde), x, problem=problem, label=f"{args.problem}, {args.sde}")


def _load_points(path: str, dim: int, prog: str):
    import numpy as np
    import torch

    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{prog}: --data file not found: {path}")
    try:
        arr = np.load(p, allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):
            with arr:
                keys = list(arr.keys())
                if "samples" in keys:
                    arr = arr["samples"]
                elif len(keys) == 1:
                    arr = arr[keys[0]]
                else:
                    raise CLIError(f"{prog}: --data {path} holds {', '.join(keys)}; expected an array named samples")
    except (ValueError, OSError) as e:
        raise CLIError(f"{prog}: cannot read --data {path} as .npy/.npz ({e})") from None
    if not np.issubdtype(arr.dtype, np.number):
        raise CLIError(f"{prog}: --data {path} must hold numbers, got dtype {arr.dtype}")
    arr = arr.reshape(arr.shape[0], -1) if arr.ndim > 2 else arr
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != dim:
        raise CLIError(f"{prog}: --data {path} has shape {arr.shape}; the problem needs (N, {dim}) with N >= 1")
    if not np.isfinite(arr).all():
        raise CLIError(f"{prog}: --data {path} holds non-finite values")
    return torch.from_numpy(arr.astype(np.float64))


def _workdir_source(args, prog: str) -> _FlowSource:
    from .checkpoint import CheckpointError
    from .data import unscale
    from .train import load_training_data, model_from_workdir

    try:
        model, cfg, _, step = model_from_workdir(args.workdir, trust=args.trust_checkpoint)
    except CheckpointError as e:
        raise CLIError(f"{prog}: {e}") from None
    try:
        x = load_training_data(cfg, split=args.split or "test")
    except _data_error() as e:
        raise CLIError(f"{prog}: {e}") from None
    num = args.num or 100
    if num > x.shape[0]:
        print(f"{prog}: note: the {args.split or 'test'} split holds {x.shape[0]} items; using all of them",
              file=sys.stderr)
    x = x[:num]
    device = next(model.net.parameters()).device
    x = x.to(device)
    label = f"{args.workdir} step {step}, {cfg.sde.name}, {args.split or 'test'} split"
    if x.ndim == 4:
        images01 = unscale(x, cfg.data.scale).clamp(0, 1)
        return _FlowSource(model, x, images01=images01, data_range=cfg.data.scale, label=label)
    return _FlowSource(model, x, label=label)


def _save_npz(out: Path, **arrays) -> None:
    import numpy as np

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)


def cmd_likelihood(args) -> int:
    prog = "scoresde likelihood"
    out = Path(args.out) if args.out is not None else None
    if out is not None and out.suffix != ".npz":
        raise CLIError(f"{prog}: --out must end in .npz, got {args.out}")
    hutch_only = [k for k in ("probe", "probes") if getattr(args, k) is not None]
    if args.divergence == "exact" and hutch_only:
        raise CLIError(f"{prog}: --{hutch_only[0]} applies to --divergence hutchinson")
    src = _flow_source(args, prog)
    if args.repeats is not None and src.images01 is None:
        raise CLIError(f"{prog}: --repeats applies to --workdir image data (dequantisation draws)")
    import numpy as np
    import torch

    from .likelihood import bits_per_dim, log_likelihood

    dim = src.x[0].numel()
    if args.divergence is not None:
        divergence = args.divergence
    else:  # probes given imply hutchinson; exact only for low-dimensional points, as score_sde_pytorch does for images
        divergence = "hutchinson" if hutch_only or dim > 64 or src.images01 is not None else "exact"
    kw = {"divergence": divergence, "probe": args.probe or "rademacher", "probes": args.probes or 1,
          "rtol": args.rtol, "atol": args.atol, "t_end": args.t_end,
          "batch_size": args.batch_size or (10000 if src.problem is not None else 100)}
    desc = divergence if divergence == "exact" else f"hutchinson, {kw['probes']} {kw['probe']} probe(s)"
    t0 = time.perf_counter()
    with torch.no_grad():
        if src.images01 is not None:
            res = bits_per_dim(src.model, src.images01, data_range=src.data_range, repeats=args.repeats or 1,
                               seed=args.seed, progress=not args.no_progress, **kw)
            wall = time.perf_counter() - t0
            print(f"{src.label}: {res.mean:.4f} +- {res.stderr:.4f} bits/dim ({res.bpd.shape[1]} images x "
                  f"{res.bpd.shape[0]} repeats, {desc}, rtol={args.rtol:g} atol={args.atol:g}), NFE {res.nfe} "
                  f"per solve, {wall:.1f} s")
            if out is not None:
                _save_npz(out, bpd=res.bpd.cpu().numpy(), nfe=np.int64(res.nfe), seed=np.int64(args.seed))
                print(f"wrote {out}")
            return 0
        res = log_likelihood(src.model, src.x, seed=args.seed, progress=not args.no_progress, **kw)
    wall = time.perf_counter() - t0
    lp = res.logp
    n = lp.shape[0]
    se = float(lp.std() / math.sqrt(n)) if n > 1 else float("nan")
    line = (f"{src.label}: mean log p = {float(lp.mean()):.4f} +- {se:.4f} nats ({float(lp.mean()) / dim:.4f} "
            f"per dim; {n} points, {desc}, rtol={args.rtol:g} atol={args.atol:g}), NFE {res.nfe} per solve, "
            f"{wall:.1f} s")
    if src.problem is not None:
        exact = src.model.log_prob(src.x, args.t_end)
        line += (f"\nclosed form log p_eps: mean {float(exact.mean()):.4f} nats; |ODE - closed form| mean "
                 f"{float((lp - exact).abs().mean()):.2e}, max {float((lp - exact).abs().max()):.2e} nats")
    print(line)
    if out is not None:
        extra = {"logp_exact": src.model.log_prob(src.x, args.t_end).numpy()} if src.problem is not None else {}
        _save_npz(out, logp=lp.cpu().numpy(), nfe=np.int64(res.nfe), points=src.x.reshape(n, -1).cpu().numpy(),
                  prior_logp=res.prior_logp.cpu().numpy(), delta_logp=res.delta_logp.cpu().numpy(), seed=np.int64(args.seed),
                  divergence=divergence, **extra)
        print(f"wrote {out}")
    return 0


def cmd_encode(args) -> int:
    prog = "scoresde encode"
    out = Path(args.out)
    if out.suffix != ".npz":
        raise CLIError(f"{prog}: --out must end in .npz, got {args.out}")
    src = _flow_source(args, prog)
    import numpy as np

    from .likelihood import round_trip

    t0 = time.perf_counter()
    res = round_trip(src.model, src.x, rtol=args.rtol, atol=args.atol, t_end=args.t_end,
                     batch_size=args.batch_size or (10000 if src.problem is not None else 100),
                     progress=not args.no_progress)
    wall = time.perf_counter() - t0
    n = src.x.shape[0]
    _save_npz(out, latents=res.latent.reshape(n, -1).cpu().numpy(),
              reconstruction=res.reconstruction.reshape(n, -1).cpu().numpy(), error=res.error.cpu().numpy(),
              nfe_encode=np.int64(res.nfe_encode), nfe_decode=np.int64(res.nfe_decode), seed=np.int64(args.seed))
    print(f"{src.label}: encoded {n} points to T and back (rtol={args.rtol:g} atol={args.atol:g}): round-trip error "
          f"max {float(res.error.max()):.2e}, mean {float(res.error.mean()):.2e}; NFE encode {res.nfe_encode}, "
          f"decode {res.nfe_decode}, {wall:.1f} s\nwrote {out}")
    return 0


def cmd_problems(args) -> int:
    from .exact import builtin_problems

    for name, (desc, _) in builtin_problems().items():
        print(f"{name:10s} {desc}")
    print('or a JSON file: {"weights": [...], "means": [[...], ...], "stds": [...]}')
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        import torch

        if os.environ.get("SCORESDE_THREADS"):
            torch.set_num_threads(int(os.environ["SCORESDE_THREADS"]))
        return {"sample": cmd_sample, "problems": cmd_problems, "train": cmd_train, "likelihood": cmd_likelihood,
                "encode": cmd_encode}[args.command](args)
    except CLIError as e:
        print(str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scoresde: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
