"""``scoresde inpaint``: fill the unknown coordinates of points under an exact-score problem."""
from __future__ import annotations

import argparse
import time

from .args import (
    CLIError,
    add_sampler_arguments,
    add_sde_arguments,
    check_out,
    load_points,
    make_sde,
    positive,
    sampler_options,
    save_npz,
    seed,
)

__all__ = ["register"]

EPILOG = """\
examples:
  scoresde inpaint --problem gmm8 --sde vp --data points.npy --mask mask.npy --out out/filled.npz
  scoresde inpaint --problem mixture.json --sde ve --data points.npy --mask mask.npy --method repaint \\
      --jump 10 --resample 10 --sampler seeds2 --steps 50 --out out/repaint.npz

MASK.npy holds 1 for a known coordinate and 0 for one to sample: shape (dim,) for every row, or the data's
shape (N, dim). The .npz holds `samples` (one row per data row, the known values kept exactly), the
closed-form conditional's weights per row where it is a mixture (`conditional_weights`) and `nfe`.
replacement: the known part is replaced by the data noised to the level the unknown part has reached,
after every step (not one step behind, as score_sde_pytorch does); repaint: RePaint resampling (Lugmayr
et al. 2022), each block of --jump steps walked down --resample times; dps: diffusion posterior sampling
(Chung et al. 2023), a step of -zeta'/||y - A D(x)|| grad ||y - A D(x)||^2 after each sampler step (one more
NFE per step); exact: the closed-form conditional score of a mixture (the reference).
"""


def nonneg_float(text: str) -> float:
    """A finite float >= 0 (argparse type)."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


def register(sub) -> None:
    from ..inpainting import METHODS

    p = sub.add_parser("inpaint", help="sample the unknown coordinates of points given the known ones",
                       description="Inpainting / imputation under an exact-score problem with any grid sampler.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("problem and data")
    src.add_argument("--problem", required=True, metavar="NAME_OR_JSON", help="a built-in problem or a JSON mixture")
    add_sde_arguments(src, "forward SDE (default vp)")
    src.add_argument("--data", required=True, metavar="POINTS.npy", help="(N, dim) points; unknown entries ignored")
    src.add_argument("--mask", required=True, metavar="MASK.npy", help="1 = known, 0 = to sample; (dim,) or (N, dim)")
    run = p.add_argument_group("run")
    run.add_argument("--method", dest="inpaint_method", choices=list(METHODS), default="replacement",
                     help="replacement (default), RePaint resampling, DPS posterior guidance, or exact guidance "
                          "(exact-score mixtures only)")
    run.add_argument("--jump", type=positive(int), help="[repaint] steps per resampled block (default 1)")
    run.add_argument("--resample", type=positive(int), help="[repaint] passes over each block (default 5)")
    run.add_argument("--zeta", type=nonneg_float, help="[dps] step scale zeta' of DPS (default 1, the paper's)")
    run.add_argument("--seed", type=seed, default=0, help="run seed; row i uses the per-sample seed (seed, i)")
    run.add_argument("--out", required=True, metavar="FILE.npz", help="output .npz")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (accepted for symmetry)")
    from ..inpainting import GRID_SAMPLERS

    add_sampler_arguments(p, "a grid sampler (default seeds1)", only=GRID_SAMPLERS)
    p.set_defaults(func=cmd_inpaint)


def _load_mask(path: str, data_shape: tuple[int, int], prog: str):
    from pathlib import Path

    import numpy as np
    import torch

    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{prog}: --mask file not found: {path}")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CLIError(f"{prog}: cannot read --mask {path} ({str(e).splitlines()[0] if str(e) else e})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise CLIError(f"{prog}: --mask {path} must be an .npy array of 0 and 1")
    if arr.shape not in ((data_shape[1],), tuple(data_shape)):
        raise CLIError(f"{prog}: --mask {path} has shape {arr.shape}; expected ({data_shape[1]},) or {data_shape}")
    if not np.isin(arr, (0, 1)).all():
        raise CLIError(f"{prog}: --mask {path} must hold only 0 (sample) and 1 (known)")
    mask = torch.from_numpy(arr.astype(np.float64)).expand(data_shape)
    rows = mask.sum(1)
    if bool((rows == 0).any()) or bool((rows == data_shape[1]).any()):
        raise CLIError(f"{prog}: --mask {path}: every row needs some known and some unknown coordinates")
    return mask


def cmd_inpaint(args) -> int:
    prog = "scoresde inpaint"
    out = check_out(args.out, prog)
    import numpy as np
    import torch

    from ..brownian import NoiseSource
    from ..exact import ExactScoreModel, GaussianMixture, ProblemError, load_problem
    from ..inpainting import inpaint

    if args.inpaint_method != "repaint" and (args.jump is not None or args.resample is not None):
        raise CLIError(f"{prog}: --jump and --resample apply to --method repaint")
    if args.inpaint_method != "dps" and args.zeta is not None:
        raise CLIError(f"{prog}: --zeta applies to --method dps")
    args.sde = args.sde or "vp"
    name = args.sampler or "seeds1"
    try:
        problem = load_problem(args.problem)
    except ProblemError as e:
        raise CLIError(f"{prog}: {e}") from None
    model = ExactScoreModel(problem, make_sde(args, prog))
    x = load_points(args.data, problem.dim, prog)
    mask = _load_mask(args.mask, tuple(x.shape), prog)
    options = sampler_options(args, name, prog)
    steps = options.pop("steps", 100)
    if args.inpaint_method == "exact" and not isinstance(problem, GaussianMixture):
        raise CLIError(f"{prog}: --method exact needs a mixture problem")
    kw = {"repaint": {"jump": args.jump or 1, "resample": args.resample or 5},
          "dps": {"zeta": 1.0 if args.zeta is None else args.zeta}}.get(args.inpaint_method, {})
    t0 = time.perf_counter()
    rows, nfe = [], 0
    for i in range(x.shape[0]):  # each row its own known part; row i draws from the per-sample seed (seed, i)
        noise = NoiseSource(args.seed, (problem.dim,), [i], dtype=torch.float64)
        xT = model.sde.prior_sample(noise.draw())
        res = inpaint(model, xT, noise, known=x[i:i + 1], mask=mask[i:i + 1], base=name, steps=steps,
                      method=args.inpaint_method, **kw, **options)
        rows.append(res.samples)
        nfe = max(nfe, res.nfe)
    samples = torch.cat(rows).numpy()
    extra = {}
    if isinstance(problem, GaussianMixture):
        extra["conditional_weights"] = np.stack([problem.condition(x[i], mask[i]).weights.numpy()
                                                 for i in range(x.shape[0])])
    save_npz(out, samples=samples, nfe=np.int64(nfe), seed=np.int64(args.seed), mask=mask.numpy(), **extra)
    print(f"wrote {out} ({x.shape[0]} rows, {args.inpaint_method} with {name} {steps} steps, NFE {nfe} per row, "
          f"{time.perf_counter() - t0:.1f} s)")
    return 0
