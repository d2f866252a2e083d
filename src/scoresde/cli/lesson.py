"""``scoresde lesson``: run one of the lessons (the seeds' tutorials as scripts with pictures), or list them."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from .args import CLIError, nonneg_int, seed, writable_dir

__all__ = ["register"]

EPILOG = """\
examples:
  scoresde lesson --list
  scoresde lesson 1                      # figures in lessons_out/01_langevin
  scoresde lesson 2 --quick --out /tmp/l2
  scoresde lesson 5 --workdir runs/mnist   # lesson 5's MNIST half on your own model

Each lesson writes its figures (PNG) into --out and prints what it measured. --quick runs a reduced
version (fewer samples, shorter training) in seconds; the pages docs/lessons/NN_name.md show the full runs.
The code of lesson N is the module scoresde/lessons/NN_name.py; `scoresde lesson N --where` prints its path.
"""


def register(sub) -> None:
    s = sub.add_parser("lesson", help="run a lesson (Langevin, score matching, NCSNv2, fast samplers ...)",
                       description="Run lesson N: it writes its figures to a folder and prints what it measured.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("number", nargs="?", type=nonneg_int, metavar="N", help="the lesson to run")
    s.add_argument("--list", action="store_true", help="list the lessons and exit")
    s.add_argument("--where", action="store_true", help="print the path of lesson N's script and exit")
    s.add_argument("--quick", action="store_true", help="a reduced run (seconds; what the tests run)")
    s.add_argument("--out", metavar="DIR", help="folder for the figures (default lessons_out/NN_name)")
    s.add_argument("--seed", type=seed, default=0, help="run seed (default 0)")
    s.add_argument("--workdir", metavar="W", help="lesson 5: the trained MNIST model to sample (default: lesson 4's "
                   "VP-continuous model beside --out if there is one, else the lesson trains a small one)")
    s.set_defaults(func=cmd_lesson)


def _out_dir(path: str, prog: str) -> Path:
    return writable_dir(Path(path), prog, f"--out {path}")


def cmd_lesson(args) -> int:
    from .. import lessons

    prog = "scoresde lesson"
    if args.list:
        for lesson in lessons.available():
            print(f"{lesson.number:2d}  {lesson.title}")
        return 0
    if args.number is None:
        raise CLIError(f"{prog}: give a lesson number N or --list")
    try:
        lesson = lessons.find(args.number)
    except KeyError as e:
        raise CLIError(f"{prog}: {e.args[0]}") from None
    if args.where:
        print(lesson.path)
        return 0
    out = _out_dir(args.out or os.path.join("lessons_out", lesson.name), prog)
    print(f"lesson {lesson.number}: {lesson.title}{' (quick)' if args.quick else ''}")
    from ..checkpoint import CheckpointError

    options = {"workdir": args.workdir} if args.workdir is not None else {}
    if args.workdir is not None and not os.path.isdir(args.workdir):
        raise CLIError(f"{prog}: --workdir {args.workdir} is not a directory")
    try:
        lessons.run(lesson.number, out, quick=args.quick, seed=args.seed, **options)
    except TypeError as e:
        if "takes no" not in str(e):
            raise
        raise CLIError(f"{prog}: {e}") from None
    except CheckpointError as e:
        raise CLIError(f"{prog}: {e}") from None
    return 0
