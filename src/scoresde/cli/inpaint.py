"""``scoresde inpaint``: fill the unknown coordinates of points (exact-score problem) or pixels (trained workdir)."""
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
from .image_io import IMAGES_HELP, MASK_HELP
from .models import MODEL_HELP

__all__ = ["register"]

EPILOG = """\
examples:
  scoresde inpaint --workdir runs/mnist --images digits.npy --mask lower-half --out out/fills.npz
  scoresde inpaint --workdir runs/mnist --images pics/ --mask box:8,8,12,12 --method repaint --resample 5 \
      --out out/box.npz
  scoresde inpaint --problem gmm8 --sde vp --data points.npy --mask mask.npy --out out/filled.npz
  scoresde inpaint --problem mixture.json --sde ve --data points.npy --mask mask.npy --method repaint \\
      --jump 10 --resample 10 --sampler seeds2 --steps 50 --out out/repaint.npz
  scoresde inpaint --problem mixture.json --data points.npy --mask mask.npy --method tds --particles 16 \\
      --sigma-y 0.05 --out out/tds.npz

With --workdir: --images X.npy|DIR (values in [0, 1], the model's size) and --mask M.npy (1 = known pixel) or a
region to fill: lower-half, upper-half, left-half, right-half, box:TOP,LEFT,HEIGHT,WIDTH. The .npz holds
`samples` (the filled images, data space), `mask` and `nfe`; a PNG beside it shows originals, inputs, fills.
With --problem: MASK.npy holds 1 for a known coordinate and 0 for one to sample: shape (dim,) for every row, or the data's
shape (N, dim). The .npz holds `samples` (one row per data row, the known values kept exactly), the
closed-form conditional's weights per row where it is a mixture (`conditional_weights`) and `nfe`.
replacement: the known part is replaced by the data noised to the level the unknown part has reached,
after every step (not one step behind, as score_sde_pytorch does); repaint: RePaint resampling (Lugmayr
et al. 2022), each block of --jump steps walked down --resample times; dps: diffusion posterior sampling
(Chung et al. 2023), a step of -zeta'/||y - A D(x)|| grad ||y - A D(x)||^2 after each sampler step (one more
NFE per step); exact: the closed-form conditional score of a mixture (the reference); tds: the twisted
diffusion sampler (Wu et al. 2023), sequential Monte Carlo with --particles K per row (default 16) for the
observation y = known + sigma_y n (--sigma-y, default 0.05), asymptotically exact as K grows with any score
model; it steps with seeds1 (the DDPM ancestral step) and costs K (steps + 1) NFE per row.
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

    p = sub.add_parser("inpaint", help="sample the unknown coordinates of points or pixels given the known ones",
                       description="Inpainting / imputation under an exact-score problem or a trained model, with any "
                                   "grid sampler.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("problem and data")
    src.add_argument("--problem", metavar="NAME_OR_JSON", help="a built-in problem or a JSON mixture")
    add_sde_arguments(src, "forward SDE (default vp)")
    src.add_argument("--data", metavar="POINTS.npy", help="[--problem] (N, dim) points; unknown entries ignored")
    src.add_argument("--workdir", metavar="W", help="a training workdir: inpaint images with its newest model (EMA)")
    src.add_argument("--model", metavar="KIND:PATH", help="instead of --workdir: " + MODEL_HELP)
    src.add_argument("--trust-checkpoint", action="store_true",
                     help="allow full unpickling of the checkpoint (only for files you trust)")
    src.add_argument("--images", metavar="X.npy|DIR", help="[--workdir] " + IMAGES_HELP)
    src.add_argument("--mask", required=True, metavar="MASK",
                     help="--problem: MASK.npy, 1 = known, 0 = to sample, (dim,) or (N, dim); --workdir: " + MASK_HELP)
    src.add_argument("--batch-size", type=positive(int), default=64, help="[--workdir] images per batch (default 64)")
    run = p.add_argument_group("run")
    run.add_argument("--method", dest="inpaint_method", choices=list(METHODS), default="replacement",
                     help="replacement (default), RePaint resampling, DPS posterior guidance, exact guidance "
                          "(exact-score mixtures only), or the twisted diffusion sampler tds (K particles)")
    run.add_argument("--jump", type=positive(int), help="[repaint] steps per resampled block (default 1)")
    run.add_argument("--resample", type=positive(int), help="[repaint] passes over each block (default 5)")
    run.add_argument("--zeta", type=nonneg_float, help="[dps] step scale zeta' of DPS (default 1, the paper's)")
    run.add_argument("--particles", type=positive(int), help="[tds] particles per data row, K (default 16)")
    run.add_argument("--sigma-y", type=positive(float), help="[tds] observation noise sigma_y of the known values "
                                                             "(default 0.05, for data in [-1, 1])")
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
    if args.model is not None and args.workdir is not None:
        raise CLIError(f"{prog}: give --workdir or --model, not both")
    if (args.problem is None) == (args.workdir is None and args.model is None):
        raise CLIError(f"{prog}: give exactly one of --problem (with --data) or --workdir / --model (with --images)")
    if (args.workdir is not None or args.model is not None) and args.data is not None:
        raise CLIError(f"{prog}: --data goes with --problem; with --workdir / --model give --images")
    if args.problem is not None and args.images is not None:
        raise CLIError(f"{prog}: --images goes with --workdir; with --problem give --data")
    if args.workdir is None and args.model is None and args.data is None:
        raise CLIError(f"{prog}: --problem needs --data POINTS.npy")
    if (args.workdir is not None or args.model is not None) and args.images is None:
        raise CLIError(f"{prog}: --{'workdir' if args.model is None else 'model'} needs --images X.npy|DIR")
    import numpy as np
    import torch

    from ..brownian import NoiseSource
    from ..exact import ExactScoreModel, GaussianMixture, ProblemError, load_problem
    from ..inpainting import inpaint

    method_kw = _method_options(args, prog)
    name = args.sampler or "seeds1"
    if args.workdir is not None or args.model is not None:
        return _inpaint_workdir(args, out, prog, name, method_kw)
    args.sde = args.sde or "vp"
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
    kw = method_kw
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


def _method_options(args, prog: str) -> dict:
    """The inpainting method's own options (--jump/--resample for repaint, --zeta for dps), checked."""
    if args.inpaint_method != "repaint" and (args.jump is not None or args.resample is not None):
        raise CLIError(f"{prog}: --jump and --resample apply to --method repaint")
    if args.inpaint_method != "dps" and args.zeta is not None:
        raise CLIError(f"{prog}: --zeta applies to --method dps")
    if args.inpaint_method != "tds" and (getattr(args, "particles", None) is not None
                                         or getattr(args, "sigma_y", None) is not None):
        raise CLIError(f"{prog}: --particles and --sigma-y apply to --method tds")
    if args.inpaint_method == "tds":
        if (args.sampler or "seeds1") != "seeds1":
            raise CLIError(f"{prog}: --method tds proposes with the DDPM ancestral step: --sampler must be seeds1 "
                           f"(the default), got {args.sampler}")
        if getattr(args, "eta", None) not in (None, 1.0) or getattr(args, "form", None) not in (None, "data"):
            raise CLIError(f"{prog}: --method tds needs seeds1's Gaussian step (--eta 1, --form data)")
        from ..inpainting import TDS_PARTICLES, TDS_SIGMA_Y

        return {"particles": args.particles or TDS_PARTICLES,
                "sigma_y": TDS_SIGMA_Y if args.sigma_y is None else args.sigma_y}
    return {"repaint": {"jump": args.jump or 1, "resample": args.resample or 5},
            "dps": {"zeta": 1.0 if args.zeta is None else args.zeta}}.get(args.inpaint_method, {})


def load_workdir_model(args, prog: str):
    """(model, config, data shape, step) of --workdir, or of --model KIND:PATH (a config holding only its data scale,
    step -1); the SDE comes from the config / the model."""
    from ..checkpoint import CheckpointError
    from ..workdir import model_from_workdir
    from .args import sde_arguments_given

    given = sde_arguments_given(args)
    source = "--model" if getattr(args, "model", None) is not None else "--workdir"
    if given:
        where = "the model" if source == "--model" else "the trained model's config"
        raise CLIError(f"{prog}: --{given[0].replace('_', '-')} comes from {where} with {source}")
    if source == "--model":
        if args.trust_checkpoint:
            raise CLIError(f"{prog}: --trust-checkpoint applies to --workdir (--model weights load without pickle)")
        from types import SimpleNamespace

        from .models import load_model

        loaded = load_model(args.model, prog, device="cpu")
        return loaded.model, SimpleNamespace(data=SimpleNamespace(scale=loaded.data_range)), loaded.shape, -1
    try:
        return model_from_workdir(args.workdir, device="cpu", trust=args.trust_checkpoint)
    except CheckpointError as e:
        raise CLIError(f"{prog}: {e}") from None


def save_image_rows(path, rows, cfg) -> None:
    """A PNG with one row block per tensor in ``rows`` (data space, N x C x H x W), at most 16 images each."""
    import torch

    from ..plotting import save_image_grid
    from ..workdir import to_unit_range

    k = min(16, rows[0].shape[0])
    grid = torch.cat([r[:k].float() for r in rows])
    save_image_grid(to_unit_range(grid, cfg.data.scale).numpy(), path, nrow=k)


def _inpaint_workdir(args, out, prog: str, name: str, method_kw: dict) -> int:
    import numpy as np
    import torch

    from ..data.transforms import scale
    from ..inpainting import inpaint
    from .image_io import image_mask, load_images, run_batches

    if args.inpaint_method == "exact":
        raise CLIError(f"{prog}: --method exact needs an exact-score mixture (--problem)")
    model, cfg, shape, step = load_workdir_model(args, prog)
    if len(shape) != 3:
        raise CLIError(f"{prog}: {args.workdir or args.model} models points, not images; use --problem/--data")
    images = load_images(args.images, shape, prog)
    n = images.shape[0]
    mask = image_mask(args.mask, (n,) + tuple(shape), prog)
    options = sampler_options(args, name, prog)
    steps = options.pop("steps", 100)
    known = scale(images, cfg.data.scale).float()
    t0 = time.perf_counter()
    with torch.no_grad():
        samples, nfe = run_batches(inpaint, model, tuple(shape), n, args.seed, args.batch_size,
                                   {"known": known, "mask": mask.float().expand((n,) + tuple(shape))}, base=name,
                                   steps=steps, method=args.inpaint_method, **method_kw, **options)
    wall = time.perf_counter() - t0
    save_npz(out, samples=samples.numpy(), mask=mask.numpy(), nfe=np.int64(nfe), seed=np.int64(args.seed),
             step=np.int64(step))
    png = out.with_suffix(".png")
    shown = torch.where(mask.bool(), known, torch.full_like(known, -1.0 if cfg.data.scale == "[-1,1]" else 0.0))
    save_image_rows(png, [known, shown, samples], cfg)
    print(f"wrote {out} ({n} images from step {step}, {args.inpaint_method} with {name} {steps} steps, "
          f"NFE {nfe} per image, {wall:.1f} s)\nplot: {png} (rows: originals, inputs, fills)")
    return 0
