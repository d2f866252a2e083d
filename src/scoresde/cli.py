"""The ``scoresde`` command line. Names map to callables here, and only here."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["main", "CLIError"]

EPILOG_SAMPLE = """\
examples:
  scoresde sample --problem gmm8 --sde vp --num 2000 --seed 0 --out out/gmm8.npz
  scoresde sample --problem gmm8 --sde ve --sampler pc --predictor reverse_diffusion \\
      --corrector langevin --snr 0.16 --steps 500 --out out/ve_pc.npz
  scoresde sample --problem mixture.json --sde subvp --sampler ode --rtol 1e-5 --atol 1e-5 --out out/ode.npz
  scoresde sample --problem gaussian --sampler ode --method rk4 --steps 50 --out out/rk4.npz

A JSON mixture file holds {"weights": [...], "means": [[...], ...], "stds": [...]}.
The .npz holds `samples` (num x dim, data space) and `nfe` (exact network evaluations);
a PNG plot is written beside it. Sample i of a run with seed S is the same whatever --num
or --batch-size (except with the Langevin corrector, whose step uses batch-averaged norms,
and the adaptive ODE solver, whose steps are shared by a batch).
"""


EPILOG_TRAIN = """\
examples:
  scoresde train --config configs/mnist_cpu.yaml --workdir runs/mnist
  scoresde train --config configs/toy_gmm.yaml --workdir runs/toy --set training.n_iters=3000
  scoresde sample --workdir runs/mnist --num 64 --out runs/mnist/grid.npz
"""


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise CLIError(f"{self.prog}: {message} (see --help)")


def _sde_names() -> dict[str, Callable[..., Any]]:
    from .sde import SubVPSDE, VESDE, VPSDE

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
    src.add_argument("--sde", choices=sorted(_sde_names()), help="forward SDE of an exact problem (default vp)")
    src.add_argument("--sigma-min", type=_positive(float), help="VE: smallest noise level (default 0.01)")
    src.add_argument("--sigma-max", type=_positive(float), help="VE: largest noise level (default 50)")
    src.add_argument("--beta-min", type=_positive(float), help="VP/sub-VP: beta(0) (default 0.1)")
    src.add_argument("--beta-max", type=_positive(float), help="VP/sub-VP: beta(1) (default 20)")
    src.add_argument("--eps", type=_positive(float), help="end time of sampling (default 1e-5 VE, 1e-3 VP/sub-VP)")

    run = s.add_argument_group("run")
    run.add_argument("--num", type=_positive(int), default=1000, help="number of samples (default 1000)")
    run.add_argument("--seed", type=int, default=0, help="run seed; sample i uses the per-sample seed (seed, i)")
    run.add_argument("--batch-size", type=_positive(int), default=10000, help="samples per batch (default 10000)")
    run.add_argument("--out", required=True, metavar="FILE.npz", help="output .npz; a PNG plot is written beside it")
    run.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    smp = s.add_argument_group("sampler")
    smp.add_argument("--sampler", choices=["pc", "ode"], default="pc", help="predictor-corrector or probability-flow ODE")
    smp.add_argument("--steps", type=_positive(int), help="pc: predictor steps (default 1000); ode: fixed-step count "
                                                          "(default 100)")
    smp.add_argument("--predictor", choices=list(_predictors()), help="pc predictor (default reverse_diffusion)")
    smp.add_argument("--corrector", choices=list(_correctors()), help="pc corrector (default langevin)")
    smp.add_argument("--snr", type=_positive(float), help="pc corrector signal-to-noise ratio (default 0.16 VE, 0.01 VP)")
    smp.add_argument("--n-corrector", type=_nonneg_int, help="pc corrector steps per predictor step (default 1)")
    smp.add_argument("--no-denoise", action="store_true", help="pc: keep the last step's noise (no final noise removal)")
    smp.add_argument("--method", choices=["dopri5", "euler", "heun", "rk4"], help="ode solver (default dopri5)")
    smp.add_argument("--rtol", type=_positive(float), help="ode dopri5 relative tolerance (default 1e-5)")
    smp.add_argument("--atol", type=_positive(float), help="ode dopri5 absolute tolerance (default 1e-5)")

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

    sub.add_parser("problems", help="list the built-in exact-score problems",
                   description="List the built-in exact-score problems usable with --problem.")
    return p


def _version() -> str:
    from . import __version__

    return f"scoresde {__version__}"


def _make_sde(args):
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
        raise CLIError(f"scoresde sample: --{bad[0].replace('_', '-')} does not apply to --sde {args.sde}")
    if args.eps is not None:
        kw["eps"] = args.eps
    try:
        return names[args.sde](**kw)
    except ValueError as e:
        raise CLIError(f"scoresde sample: {e}") from None


def sampler_from_options(sampler: str = "pc", predictor: str = "reverse_diffusion", corrector: str = "langevin",
                         snr: float = 0.16, n_corrector: int = 1, steps: int = 1000, method: str = "dopri5",
                         rtol: float = 1e-5, atol: float = 1e-5, denoise: bool = True):
    """(sampler function, its keyword arguments) from the CLI's / config's names."""
    from .samplers import ode_sample, pc_sample

    if sampler == "pc":
        return pc_sample, dict(steps=steps, predictor=_predictors()[predictor], corrector=_correctors()[corrector],
                               snr=snr, n_corrector=n_corrector, denoise=denoise)
    if sampler == "ode":
        return ode_sample, dict(method=method, rtol=rtol, atol=atol, steps=steps)
    raise CLIError(f"unknown sampler {sampler!r}")


def _sampler_kwargs(args, sde) -> dict[str, Any]:
    pc_only = ["predictor", "corrector", "snr", "n_corrector"]
    ode_only = ["method", "rtol", "atol"]
    wrong = [k for k in (ode_only if args.sampler == "pc" else pc_only) if getattr(args, k) is not None]
    if args.sampler == "ode" and args.no_denoise:
        wrong.append("no_denoise")
    if wrong:
        raise CLIError(f"scoresde sample: --{wrong[0].replace('_', '-')} does not apply to --sampler {args.sampler}")
    if args.sampler == "pc":
        return dict(sampler="pc", steps=args.steps or 1000, predictor=args.predictor or "reverse_diffusion",
                    corrector=args.corrector or "langevin",
                    snr=args.snr if args.snr is not None else (0.16 if sde == "ve" else 0.01),
                    n_corrector=1 if args.n_corrector is None else args.n_corrector, denoise=not args.no_denoise)
    method = args.method or "dopri5"
    if method == "dopri5" and args.steps is not None:
        raise CLIError("scoresde sample: --steps applies to the fixed-step ODE methods; dopri5 takes --rtol/--atol")
    if method != "dopri5" and (args.rtol is not None or args.atol is not None):
        raise CLIError(f"scoresde sample: --rtol/--atol apply to dopri5, not --method {method} (use --steps)")
    return dict(sampler="ode", method=method, rtol=args.rtol or 1e-5, atol=args.atol or 1e-5, steps=args.steps or 100)


def cmd_sample(args) -> int:
    out = Path(args.out)
    if out.suffix != ".npz":
        raise CLIError(f"scoresde sample: --out must end in .npz, got {args.out}")
    if (args.problem is None) == (args.workdir is None):
        raise CLIError("scoresde sample: give exactly one of --problem (exact score) or --workdir (trained model)")
    if args.workdir is not None:
        return _sample_workdir(args, out)
    args.sde = args.sde or "vp"
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
    np.savez(tmp, samples=x, nfe=np.int64(res.nfe), seed=np.int64(args.seed), sampler=args.sampler,
             sde=args.sde, problem=args.problem)
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

    for k in ("sde", "sigma_min", "sigma_max", "beta_min", "beta_max", "eps"):
        if getattr(args, k) is not None:
            raise CLIError(f"scoresde sample: --{k.replace('_', '-')} comes from the trained model's config "
                           "with --workdir")
    try:
        model, cfg, shape, step = model_from_workdir(args.workdir, trust=args.trust_checkpoint)
    except CheckpointError as e:
        raise CLIError(f"scoresde sample: {e}") from None
    kwargs = _sampler_kwargs(args, cfg.sde.name)
    if args.steps is None and kwargs["sampler"] == "pc":
        kwargs["steps"] = cfg.sampling.steps
    if kwargs["sampler"] == "pc":  # the trained config's sampler settings are the defaults
        for k in ("predictor", "corrector", "snr", "n_corrector"):
            if getattr(args, k) is None:
                kwargs[k] = getattr(cfg.sampling, k)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = sample_from(model, cfg, shape, args.num, seed=args.seed, progress=not args.no_progress,
                      batch_size=min(args.batch_size, 256), **kwargs)
    wall = time.perf_counter() - t0
    x = res.samples.float().cpu()
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, samples=x.numpy(), nfe=np.int64(res.nfe), seed=np.int64(args.seed), step=np.int64(step))
    os.replace(tmp, out)
    line = f"wrote {out} ({args.num} samples from step {step}, {_describe(args, kwargs)}, NFE {res.nfe}, {wall:.1f} s)"
    if not args.no_plot:
        png = out.with_suffix(".png")
        save_samples_picture(x, png, cfg, title=f"NFE {res.nfe}")
        line += f"\nplot: {png}"
    print(line)
    return 0


def _describe(args, kw) -> str:
    if kw["sampler"] == "pc":
        return f"pc {kw['predictor']}+{kw['corrector']} {kw['steps']} steps"
    if kw["method"] == "dopri5":
        return f"ode dopri5 rtol={kw['rtol']:g} atol={kw['atol']:g}"
    return f"ode {kw['method']} {kw['steps']} steps"


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
            import torch.distributed as dist

            import torch

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
        return {"sample": cmd_sample, "problems": cmd_problems, "train": cmd_train}[args.command](args)
    except CLIError as e:
        print(str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scoresde: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
