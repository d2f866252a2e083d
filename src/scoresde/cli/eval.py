"""``scoresde eval``: sample a trained model in resumable shards (one or many processes) and score the samples."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .args import (
    CLIError,
    add_feature_arguments,
    add_sampler_arguments,
    feature_extractor,
    positive,
    sampler_options,
    samplers_epilog,
    seed,
)
from .models import MODEL_HELP

__all__ = ["register"]

EPILOG = """\
examples:
  scoresde eval --workdir runs/mnist --num 500 --features digits --ref mnist5k
  scoresde eval --workdir runs/mnist --num 10000 --sampler seeds2 --steps 25 --features inception \\
      --ref stats/mnist5k_inception.npz --shard-size 250
  scoresde eval --model diffusers:./ddpm-cifar10 --num 10000 --sampler ms2 --steps 20 --features inception \
      --ref stats/cifar10_inception.npz --out-dir runs/ddpm-eval
  torchrun --standalone --nproc_per_node=2 -m scoresde.cli eval --workdir runs/mnist --num-samples 2000 \\
      --features digits --ref mnist5k --bpd

Samples i = 0..num-1 use the per-sample seeds (--seed, i) and are cut into shards of --shard-size; each
shard (uint8 images, features, logits, NFE) is written atomically to --out-dir (default
WORKDIR/eval/SAMPLER-seedS; required with --model). Run the same command again after an interruption: finished shards are
skipped and the result is identical. Under torchrun (gloo) shard k is drawn by rank k mod world size and
rank 0 gathers the shard files (the ranks must share a file system).
--ref: a statistics file (`scoresde stats`), or a data spec / image folder / samples .npz whose features
are computed now. The JSON report (FID, KID +- std over subsets, IS +- std over splits, precision, recall,
NFE, sampler settings, wall time; bits/dim with --bpd) goes to OUT_DIR/report.json.
"""


def register(sub) -> None:
    s = sub.add_parser("eval", help="sample a trained model in resumable shards and report FID / KID / IS / "
                                    "precision-recall (torchrun: across processes)",
                       description="Generate --num samples of a trained model in resumable shards with per-sample "
                                   "seeds (split across torchrun ranks), extract features and compare them with "
                                   "reference statistics.",
                       epilog=EPILOG + "\n" + samplers_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    g = s.add_argument_group("what to evaluate")
    g.add_argument("--workdir", metavar="W", help="a training workdir (newest checkpoint, EMA weights)")
    g.add_argument("--model", metavar="KIND:PATH", help=MODEL_HELP + "; instead of --workdir (the sampler defaults "
                   "to scoresde sample's, the data range and shape come from the model; needs --out-dir)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of the checkpoint (only for files you trust)")
    g.add_argument("--ref", required=True, metavar="STATS.npz|DATA",
                   help="reference: a statistics file, or a data spec / image folder / samples .npz")
    run = s.add_argument_group("run")
    run.add_argument("--num", "--num-samples", dest="num", type=positive(int), default=50000,
                     help="number of samples (default 50000; under torchrun write --num-samples: torchrun takes --num "
                          "for its own --numa-binding)")
    run.add_argument("--seed", type=seed, default=0, help="run seed; sample i uses the per-sample seed (seed, i)")
    run.add_argument("--shard-size", type=positive(int), default=500, help="samples per shard file (default 500)")
    run.add_argument("--batch-size", type=positive(int), default=250,
                     help="samples per sampler batch inside a shard (default 250)")
    run.add_argument("--out-dir", metavar="DIR", help="shard folder (default WORKDIR/eval/SAMPLER-seedS; required with "
                                                     "--model)")
    run.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda:LOCAL_RANK when available, else cpu)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    m = s.add_argument_group("metrics")
    m.add_argument("--kid-subsets", type=positive(int), default=100, help="KID subsets (default 100)")
    m.add_argument("--kid-subset-size", type=positive(int), default=1000, help="KID subset size (default 1000)")
    m.add_argument("--pr-num", type=positive(int), default=10000,
                   help="precision / recall on at most this many points per side (default 10000)")
    m.add_argument("--bpd", action="store_true", help="also bits/dim on the test split (probability-flow ODE)")
    m.add_argument("--bpd-num", type=positive(int), default=100, help="--bpd: test images (default 100)")
    add_feature_arguments(s)
    add_sampler_arguments(s, "the sampler (default: the trained config's; with --model scoresde sample's default)")
    s.set_defaults(func=cmd_eval)


def _device(args, prog: str) -> str:
    import torch

    if args.device is None:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    from .train import _check_device

    return _check_device(args.device, prog)


def cmd_eval(args) -> int:
    prog = "scoresde eval"
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    dist = None
    if world > 1:
        from datetime import timedelta

        import torch.distributed as dist

        # ranks meet only at the end of generation, which may be hours apart on a restart: a long timeout
        dist.init_process_group("gloo", timeout=timedelta(days=2))
    try:
        return _eval(args, prog, rank, world, dist)
    finally:
        if dist is not None and dist.is_initialized():
            dist.destroy_process_group()


def _eval(args, prog: str, rank: int, world: int, dist) -> int:
    from ..checkpoint import CheckpointError
    from ..evaluation import EvalShards, gather_shards, generate_shards
    from ..metrics.features import to_uint8
    from ..samplers import sample
    from ..samplers.registry import SAMPLERS, describe, option_default, resolve
    from ..workdir import to_unit_range
    from .stats import source_features

    t0 = time.perf_counter()
    if (args.workdir is None) == (args.model is None):
        raise CLIError(f"{prog}: give exactly one of --workdir (a trained workdir) or --model KIND:PATH")
    device = _device(args, prog)
    if args.model is not None:
        source = _from_model(args, prog, device)
    else:
        try:
            source = _from_workdir(args, device)
        except CheckpointError as e:
            raise CLIError(f"{prog}: {e}") from None
    model, shape, step, scale = source["model"], source["shape"], source["step"], source["scale"]
    if len(shape) != 3:
        raise CLIError(f"{prog}: {source['label']} models {len(shape)}-d data of shape {shape}; eval scores images")
    name = args.sampler or source["sampler"]
    options = sampler_options(args, name, prog)
    if name == source["sampler"]:  # the trained config's options are the defaults (command-line options win)
        options = {**source["options"], **options}
    fn, kwargs = resolve(name, options)
    effective = {k: options.get(k, option_default(name, k)) for k in SAMPLERS[name].options}
    fx = feature_extractor(args, prog, device)
    folder = Path(args.out_dir) if args.out_dir else Path(args.workdir) / "eval" / f"{name}-seed{args.seed}"
    cfg = source.get("cfg")
    ref = err = None
    if rank == 0:  # the reference first: a wrong --ref stops every rank before any sampling
        try:
            ref_src, ref = source_features(args.ref, fx, prog, "[-1,1]", progress=not args.no_progress)
            if ref.dim != fx.dim or (ref.feature_name and ref.feature_name != fx.name):
                raise CLIError(f"{prog}: --ref {args.ref} holds {ref.feature_name or f'{ref.dim}-d'} features, "
                               f"not {fx.name}; make it with --features {fx.name}")
        except CLIError as e:
            err = str(e)
    _agree(dist, rank, world, err)
    meta = {"checkpoint_step": step, "sampler": name, "options": effective, "seed": args.seed,
            "shard_size": args.shard_size, "batch_size": args.batch_size, "data_scale": scale,
            "features": fx.name, "preprocessing": (args.preprocessing or "tf") if fx.name == "inception" else None}
    if args.model is not None:
        meta["model"] = args.model

    def draw(lo: int, hi: int):
        res = sample(model, hi - lo, args.seed, fn, shape, batch_size=args.batch_size, device=device, start_index=lo,
                     **kwargs)
        return res.samples, res.nfe, None if res.nfe_per_sample is None else res.nfe_per_sample.cpu().numpy()

    def to_images(x):
        return to_uint8(to_unit_range(x.float().nan_to_num(0.0).cpu(), scale))

    job = EvalShards(folder, draw, to_images, fx, meta)
    t_gen = time.perf_counter()
    counts, err = {}, None
    try:
        counts = generate_shards(job, args.num, args.shard_size, rank, world, progress=rank == 0 and not args.no_progress)
    except (ValueError, OSError) as e:
        err = f"{prog}: {e}"
    _agree(dist, rank, world, err)  # the barrier: every rank's shards are written (or every rank stops with the error)
    t_gen = time.perf_counter() - t_gen  # every rank's shards are done here
    if rank != 0:
        return 0
    try:
        got = gather_shards(folder, args.num, args.shard_size, meta)
    except ValueError as e:
        raise CLIError(f"{prog}: {e}") from None
    from ..metrics.report import compare
    from ..metrics.stats import Statistics, save_statistics

    samples = Statistics.from_features(got["features"], got["logits"], fx.name)
    save_statistics(folder / "samples_stats.npz", samples)
    metrics = compare(samples, ref, kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                      pr_num=args.pr_num, kid_scale=fx.kid_scale)
    report = {**source["report"], "checkpoint_step": step, "num": args.num, "seed": args.seed,
              "sampler": name, "sampler_settings": effective, "sampler_description": describe(name, options),
              "nfe": got["nfe"], "nfe_mean": got["nfe_mean"], "features": fx.name, "feature_network": fx.description,
              "ref": ref_src.label, "n_ref": ref.n, "fid": metrics["fid"]}
    for k in ("kid", "kid_std", "kid_subsets", "kid_subset_size", "precision", "recall", "pr_k", "pr_n"):
        if k in metrics:
            report[k] = metrics[k]
    if "is_a" in metrics:
        report["is"], report["is_std"] = metrics["is_a"], metrics["is_a_std"]
    if args.bpd:
        report.update(_bpd(args, prog, model, cfg))
    report.update({"world_size": world, "shards": -(-args.num // args.shard_size), "shards_generated_here":
                   counts["generated"], "sample_s_total": round(got["gen_s"], 2),
                   "feature_s_total": round(got["feat_s"], 2), "generation_wall_s": round(t_gen, 2),
                   "wall_s": round(time.perf_counter() - t0, 2)})
    out = folder / "report.json"
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_finite(report), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, out)
    where = source["label"] if step is None else f"{source['label']} step {step}"
    line = (f"{where}, {report['sampler_description']}, NFE {got['nfe']}, {args.num} samples: "
            f"FID {metrics['fid']:.3f} ({fx.name} vs {ref_src.label})")
    if "kid" in report:
        line += f", KID {report['kid'] * 1e3:.2f}e-3 +- {report['kid_std'] * 1e3:.2f}e-3"
    if "is" in report:
        line += f", IS {report['is']:.2f} +- {report['is_std']:.2f}"
    if "precision" in report:
        line += f", precision {report['precision']:.3f}, recall {report['recall']:.3f}"
    if "bpd" in report:
        line += f", {report['bpd']:.4f} +- {report['bpd_stderr']:.4f} bits/dim"  # nan +- with one image
    print(f"{line}; {report['wall_s']:.1f} s; report {out}")
    return 0


def _from_workdir(args, device: str) -> dict:
    """What eval needs of a training workdir: its model, the trained config (sampler, data scale) and shape."""
    from ..workdir import model_from_workdir

    model, cfg, shape, step = model_from_workdir(args.workdir, device=device, trust=args.trust_checkpoint)
    return {"model": model, "cfg": cfg, "shape": shape, "step": step, "scale": cfg.data.scale, "label": args.workdir,
            "sampler": cfg.sampling.sampler, "options": cfg.sampling.options, "report": {"workdir": str(args.workdir)}}


def _from_model(args, prog: str, device: str) -> dict:
    """What eval needs of a --model KIND:PATH: the model, its shape and data range; scoresde sample's default sampler."""
    from ..samplers.registry import DEFAULT_SAMPLER
    from .models import load_model

    if args.trust_checkpoint:
        raise CLIError(f"{prog}: --trust-checkpoint applies to --workdir (diffusers weights load without pickle)")
    if args.out_dir is None:
        raise CLIError(f"{prog}: --model needs --out-dir (the shard folder)")
    if args.bpd:
        raise CLIError(f"{prog}: --bpd reads the test split of a workdir's data; with --model use scoresde likelihood "
                       "--model ... --data IMAGES")
    loaded = load_model(args.model, prog, device=device)
    return {"model": loaded.model, "shape": tuple(loaded.shape), "step": None, "scale": loaded.data_range,
            "label": args.model, "sampler": DEFAULT_SAMPLER, "options": {}, "report": {"model": args.model}}


def _finite(obj):
    """NaN / inf (e.g. a standard error of one value) as null, so the report is strict JSON."""
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _agree(dist, rank: int, world: int, err: str | None) -> None:
    """A collective over all ranks (a barrier): if any rank failed, every rank stops; rank 0 prints the one line."""
    if dist is not None:
        errs: list = [None] * world
        dist.all_gather_object(errs, err)
        err = next((e for e in errs if e), None)
    if err:
        if rank != 0:
            raise SystemExit(2)
        raise CLIError(err)


def _bpd(args, prog: str, model, cfg) -> dict:
    """Bits/dim of the first --bpd-num test images (Hutchinson divergence, dopri5 1e-5, as `scoresde likelihood`)."""
    from ..data import DataError, unscale
    from ..likelihood import bits_per_dim
    from ..workdir import load_training_data

    try:
        x = load_training_data(cfg, split="test")[:args.bpd_num]
    except DataError as e:
        raise CLIError(f"{prog}: --bpd: {e}") from None
    device = next(model.net.parameters()).device
    images01 = unscale(x.to(device), cfg.data.scale).clamp(0, 1)
    res = bits_per_dim(model, images01, data_range=cfg.data.scale, repeats=1, seed=args.seed,
                       divergence="hutchinson", probe="rademacher", probes=1, rtol=1e-5, atol=1e-5, t_end=1e-5,
                       batch_size=100, progress=not args.no_progress)
    if x.shape[0] < args.bpd_num:
        print(f"{prog}: note: the test split holds {x.shape[0]} images; bits/dim on all of them", file=sys.stderr)
    return {"bpd": res.mean, "bpd_stderr": res.stderr, "bpd_num": int(x.shape[0]), "bpd_nfe": res.nfe}
