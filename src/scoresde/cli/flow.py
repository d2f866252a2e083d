"""``scoresde likelihood`` and ``scoresde encode``: the probability-flow ODE run from data to noise."""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from .args import CLIError, add_sde_arguments, check_out, load_points, make_sde, positive, save_npz, seed
from .models import MODEL_HELP

__all__ = ["register"]

EPILOG_LIKELIHOOD = """\
examples:
  scoresde likelihood --workdir runs/mnist --split test --num 100 --repeats 2
  scoresde likelihood --model diffusers:./ddpm-cifar10 --data images.npy --num 16
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


def register(sub) -> None:
    lk = sub.add_parser("likelihood", help="log-likelihood / bits-per-dim through the probability-flow ODE",
                        description="Exact log-likelihoods through the probability-flow ODE (Song et al. 2021, "
                                    "eq. 39): bits/dim of a trained model on held-out images (--workdir), or "
                                    "per-point log-densities under an exact-score problem (--problem).",
                        epilog=EPILOG_LIKELIHOOD, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_flow_arguments(lk, "FILE.npz", "optional .npz for per-point logp (nats), nfe (and bpd with --workdir)")
    lk.add_argument("--repeats", type=positive(int),
                    help="--workdir images: dequantisation draws averaged per image (default 1)")
    div = lk.add_argument_group("divergence")
    div.add_argument("--divergence", choices=["exact", "hutchinson"],
                     help="exact (autograd, one backward pass per dimension) or hutchinson "
                          "(default: hutchinson for images, exact for points of up to 64 dimensions)")
    div.add_argument("--probe", choices=["gaussian", "rademacher"], help="hutchinson probe law (default rademacher)")
    div.add_argument("--probes", type=positive(int), help="hutchinson probes per point, fixed for the solve (default 1)")

    en = sub.add_parser("encode", help="encode data to latents along the probability-flow ODE and decode back",
                        description="Encode data (at t = t_end) to latents at T along the probability-flow ODE, "
                                    "decode them back with the ODE sampler, and report the round-trip error.",
                        epilog=EPILOG_ENCODE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_flow_arguments(en, "FILE.npz", ".npz for latents, reconstruction, error, nfe_encode, nfe_decode",
                        out_required=True)

    lk.set_defaults(func=cmd_likelihood)
    en.set_defaults(func=cmd_encode)


def _add_flow_arguments(p: argparse.ArgumentParser, out_metavar: str, out_help: str, out_required: bool = False):
    """Arguments shared by `likelihood` and `encode`: the data / model source and the ODE solver."""
    src = p.add_argument_group("model and data")
    src.add_argument("--workdir", metavar="W", help="a training workdir: its newest checkpoint (EMA weights) and "
                                                    "its data set's --split")
    src.add_argument("--split", choices=["train", "test", "all"], help="--workdir: data split (default test)")
    src.add_argument("--trust-checkpoint", action="store_true",
                     help="allow full unpickling of the checkpoint (only for files you trust)")
    src.add_argument("--model", metavar="KIND:PATH", help=MODEL_HELP + "; its images come from --data")
    src.add_argument("--problem", metavar="NAME_OR_JSON",
                     help="a built-in exact-score problem (see `scoresde problems`) or a JSON mixture file")
    add_sde_arguments(src, "--problem: forward SDE (default vp)")
    src.add_argument("--data", metavar="POINTS.npy", help="--problem: points to evaluate, (N, d) .npy or an .npz "
                                                          "holding `samples` (default: draw --num from the problem); "
                                                          "--model: images, uint8 0..255 or floats in [0, 1], or the "
                                                          ".npz of `scoresde sample --model`")
    run = p.add_argument_group("run")
    run.add_argument("--num", type=positive(int), help="points / images to use (default 1000 for --problem, "
                                                        "100 for --workdir)")
    run.add_argument("--seed", type=seed, default=0, help="seed of the drawn points, dequantisation and probes")
    run.add_argument("--batch-size", type=positive(int), help="points per ODE solve (default 10000 problem, 100 "
                                                               "workdir)")
    run.add_argument("--rtol", type=positive(float), default=1e-5, help="dopri5 relative tolerance (default 1e-5)")
    run.add_argument("--atol", type=positive(float), default=1e-5, help="dopri5 absolute tolerance (default 1e-5)")
    run.add_argument("--t-end", "--eps", dest="t_end", metavar="T_END", type=positive(float), default=None,
                     help="the data end of the ODE, t = t_end (default 1e-5, as score_sde_pytorch's likelihood; "
                          "--model: the model's own, timestep 0 = 1/N for a DDPM schedule; "
                          "--eps is the old name)")
    run.add_argument("--out", required=out_required, metavar=out_metavar, help=out_help)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


# ---- likelihood / encode ----------------------------------------------------------------------------
class _FlowSource:
    """What `likelihood` and `encode` act on: a score model and its data (model range), from either source."""

    def __init__(self, model, x, images01=None, data_range: str | None = None, problem=None, label: str = ""):
        self.model, self.x, self.images01, self.data_range, self.problem, self.label = \
            model, x, images01, data_range, problem, label


def _flow_source(args, prog: str) -> _FlowSource:
    if args.t_end is not None and args.t_end >= 1.0:
        raise CLIError(f"{prog}: --t-end must be < T = 1, got {args.t_end:g}")
    if sum(a is not None for a in (args.problem, args.workdir, args.model)) != 1:
        raise CLIError(f"{prog}: give exactly one of --problem (exact score), --workdir (trained model) or --model "
                       "(KIND:PATH)")
    if args.model is not None:
        src = _model_source(args, prog)
        args.t_end = src.model.sde.t_end if args.t_end is None else args.t_end
        return src
    args.t_end = 1e-5 if args.t_end is None else args.t_end
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

    from ..exact import ExactScoreModel, ProblemError, load_problem

    try:
        problem = load_problem(args.problem)
    except ProblemError as e:
        raise CLIError(f"{prog}: {e}") from None
    args.sde = args.sde or "vp"
    sde = make_sde(args, prog)
    if args.data is not None:
        x = load_points(args.data, problem.dim, prog)
    else:
        x = problem.sample(args.num or 1000, generator=torch.Generator().manual_seed(args.seed))
    x = x.reshape((x.shape[0],) + tuple(problem.shape))
    return _FlowSource(ExactScoreModel(problem, sde), x, problem=problem, label=f"{args.problem}, {args.sde}")


def _model_source(args, prog: str) -> _FlowSource:
    """--model KIND:PATH with --data images: bits/dim (likelihood) or latents (encode) of those images."""
    from .models import load_images, load_model

    for k in ("sde", "sigma_min", "sigma_max", "beta_min", "beta_max", "split"):
        if getattr(args, k) is not None:
            raise CLIError(f"{prog}: --{k.replace('_', '-')} does not apply to --model (the model brings its SDE; "
                           "its images come from --data)")
    if args.trust_checkpoint:
        raise CLIError(f"{prog}: --trust-checkpoint applies to --workdir (diffusers weights load without pickle)")
    if args.data is None:
        raise CLIError(f"{prog}: --model needs --data (the images to evaluate)")
    loaded = load_model(args.model, prog)
    images01 = load_images(args.data, loaded.shape, prog)[: args.num or None]
    device = next(loaded.model.net.parameters()).device
    images01 = images01.to(device)
    x = images01 * 2 - 1 if loaded.data_range == "[-1,1]" else images01
    return _FlowSource(loaded.model, x, images01=images01, data_range=loaded.data_range, label=loaded.label)


def _workdir_source(args, prog: str) -> _FlowSource:
    from ..checkpoint import CheckpointError
    from ..data import DataError, unscale
    from ..workdir import load_training_data, model_from_workdir

    try:
        model, cfg, _, step = model_from_workdir(args.workdir, trust=args.trust_checkpoint)
    except CheckpointError as e:
        raise CLIError(f"{prog}: {e}") from None
    try:
        x = load_training_data(cfg, split=args.split or "test")
    except DataError as e:
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


def cmd_likelihood(args) -> int:
    prog = "scoresde likelihood"
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        check_out(args.out, prog)
    hutch_only = [k for k in ("probe", "probes") if getattr(args, k) is not None]
    if args.divergence == "exact" and hutch_only:
        raise CLIError(f"{prog}: --{hutch_only[0]} applies to --divergence hutchinson")
    src = _flow_source(args, prog)
    if args.repeats is not None and src.images01 is None:
        raise CLIError(f"{prog}: --repeats applies to --workdir image data (dequantisation draws)")
    import numpy as np
    import torch

    from ..likelihood import bits_per_dim, log_likelihood

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
                save_npz(out, bpd=res.bpd.cpu().numpy(), nfe=np.int64(res.nfe), seed=np.int64(args.seed))
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
        save_npz(out, logp=lp.cpu().numpy(), nfe=np.int64(res.nfe), points=src.x.reshape(n, -1).cpu().numpy(),
                  prior_logp=res.prior_logp.cpu().numpy(), delta_logp=res.delta_logp.cpu().numpy(), seed=np.int64(args.seed),
                  divergence=divergence, **extra)
        print(f"wrote {out}")
    return 0


def cmd_encode(args) -> int:
    prog = "scoresde encode"
    out = check_out(args.out, prog)
    src = _flow_source(args, prog)
    import numpy as np

    from ..likelihood import round_trip

    t0 = time.perf_counter()
    res = round_trip(src.model, src.x, rtol=args.rtol, atol=args.atol, t_end=args.t_end,
                     batch_size=args.batch_size or (10000 if src.problem is not None else 100),
                     progress=not args.no_progress)
    wall = time.perf_counter() - t0
    n = src.x.shape[0]
    save_npz(out, latents=res.latent.reshape(n, -1).cpu().numpy(),
              reconstruction=res.reconstruction.reshape(n, -1).cpu().numpy(), error=res.error.cpu().numpy(),
              nfe_encode=np.int64(res.nfe_encode), nfe_decode=np.int64(res.nfe_decode), seed=np.int64(args.seed))
    print(f"{src.label}: encoded {n} points to T and back (rtol={args.rtol:g} atol={args.atol:g}): round-trip error "
          f"max {float(res.error.max()):.2e}, mean {float(res.error.mean()):.2e}; NFE encode {res.nfe_encode}, "
          f"decode {res.nfe_decode}, {wall:.1f} s\nwrote {out}")
    return 0
