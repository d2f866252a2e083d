"""``--model KIND:PATH``: a model saved in another project's format, for the commands that take ``--workdir``.

Kinds: ``diffusers:PATH`` - a diffusers ``save_pretrained`` pipeline or UNet2DModel folder
(:func:`scoresde.interop.from_diffusers`). Images such a model is asked about (``likelihood`` / ``encode``
``--data``) are read by :func:`load_images`.
"""
from __future__ import annotations

from .args import CLIError, read_array

__all__ = ["MODEL_KINDS", "MODEL_HELP", "LoadedModel", "load_model", "load_images"]

#: the accepted KIND prefixes of --model
MODEL_KINDS = ("diffusers",)
MODEL_HELP = ("a model in another project's format: diffusers:PATH (a diffusers save_pretrained pipeline or "
              "UNet2DModel folder; needs the diffusers extra)")


class LoadedModel:
    """What a --model spec gives a command: the score model, its data shape and range, a label for messages."""

    def __init__(self, model, shape: tuple[int, ...], data_range: str, label: str):
        self.model, self.shape, self.data_range, self.label = model, shape, data_range, label


def load_model(spec: str, prog: str, t_end: float | None = None, device: str | None = None) -> LoadedModel:
    """The model named by ``KIND:PATH``; any problem is one line (CLIError)."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in MODEL_KINDS or not path:
        raise CLIError(f"{prog}: --model must be KIND:PATH with KIND one of {', '.join(MODEL_KINDS)} "
                       f"(e.g. diffusers:./ddpm-cifar10), got {spec!r}")
    from ..interop.diffusers import DiffusersError, from_diffusers

    try:
        model = from_diffusers(path, t_end=t_end, device=device)
    except DiffusersError as e:
        raise CLIError(f"{prog}: --model {spec}: {e}") from None
    return LoadedModel(model, model.shape, model.data_range, f"{spec} ({model.sde.__class__.__name__})")


def load_images(path: str, shape: tuple[int, ...], prog: str, flag: str = "--data"):
    """Images in [0, 1], a float32 (N, C, H, W) tensor, from an .npy / .npz.

    Accepted: uint8 images 0..255, floats in [0, 1], or an .npz holding ``samples`` in the model's [-1, 1] range
    (the output of ``scoresde sample --model``); channels first or last.
    """
    import numpy as np
    import torch

    arr, centred = read_array(path, prog, flag)
    c, h, w = shape
    if arr.ndim == 4 and arr.shape[1:] == (h, w, c) and arr.shape[1:] != (c, h, w):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.ndim == 2 and arr.shape[1] == c * h * w:
        arr = arr.reshape(-1, c, h, w)
    if arr.ndim != 4 or arr.shape[1:] != (c, h, w) or arr.shape[0] < 1:
        raise CLIError(f"{prog}: {flag} {path} has shape {arr.shape}; the model needs (N, {c}, {h}, {w}) images "
                       f"(or (N, {h}, {w}, {c}))")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        if not np.isfinite(x).all():
            raise CLIError(f"{prog}: {flag} {path} holds non-finite values")
        lo, hi = (-1.0, 1.0) if centred else (0.0, 1.0)
        if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
            what = "samples in the model's [-1, 1]" if centred else "float images in [0, 1] (or uint8 0..255)"
            raise CLIError(f"{prog}: {flag} {path} holds values in [{x.min():.3g}, {x.max():.3g}]; expected {what}")
        x = (x + 1) / 2 if centred else x
    else:
        raise CLIError(f"{prog}: {flag} {path} must hold uint8 or float images, got dtype {arr.dtype}")
    return torch.from_numpy(np.clip(x, 0.0, 1.0))
