"""``scoresde sample`` (exact-score problems or a trained workdir) and ``scoresde problems``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .args import (
    CLIError,
    add_sampler_arguments,
    add_sde_arguments,
    check_out,
    make_sde,
    nonneg_int,
    positive,
    sampler_options,
    samplers_epilog,
    save_npz,
    sde_arguments_given,
    seed,
)
from .models import MODEL_HELP

__all__ = ["register"]

EPILOG = """\
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
  scoresde sample --model diffusers:./ddpm-cifar10 --sampler seeds2 --steps 25 --num 16 --out out/ddpm.npz

A JSON mixture file holds {"weights": [...], "means": [[...], ...], "stds": [...]}.
The .npz holds `samples` (num x dim, data space) and `nfe` (exact network evaluations per sample
path; adaptive samplers also store `nfe_per_sample`); a PNG plot is written beside it. Sample i of a
run with seed S is the same whatever --num or --batch-size (except with the Langevin corrector, whose
step uses batch-averaged norms, and the adaptive ODE solver, whose steps are shared by a batch).
A final --denoise (a Tweedie step at t_end) costs one NFE.
"""


def register(sub) -> None:
    s = sub.add_parser("sample", help="draw samples with any sampler from an exact-score problem or a trained model",
                       description="Draw samples from an exact-score problem (a closed-form score, no training) or a "
                                   "trained workdir with any sampler, and write them to an .npz plus a PNG plot.",
                       epilog=EPILOG + "\n" + samplers_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    src = s.add_argument_group("what to sample")
    src.add_argument("--problem", metavar="NAME_OR_JSON",
                     help="a built-in problem (see `scoresde problems`) or a JSON mixture file")
    src.add_argument("--workdir", metavar="W", help="a training workdir: sample its newest checkpoint (EMA weights)")
    src.add_argument("--trust-checkpoint", action="store_true",
                     help="allow full unpickling of the checkpoint (only for files you trust)")
    src.add_argument("--model", metavar="KIND:PATH", help=MODEL_HELP)
    add_sde_arguments(src, "forward SDE of an exact problem (default vp)")
    src.add_argument("--t-end", "--eps", dest="t_end", type=positive(float),
                     help="end time of sampling (default 1e-5 VE, 1e-3 VP/sub-VP; --eps is the old name)")

    cond = s.add_argument_group("class-conditional sampling (exact-score mixtures: the exact classifier; --workdir: "
                                "a trained classifier, or classifier-free guidance of a label-conditional model)")
    cond.add_argument("--class", dest="label", type=nonneg_int, metavar="K",
                      help="sample component K of the mixture (K indexes its components, from 0), or class K")
    cond.add_argument("--classifier", metavar="DIR",
                      help="[--workdir] a classifier workdir (scoresde train --config configs/mnist_classifier.yaml); "
                           "without it, --class needs a label-conditional model (classifier-free guidance)")
    cond.add_argument("--guidance", type=_finite_float, metavar="W",
                      help="guidance scale w (default 1: the conditional itself; 0: unconditional)")
    cond.add_argument("--guidance-type", choices=["classifier", "cfg"],
                      help="classifier: score + w grad log p(y|x); cfg: D_u + w (D_c - D_u) (default classifier)")

    run = s.add_argument_group("run")
    run.add_argument("--num", type=positive(int), default=1000, help="number of samples (default 1000)")
    run.add_argument("--seed", type=seed, default=0, help="run seed; sample i uses the per-sample seed (seed, i)")
    run.add_argument("--batch-size", type=positive(int), default=10000, help="samples per batch (default 10000; "
                                                                            "at most 256 with --workdir)")
    run.add_argument("--out", required=True, metavar="FILE.npz", help="output .npz; a PNG plot is written beside it")
    run.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_sampler_arguments(s, "the sampler (default pc; with --workdir the trained config's sampler)")
    s.set_defaults(func=cmd_sample)

    pr = sub.add_parser("problems", help="list the built-in exact-score problems",
                        description="List the built-in exact-score problems usable with --problem.")
    pr.set_defaults(func=cmd_problems)


def cmd_sample(args) -> int:
    prog = "scoresde sample"
    out = check_out(args.out, prog)
    if sum(a is not None for a in (args.problem, args.workdir, args.model)) != 1:
        raise CLIError(f"{prog}: give exactly one of --problem (exact score), --workdir (trained model) or --model "
                       "(KIND:PATH)")
    if args.workdir is not None:
        return _sample_workdir(args, out, prog)
    if args.model is not None:
        return _sample_model(args, out, prog)
    import numpy as np
    import torch

    from ..exact import ExactScoreModel, GaussianMixture, ProblemError, load_problem
    from ..samplers import sample
    from ..samplers.registry import DEFAULT_SAMPLER, describe, resolve

    args.sde = args.sde or "vp"
    args.sampler = args.sampler or DEFAULT_SAMPLER
    try:
        problem = load_problem(args.problem)
    except ProblemError as e:
        raise CLIError(f"{prog}: {e}") from None
    model = ExactScoreModel(problem, make_sde(args, prog))
    if args.classifier is not None:
        raise CLIError(f"{prog}: --classifier goes with --workdir (an exact mixture brings its exact classifier)")
    if args.label is not None:
        model, problem = _conditional(args, problem, model, prog)
    elif args.guidance is not None or args.guidance_type is not None:
        raise CLIError(f"{prog}: --guidance and --guidance-type need --class")
    options = sampler_options(args, args.sampler, prog)
    fn, kwargs = resolve(args.sampler, options)
    t0 = time.perf_counter()
    res = sample(model, args.num, args.seed, fn, problem.shape, batch_size=args.batch_size, dtype=torch.float64,
                 progress=not args.no_progress, **kwargs)
    wall = time.perf_counter() - t0
    x = res.samples.reshape(args.num, -1).numpy()
    if not np.isfinite(x).all():
        print(f"{prog}: warning: {int((~np.isfinite(x)).any(1).sum())} samples are not finite "
              "(the sampler diverged; try more steps or a smaller snr)", file=sys.stderr)
    extra = {} if res.nfe_per_sample is None else {"nfe_per_sample": res.nfe_per_sample.cpu().numpy()}
    save_npz(out, samples=x, nfe=np.int64(res.nfe), seed=np.int64(args.seed), sampler=args.sampler, sde=args.sde,
             problem=args.problem, **extra)
    desc = describe(args.sampler, options)
    line = f"wrote {out} ({args.num} samples, {desc}, NFE {res.nfe}, {wall:.1f} s)"
    if isinstance(problem, GaussianMixture):
        from ..quality import mixture_report

        line += "\n" + mixture_report(problem, torch.from_numpy(x)).summary()
    if not args.no_plot:
        from ..plotting import scatter_plot

        png = out.with_suffix(".png")
        ref = problem.sample(args.num, generator=torch.Generator().manual_seed(args.seed))
        scatter_plot(x, png, title=f"{args.problem}: {args.sde} {desc}, NFE {res.nfe}", reference=ref.numpy())
        line += f"\nplot: {png}"
    print(line)
    return 0


def _sample_workdir(args, out: Path, prog: str) -> int:
    import numpy as np

    from ..checkpoint import CheckpointError
    from ..samplers.registry import describe
    from ..workdir import model_from_workdir, sample_from, save_samples_picture

    given = sde_arguments_given(args) + (["t_end"] if args.t_end is not None else [])
    if given:
        raise CLIError(f"{prog}: --{given[0].replace('_', '-')} comes from the trained model's config with --workdir")
    try:
        model, cfg, shape, step = model_from_workdir(args.workdir, trust=args.trust_checkpoint)
    except CheckpointError as e:
        raise CLIError(f"{prog}: {e}") from None
    if cfg.training.loss == "classifier":
        raise CLIError(f"{prog}: --workdir {args.workdir} holds a classifier; sample a score model (pass the "
                       "classifier with --classifier)")
    if args.label is not None:
        model = _guided_workdir_model(args, model, shape, prog)
    elif args.guidance is not None or args.guidance_type is not None or args.classifier is not None:
        raise CLIError(f"{prog}: --guidance, --guidance-type and --classifier need --class")
    name = args.sampler or cfg.sampling.sampler
    options = sampler_options(args, name, prog)
    if name == cfg.sampling.sampler:  # the trained config's options are the defaults (command-line options win)
        options = {**cfg.sampling.options, **options}
    t0 = time.perf_counter()
    res = sample_from(model, cfg, shape, args.num, seed=args.seed, progress=not args.no_progress,
                      batch_size=min(args.batch_size, 256), sampler=name, **options)
    wall = time.perf_counter() - t0
    x = res.samples.float().cpu()
    extra = {} if res.nfe_per_sample is None else {"nfe_per_sample": res.nfe_per_sample.cpu().numpy()}
    save_npz(out, samples=x.numpy(), nfe=np.int64(res.nfe), seed=np.int64(args.seed), step=np.int64(step), **extra)
    line = (f"wrote {out} ({args.num} samples from step {step}, {describe(name, options)}, NFE {res.nfe}, "
            f"{wall:.1f} s)")
    if not args.no_plot:
        png = out.with_suffix(".png")
        save_samples_picture(x, png, cfg, title=f"NFE {res.nfe}")
        line += f"\nplot: {png}"
    print(line)
    return 0


def _sample_model(args, out: Path, prog: str) -> int:
    """--model KIND:PATH: a model in another project's format (its SDE comes with it; --t-end may move its end)."""
    import numpy as np

    from ..plotting import save_image_grid
    from ..samplers import sample
    from ..samplers.registry import DEFAULT_SAMPLER, describe, resolve
    from .models import load_model

    given = sde_arguments_given(args)
    if given:
        raise CLIError(f"{prog}: --{given[0].replace('_', '-')} comes from the model with --model")
    if args.label is not None or args.guidance is not None or args.guidance_type is not None:
        raise CLIError(f"{prog}: --class / --guidance apply to mixture problems")
    if args.trust_checkpoint:
        raise CLIError(f"{prog}: --trust-checkpoint applies to --workdir (diffusers weights load without pickle)")
    loaded = load_model(args.model, prog, t_end=args.t_end)
    name = args.sampler or DEFAULT_SAMPLER
    options = sampler_options(args, name, prog)
    fn, kwargs = resolve(name, options)
    net = loaded.model.net
    device = next(net.parameters()).device
    t0 = time.perf_counter()
    res = sample(loaded.model, args.num, args.seed, fn, loaded.shape, batch_size=min(args.batch_size, 256),
                 device=device, progress=not args.no_progress, **kwargs)
    wall = time.perf_counter() - t0
    x = res.samples.float().cpu()
    extra = {} if res.nfe_per_sample is None else {"nfe_per_sample": res.nfe_per_sample.cpu().numpy()}
    save_npz(out, samples=x.numpy(), nfe=np.int64(res.nfe), seed=np.int64(args.seed), model=args.model, **extra)
    line = f"wrote {out} ({args.num} samples from {loaded.label}, {describe(name, options)}, NFE {res.nfe}, {wall:.1f} s)"
    if not args.no_plot:
        png = out.with_suffix(".png")
        save_image_grid(((x + 1) / 2).clamp(0, 1).numpy(), png)
        line += f"\nplot: {png}"
    print(line)
    return 0


def _guided_workdir_model(args, model, shape, prog: str):
    """--class K for a trained model: classifier guidance with --classifier, else classifier-free guidance."""
    from ..checkpoint import CheckpointError
    from ..guidance import ClassifierFreeGuidedModel, ClassifierGuidedModel, LabelConditionedModel

    k, w = args.label, (1.0 if args.guidance is None else args.guidance)
    if args.classifier is not None:
        if args.guidance_type == "cfg":
            raise CLIError(f"{prog}: --guidance-type cfg takes no --classifier (it needs a label-conditional model)")
        from ..workdir import classifier_from_workdir

        try:
            clf, ccfg, cshape, _ = classifier_from_workdir(args.classifier, device=_model_device(model),
                                                           trust=args.trust_checkpoint)
        except CheckpointError as e:
            raise CLIError(f"{prog}: --classifier: {e}") from None
        if tuple(cshape) != tuple(shape):
            raise CLIError(f"{prog}: --classifier {args.classifier} classifies data of shape {tuple(cshape)}, the "
                           f"model makes {tuple(shape)}")
        n = int(ccfg.model.kwargs.get("num_classes", 10))
        if k >= n:
            raise CLIError(f"{prog}: --class {k}: the classifier knows {n} classes (0..{n - 1})")
        return ClassifierGuidedModel(model, clf, k, w)
    if args.guidance_type == "classifier":
        raise CLIError(f"{prog}: --guidance-type classifier needs --classifier DIR")
    n = getattr(getattr(model, "net", None), "num_classes", None)
    if not n:
        raise CLIError(f"{prog}: --class needs --classifier DIR, or a label-conditional model (model.kwargs.num_classes "
                       "for classifier-free guidance); this one has no labels")
    if k >= n:
        raise CLIError(f"{prog}: --class {k}: the model knows {n} classes (0..{n - 1})")
    return ClassifierFreeGuidedModel(LabelConditionedModel(model, None), LabelConditionedModel(model, k), w)


def _model_device(model):
    try:
        return str(next(model.net.parameters()).device)
    except (AttributeError, StopIteration):
        return "cpu"


def _finite_float(s: str) -> float:
    import math

    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite, got {s}")
    return v


def _conditional(args, problem, model, prog: str):
    """(guided model, the component it should sample) for --class K on a mixture problem."""
    from ..exact import GaussianMixture
    from ..guidance import ClassifierFreeGuidedModel, ClassifierGuidedModel, MixtureClassifier, mixture_component_model

    if not isinstance(problem, GaussianMixture):
        raise CLIError(f"{prog}: --class needs a mixture problem; {args.problem} has no classes")
    k = args.label
    if k >= problem.num_components:
        raise CLIError(f"{prog}: --class {k}: {args.problem} has {problem.num_components} components "
                       f"(0..{problem.num_components - 1})")
    w = 1.0 if args.guidance is None else args.guidance
    component = mixture_component_model(problem, k, model.sde)
    if (args.guidance_type or "classifier") == "cfg":
        guided = ClassifierFreeGuidedModel(model, component, w)
    else:
        guided = ClassifierGuidedModel(model, MixtureClassifier(problem, model.sde), k, w)
    return guided, component.problem


def cmd_problems(args) -> int:
    from ..exact import builtin_problems

    for name, (desc, _) in builtin_problems().items():
        print(f"{name:10s} {desc}")
    print('or a JSON file: {"weights": [...], "means": [[...], ...], "stds": [...]}')
    return 0
