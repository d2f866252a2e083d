"""The ``scoresde`` command line: one module per command, shared argument helpers in :mod:`.args`.

Names (SDEs, samplers and their options) come from the registries, never from lists kept here.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import colorize, fid, flow, import_, inpaint, lesson, sample, stats, train
from . import eval as evaluate
from .args import CLIError, Parser, version

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="scoresde", description="Score-based generative modelling through SDEs (Song et al. 2021).",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in (sample, train, flow, inpaint, import_, stats, fid, evaluate, lesson, colorize):
        command.register(sub)
    return p


def _threads() -> None:
    raw = os.environ.get("SCORESDE_THREADS")
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise CLIError(f"scoresde: SCORESDE_THREADS must be a positive integer, got {raw!r}") from None
        if n < 1:
            raise CLIError(f"scoresde: SCORESDE_THREADS must be a positive integer, got {raw!r}")
        import torch

        torch.set_num_threads(n)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        _threads()
        return args.func(args)
    except CLIError as e:
        print(str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scoresde: interrupted", file=sys.stderr)
        return 130
