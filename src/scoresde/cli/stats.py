"""``scoresde stats``: reference statistics (mean, covariance, raw features) of a data set in a feature space."""
from __future__ import annotations

import argparse
import time

from .args import CLIError, add_feature_arguments, check_out, feature_extractor, positive
from .train import _check_device

__all__ = ["register"]

EPILOG = """\
examples:
  scoresde stats --data mnist5k --features digits --out stats/mnist5k_digits.npz
  scoresde stats --data cifar10:train@data/cifar-10-batches-py --features inception --raw --out stats/cifar10.npz
  scoresde stats --data configs/mnist_cpu.yaml:test --features inception --out stats/mnist_test.npz
  scoresde stats --data imgs/ --out stats/folder.npz

--data: a data spec NAME[:SPLIT][@ROOT] (any data set the trainer reads: mnist5k, digits, mnist,
fashion_mnist, cifar10, celeba, folder, array, hf), a training config CONFIG.yaml[:SPLIT], an image
folder, or an .npz holding `samples`. The default split is train (all for folders, arrays, hf).
The .npz holds mu, sigma (float64, unbiased), n, feature_name; --raw adds pool_3 (N x d raw features)
and logits, the seed's format (score_sde reads pool_3).
"""


def register(sub) -> None:
    s = sub.add_parser("stats", help="reference statistics (mean, covariance, raw features) of a data set",
                       description="Features of a data set's images and their mean and covariance, for FID.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--data", required=True, metavar="SPEC", help="data spec, config.yaml, image folder or samples .npz")
    s.add_argument("--out", required=True, metavar="STATS.npz", help="output statistics file")
    s.add_argument("--raw", action="store_true", help="also store the raw features (pool_3) and logits")
    s.add_argument("--num", type=positive(int), help="use the first NUM images only")
    s.add_argument("--scale", choices=["[-1,1]", "[0,1]"], default="[-1,1]",
                   help="range of float `samples` in an .npz (default [-1,1])")
    s.add_argument("--device", default="cpu", help="device of the feature network (default cpu)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_feature_arguments(s)
    s.set_defaults(func=cmd_stats)


def read_source(spec: str, prog: str, scale: str, num: int | None = None):
    """One metric input (statistics or 8-bit images); unreadable ones are one line."""
    from ..metrics.sources import SourceError, load_source
    from ..metrics.stats import StatisticsError

    try:
        return load_source(spec, scale=scale, limit=num)
    except (SourceError, StatisticsError) as e:
        raise CLIError(f"{prog}: {e}") from None


def source_features(spec: str, fx, prog: str, scale: str, num: int | None = None, progress: bool = True, src=None):
    """Statistics of one metric input: read from a file, or computed from its images with ``fx``."""
    from ..metrics.stats import Statistics

    src = src if src is not None else read_source(spec, prog, scale, num)
    if src.stats is not None:
        return src, src.stats
    if src.images.shape[0] < 2:
        raise CLIError(f"{prog}: {spec} holds {src.images.shape[0]} image(s); statistics need at least 2")
    try:
        f, logits = fx(src.images, progress=progress)
    except ValueError as e:
        raise CLIError(f"{prog}: {spec}: {e}") from None
    return src, Statistics.from_features(f, logits, fx.name)


def cmd_stats(args) -> int:
    prog = "scoresde stats"
    out = check_out(args.out, prog)
    fx = feature_extractor(args, prog, _check_device(args.device, prog) or "cpu")
    t0 = time.perf_counter()
    src, st = source_features(args.data, fx, prog, args.scale, args.num, not args.no_progress)
    if src.stats is not None:
        raise CLIError(f"{prog}: {args.data} is already a statistics file")
    from ..metrics.stats import save_statistics

    save_statistics(out, st, raw=args.raw)
    wall = time.perf_counter() - t0
    print(f"wrote {out} ({src.label}: {st.n} images, {fx.name} features d={st.dim}"
          f"{', raw features and logits' if args.raw else ''}; {wall:.1f} s, {st.n / max(wall, 1e-9):.1f} img/s)")
    return 0
