"""Image inputs of the controllable-generation commands (``inpaint --workdir``, ``colorize``): images and masks.

Images come as an .npy array or a folder of picture files and are returned in [0, 1], (N, C, H, W); masks
as an .npy array (1 = known pixel) or a named region. Every problem is one :class:`CLIError` line.
"""
from __future__ import annotations

import re
from pathlib import Path

from .args import CLIError

__all__ = ["MASK_HELP", "IMAGES_HELP", "load_images", "image_mask", "run_batches"]

IMAGES_HELP = ("an .npy array of images in [0, 1] (or uint8 0..255), shaped (N, H, W), (N, C, H, W) or (N, H, W, C), "
               "or a folder of .png/.jpg images; their size must be the model's")
MASK_HELP = ("the pixels to keep: M.npy (1 = known, 0 = fill; shape (H, W), (C, H, W), (N, H, W) or (N, C, H, W)), "
             "or a region to fill: lower-half, upper-half, left-half, right-half, or box:TOP,LEFT,HEIGHT,WIDTH "
             "(in pixels)")


def _read_npy(path: Path, flag: str, prog: str):
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CLIError(f"{prog}: cannot read {flag} {path} ({first})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise CLIError(f"{prog}: {flag} {path} must be an .npy array of numbers")
    return arr


def load_images(path: str, shape: tuple[int, int, int], prog: str, channels: tuple[int, ...] | None = None):
    """Images in [0, 1] as float64 (N, C, H, W); H, W must be the model's, C in ``channels`` (default: the model's)."""
    import numpy as np
    import torch

    from ..data.base import DataError

    c, h, w = shape
    accepted = channels or (c,)
    p = Path(path)
    if p.is_dir():
        from ..data.image_files import image_folder

        try:
            x, _ = image_folder(p, channels=max(accepted))
        except DataError as e:
            raise CLIError(f"{prog}: --images {path}: {e}") from None
        arr = x.double().numpy()
    elif p.is_file():
        arr = _read_npy(p, "--images", prog)
        if arr.ndim == 3:
            arr = arr[:, None]
        elif arr.ndim == 4 and arr.shape[1] not in (1, 3) and arr.shape[3] in (1, 3):
            arr = arr.transpose(0, 3, 1, 2)
        if arr.ndim != 4 or arr.shape[0] < 1:
            raise CLIError(f"{prog}: --images {path} has shape {arr.shape}; expected (N, H, W), (N, C, H, W) "
                           "or (N, H, W, C)")
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float64) / 255.0
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise CLIError(f"{prog}: --images {path} must hold values in [0, 1] (or uint8 0..255)")
    else:
        raise CLIError(f"{prog}: --images not found: {path}")
    if arr.shape[2:] != (h, w) or arr.shape[1] not in accepted:
        want = " or ".join(f"({k}, {h}, {w})" for k in accepted)
        raise CLIError(f"{prog}: --images {path}: images of shape {tuple(arr.shape[1:])} do not fit the model "
                       f"(it needs {want})")
    return torch.from_numpy(np.ascontiguousarray(arr))


def image_mask(spec: str, shape: tuple[int, ...], prog: str):
    """A float64 0/1 mask (1 = known) broadcastable to ``shape`` = (N, C, H, W), from a region name or an .npy file."""
    import numpy as np
    import torch

    n, c, h, w = shape
    regions = {"lower-half": (h // 2, 0, h - h // 2, w), "upper-half": (0, 0, h // 2, w),
               "left-half": (0, 0, h, w // 2), "right-half": (0, w // 2, h, w - w // 2)}
    box = None
    if spec in regions:
        box = regions[spec]
    elif spec.startswith("box:"):
        m = re.fullmatch(r"box:(\d+),(\d+),(\d+),(\d+)", spec.replace(" ", ""))
        if m is None:
            raise CLIError(f"{prog}: --mask {spec}: expected box:TOP,LEFT,HEIGHT,WIDTH with whole numbers")
        box = tuple(int(v) for v in m.groups())
        top, left, bh, bw = box
        if bh < 1 or bw < 1 or top + bh > h or left + bw > w:
            raise CLIError(f"{prog}: --mask {spec}: the box must lie inside the {h}x{w} image and be non-empty")
    if box is not None:
        top, left, bh, bw = box
        mask = torch.ones(1, 1, h, w, dtype=torch.float64)
        mask[..., top:top + bh, left:left + bw] = 0
        return mask
    p = Path(spec)
    if not p.is_file():
        raise CLIError(f"{prog}: --mask {spec}: no such file, and not a region (lower-half, upper-half, left-half, "
                       "right-half, box:TOP,LEFT,HEIGHT,WIDTH)")
    arr = _read_npy(p, "--mask", prog)
    if not np.isin(arr, (0, 1)).all():
        raise CLIError(f"{prog}: --mask {spec} must hold only 0 (fill) and 1 (known)")
    fits = {(h, w): (1, 1, h, w), (c, h, w): (1, c, h, w), (n, h, w): (n, 1, h, w), (n, c, h, w): (n, c, h, w)}
    if arr.shape not in fits:
        raise CLIError(f"{prog}: --mask {spec} has shape {arr.shape}; expected ({h}, {w}), ({c}, {h}, {w}), "
                       f"({n}, {h}, {w}) or ({n}, {c}, {h}, {w}) for these images")
    mask = torch.from_numpy(arr.astype(np.float64).reshape(fits[arr.shape]))
    if bool((mask.expand(shape).reshape(n, -1).sum(1) == c * h * w).any()):
        raise CLIError(f"{prog}: --mask {spec}: every image needs some pixels to fill")
    return mask


def run_batches(fn, model, x_shape: tuple[int, ...], n: int, seed: int, batch_size: int, per_row: dict, **kwargs):
    """Run ``fn(model, x_T, noise, **kwargs, **{k: v[rows]})`` over seeded batches (row i: seed (seed, i)).

    ``per_row`` tensors are sliced per batch where their first dimension is n (else passed whole).
    Returns (samples, NFE per sample).
    """
    import torch

    from ..brownian import NoiseSource

    outs, nfe = [], 0
    dtype = next(iter(per_row.values())).dtype
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        noise = NoiseSource(seed, x_shape, range(lo, hi), dtype=dtype)
        x = model.sde.prior_sample(noise.draw())
        rows = {k: (v[lo:hi] if v.shape[0] == n and n > 1 else v) for k, v in per_row.items()}
        res = fn(model, x, noise, **kwargs, **rows)
        outs.append(res.samples)
        nfe = max(nfe, res.nfe)
    return torch.cat(outs), nfe
