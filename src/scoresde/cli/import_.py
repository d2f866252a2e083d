"""``scoresde import``: turn another code base's checkpoint into a scoresde workdir (``import score-sde``)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from .args import CLIError, Parser

EPILOG = """examples:
  scoresde import score-sde exp/ve/cifar10_ncsnpp_continuous/checkpoint_24.pth \\
      --config configs/ve/cifar10_ncsnpp_continuous.yaml --workdir runs/ncsnpp_cifar10
  scoresde sample --workdir runs/ncsnpp_cifar10 --num 64 --out runs/ncsnpp_cifar10/grid.npz

The config is the one of configs/ that mirrors the score_sde_pytorch config the checkpoint was trained
with (same name); the workdir gets that config in score_sde's network contract (time input, prediction,
layout switches) and one checkpoint ckpt_<step>.pt, after which every --workdir command works on it.
"""


def register(sub) -> None:
    imp = sub.add_parser("import", help="turn a checkpoint of another code base into a scoresde workdir",
                         description="Turn a checkpoint of another code base into a scoresde workdir.")
    formats = imp.add_subparsers(dest="format", metavar="FORMAT", parser_class=Parser)
    sd = formats.add_parser("score-sde", help="a score_sde_pytorch checkpoint_N.pth (Song et al. 2021)",
                            description="Map a score_sde_pytorch checkpoint (checkpoint_N.pth: model, ema, optimizer, "
                                        "step) onto the network of a config, read without executing pickled code.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sd.add_argument("checkpoint", metavar="CKPT", help="the score_sde_pytorch checkpoint file")
    sd.add_argument("--config", required=True, metavar="C.yaml",
                    help="the config of configs/ mirroring the one the checkpoint was trained with")
    sd.add_argument("--workdir", required=True, metavar="W", help="the workdir to write (must hold no checkpoint)")
    sd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. data.resolution=256 (repeatable)")
    sd.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA (shadow_params) ones")
    sd.add_argument("--trust-checkpoint", action="store_true",
                    help="allow a checkpoint that needs full unpickling (runs code from the file: only for files "
                         "you trust)")
    sd.set_defaults(func=cmd_import_score_sde)
    imp.set_defaults(func=lambda args: _no_format(imp))


def _no_format(parser: argparse.ArgumentParser) -> int:
    raise CLIError(f"{parser.prog}: name the format to import (score-sde) (see --help)")


def cmd_import_score_sde(args) -> int:
    import yaml

    from ..checkpoint import CheckpointError, list_checkpoints, save_checkpoint
    from ..config import ConfigError, config_to_dict, load_config
    from ..interop.score_sde import read_score_sde_checkpoint

    prog = "scoresde import score-sde"
    workdir = Path(args.workdir)
    if workdir.exists() and not workdir.is_dir():
        raise CLIError(f"{prog}: --workdir {workdir} exists and is not a directory")
    if list_checkpoints(workdir / "checkpoints"):
        raise CLIError(f"{prog}: --workdir {workdir} already holds checkpoints; import into a new workdir")
    try:
        cfg = load_config(args.config, args.set)
        ck = read_score_sde_checkpoint(args.checkpoint, cfg, use_ema=not args.no_ema, trust=args.trust_checkpoint)
    except (ConfigError, CheckpointError) as e:
        raise CLIError(f"{prog}: {e}") from None
    weights = ck.ema_weights if ck.ema_weights is not None and not args.no_ema else ck.model_weights
    tc = ck.config.training
    state = {"step": ck.step, "model": ck.model_weights,
             "ema": {"shadow": weights, "num_updates": ck.step, "rate": tc.ema_rate, "warmup": tc.ema_warmup},
             "optimizer": {}, "config": config_to_dict(ck.config), "data_shape": list(ck.data_shape)}
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = workdir / "config.yaml.tmp"
        tmp.write_text(yaml.safe_dump(config_to_dict(ck.config), sort_keys=False))
        os.replace(tmp, workdir / "config.yaml")
        path = save_checkpoint(state, workdir / "checkpoints", ck.step, keep=1)
    except OSError as e:
        raise CLIError(f"{prog}: cannot write {workdir}: {e.strerror or e}") from None
    kind = "raw" if args.no_ema else "EMA"
    n = sum(v.numel() for v in weights.values())
    print(f"imported {args.checkpoint} (step {ck.step}, {kind} weights, {n / 1e6:.2f} M values, "
          f"{ck.config.model.arch} {tuple(ck.data_shape)}) -> {path}\n"
          f"sample with: scoresde sample --workdir {workdir}")
    return 0
