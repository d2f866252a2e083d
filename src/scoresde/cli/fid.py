"""``scoresde fid A B``: FID, and KID / IS / precision / recall where the inputs allow, as one JSON line."""
from __future__ import annotations

import argparse
import json
import time

from .args import CLIError, add_feature_arguments, feature_extractor, positive
from .train import _check_device

__all__ = ["register"]

EPILOG = """\
examples:
  scoresde fid runs/mnist/samples.npz mnist5k:test --features digits
  scoresde fid runs/mnist/samples.npz stats/cifar10.npz --features inception
  scoresde fid imgs_a/ imgs_b/
  scoresde fid runs/mnist/eval/dpmpp2m-seed0 mnist5k:test --features digits   # the shards of `scoresde eval`

A and B are each a statistics file (ours, the seed's pool_3 or pytorch-fid's mu/sigma), an .npz holding
`samples` (data space, --scale), an image folder, an eval output folder (its shards), or a data spec
NAME[:SPLIT][@ROOT] / CONFIG.yaml[:SPLIT].
FID always; KID (unbiased MMD^2, cubic kernel, 100 subsets of 1000) and improved precision / recall (k=3)
when both sides have raw features; IS of each side with logits (10 splits). A is taken as the generated
side (precision: share of A inside B's manifold). Prints one JSON line.
"""


def register(sub) -> None:
    s = sub.add_parser("fid", help="FID / KID / IS / precision-recall between two sets of images or statistics",
                       description="Compare two image sets (or statistics files) in a feature space; one JSON line.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("a", metavar="A", help="samples .npz, image folder, data spec or statistics file (generated side)")
    s.add_argument("b", metavar="B", help="samples .npz, image folder, data spec or statistics file (reference side)")
    s.add_argument("--num", type=positive(int), help="use the first NUM images of each image input")
    s.add_argument("--scale", choices=["[-1,1]", "[0,1]"], default="[-1,1]",
                   help="range of float `samples` in an .npz (default [-1,1])")
    s.add_argument("--kid-subsets", type=positive(int), default=100, help="KID subsets (default 100)")
    s.add_argument("--kid-subset-size", type=positive(int), default=1000, help="KID subset size (default 1000)")
    s.add_argument("--pr-num", type=positive(int), default=10000,
                   help="precision / recall on at most this many points per side (default 10000)")
    s.add_argument("--device", default="cpu", help="device of the feature network (default cpu)")
    s.add_argument("--progress", action="store_true", help="progress bars on stderr")
    add_feature_arguments(s)
    s.set_defaults(func=cmd_fid)


def cmd_fid(args) -> int:
    prog = "scoresde fid"
    from ..metrics.report import compare
    from .stats import read_source, source_features

    t0 = time.perf_counter()
    inputs = [read_source(spec, prog, args.scale, args.num) for spec in (args.a, args.b)]
    # statistics files need no network: build it only when an image input needs it
    device = _check_device(args.device, prog) or "cpu"
    fx = feature_extractor(args, prog, device) if any(s.images is not None for s in inputs) else None
    sides = [source_features(spec, fx, prog, args.scale, args.num, args.progress, src)
             for spec, src in zip((args.a, args.b), inputs)]
    (src_a, a), (src_b, b) = sides
    for spec, st in ((args.a, a), (args.b, b)):
        if st.feature_name and st.feature_name != args.features:
            raise CLIError(f"{prog}: {spec} holds {st.feature_name} features; run with --features {st.feature_name}")
    try:
        from ..metrics.features import kid_scale

        res = compare(a, b, kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, pr_num=args.pr_num,
                      kid_scale=fx.kid_scale if fx is not None else kid_scale(args.features))
    except ValueError as e:
        raise CLIError(f"{prog}: {e}") from None
    res = {"features": args.features, **res, "a": src_a.label, "b": src_b.label,
           "wall_s": round(time.perf_counter() - t0, 2)}
    from .eval import _finite

    print(json.dumps(_finite(res), allow_nan=False))
    return 0
