"""``scoresde colorize``: colour grey (or RGB, greyed) images with a trained RGB model (Song et al. 2021, App. I.3)."""
from __future__ import annotations

import argparse
import time

from .args import CLIError, add_sampler_arguments, check_out, positive, sampler_options, save_npz, seed
from .image_io import IMAGES_HELP
from .models import MODEL_HELP

__all__ = ["register"]

EPILOG = """\
examples:
  scoresde colorize --workdir runs/rgb --images grey.npy --out out/colour.npz
  scoresde colorize --workdir runs/rgb --images photos/ --sampler seeds2 --steps 50 --method repaint --resample 5 \\
      --out out/colour.npz

--images: grey images (1 channel) or RGB images (their channel mean is the grey input), in [0, 1]. Each pixel is
decoupled by an orthonormal colour transform whose first axis is the grey direction (1, 1, 1)/sqrt 3; the grey
coordinate is known, the two colour coordinates are sampled (replacement, RePaint or DPS, as in `scoresde
inpaint`), starting from a full prior draw in every channel. The output's channel mean is the grey input.
The .npz holds `samples` (RGB, data space), `grey` and `nfe`; a PNG beside it shows inputs and colourings.
"""


def register(sub) -> None:
    from ..inpainting import METHODS
    from .inpaint import nonneg_float

    p = sub.add_parser("colorize", help="colour grey images with a trained RGB model",
                       description="Colorization (Song et al. 2021, App. I.3) with any grid sampler.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("model and images")
    which = src.add_mutually_exclusive_group(required=True)
    which.add_argument("--workdir", metavar="W", help="a training workdir of an RGB model (EMA weights)")
    which.add_argument("--model", metavar="KIND:PATH", help="instead of --workdir: " + MODEL_HELP)
    src.add_argument("--trust-checkpoint", action="store_true",
                     help="allow full unpickling of the checkpoint (only for files you trust)")
    src.add_argument("--images", required=True, metavar="X.npy|DIR", help=IMAGES_HELP + "; grey or RGB")
    run = p.add_argument_group("run")
    run.add_argument("--method", dest="inpaint_method", choices=[m for m in METHODS if m not in ("exact", "tds")],
                     default="replacement", help="replacement (default), RePaint resampling or DPS")
    run.add_argument("--jump", type=positive(int), help="[repaint] steps per resampled block (default 1)")
    run.add_argument("--resample", type=positive(int), help="[repaint] passes over each block (default 5)")
    run.add_argument("--zeta", type=nonneg_float, help="[dps] step scale zeta' (default 1)")
    run.add_argument("--batch-size", type=positive(int), default=64, help="images per batch (default 64)")
    run.add_argument("--seed", type=seed, default=0, help="run seed; image i uses the per-sample seed (seed, i)")
    run.add_argument("--out", required=True, metavar="FILE.npz", help="output .npz; a PNG is written beside it")
    from ..inpainting import GRID_SAMPLERS

    add_sampler_arguments(p, "a grid sampler (default seeds1)", only=GRID_SAMPLERS)
    p.set_defaults(func=cmd_colorize, sde=None)


def cmd_colorize(args) -> int:
    prog = "scoresde colorize"
    out = check_out(args.out, prog)
    import numpy as np
    import torch

    from ..colorization import colorize, grey_of
    from ..data.transforms import scale
    from .image_io import load_images, run_batches
    from .inpaint import _method_options, load_workdir_model, save_image_rows

    method_kw = _method_options(args, prog)
    name = args.sampler or "seeds1"
    model, cfg, shape, step = load_workdir_model(args, prog)
    if len(shape) != 3 or shape[0] != 3:
        raise CLIError(f"{prog}: {args.workdir or args.model} models data of shape {tuple(shape)}; colorization needs an "
                       "RGB image model (3, H, W)")
    images = load_images(args.images, shape, prog, channels=(1, 3))
    grey01 = grey_of(images)
    n = images.shape[0]
    grey = scale(grey01, cfg.data.scale).float()  # the scale is affine per channel, so it commutes with the mean
    options = sampler_options(args, name, prog)
    steps = options.pop("steps", 100)
    t0 = time.perf_counter()
    with torch.no_grad():
        samples, nfe = run_batches(colorize, model, tuple(shape), n, args.seed, args.batch_size, {"grey": grey},
                                   base=name, steps=steps, method=args.inpaint_method, **method_kw, **options)
    wall = time.perf_counter() - t0
    save_npz(out, samples=samples.numpy(), grey=grey.numpy(), nfe=np.int64(nfe), seed=np.int64(args.seed),
             step=np.int64(step))
    png = out.with_suffix(".png")
    rows = [grey.expand(-1, 3, -1, -1), samples]
    if images.shape[1] == 3:
        rows = [scale(images, cfg.data.scale).float()] + rows
    save_image_rows(png, rows, cfg)
    err = float((grey_of(samples.double()) - grey.double()).abs().max())
    print(f"wrote {out} ({n} images from step {step}, {args.inpaint_method} with {name} {steps} steps, NFE {nfe} per "
          f"image, {wall:.1f} s; max |channel mean - grey| {err:.1e})\nplot: {png} (rows: "
          f"{'originals, ' if images.shape[1] == 3 else ''}grey inputs, colourings)")
    return 0
