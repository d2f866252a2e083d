"""A trained workdir: its newest model, its data, sampling it with its config's sampler, and its pictures.

The trainer writes a workdir (``checkpoints/``, ``config.yaml``, ``log.csv``); everything that reads one
back lives here, so the command line and the trainer share it without importing each other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError, check_training_state, latest_checkpoint, load_checkpoint, load_weights
from .config import Config, ConfigError, build_model, build_net, build_sde, config_from_dict
from .samplers import sample
from .samplers.registry import resolve

__all__ = ["load_training_data", "needs_labels", "model_from_workdir", "sample_from", "save_samples_picture", "to_unit_range",
           "classifier_from_workdir"]


def load_training_data(cfg: Config, split: str = "train", labels: bool = False):
    """The training tensor (N, *shape), float32: images scaled as the config says, or 2-D points.

    With ``labels``: (data, labels (N,) int64); a data set without labels is a DataError.
    """
    from . import data

    d = cfg.data
    x, y = data.get_dataset(d.dataset, root=d.root, split=split, resolution=d.resolution, channels=d.channels,
                            n=d.num_points, seed=0)  # fixed: the held-out split is the same for every run
    x = x.float()
    x = data.scale(x, d.scale) if x.ndim == 4 else x
    if not labels:
        return x
    if y is None:
        raise data.DataError(f"data set {d.dataset} has no labels (a classifier or a label-conditional model needs "
                             "them)")
    return x, y.long()


def needs_labels(cfg: Config) -> bool:
    """Whether training reads labels: a classifier, or a label-conditional network (model.kwargs.num_classes)."""
    return cfg.training.loss == "classifier" or bool(cfg.model.kwargs.get("num_classes"))


def sample_from(model, cfg: Config, shape: tuple[int, ...], num: int, seed: int | None = None,
                progress: bool = True, batch_size: int = 256, **overrides: Any):
    """Sample a trained model with the config's sampler and options; ``sampler=`` and option overrides win.

    A different ``sampler`` starts from its own defaults, not from the config's options.
    """
    name = overrides.pop("sampler", None) or cfg.sampling.sampler
    opts = dict(cfg.sampling.options) if name == cfg.sampling.sampler else {}
    opts.update({k: v for k, v in overrides.items() if v is not None})
    fn, kwargs = resolve(name, opts)
    net = _inner_net(model)
    device = next(net.parameters()).device if isinstance(net, nn.Module) else "cpu"
    with torch.no_grad():
        return sample(model, num, cfg.sampling.seed if seed is None else seed, fn, shape, batch_size=batch_size,
                      device=device, progress=progress, **kwargs)


def _inner_net(model):
    """The network under a score model, through wrappers (guided models keep theirs in .model / .conditional)."""
    for _ in range(4):
        if hasattr(model, "net"):
            return model.net
        model = getattr(model, "model", None) or getattr(model, "conditional", None)
    return None


def to_unit_range(x: Tensor, scale: str) -> Tensor:
    """Data-space images back to [0, 1]."""
    return ((x + 1) / 2 if scale == "[-1,1]" else x).clamp(0, 1)


def save_samples_picture(x: Tensor, path: Path, cfg: Config, title: str = "") -> None:
    from .plotting import save_image_grid, scatter_plot

    path.parent.mkdir(parents=True, exist_ok=True)
    if x.ndim == 4:
        save_image_grid(to_unit_range(x.float().cpu(), cfg.data.scale).numpy(), path)
    else:
        scatter_plot(x.cpu().numpy(), path, title=title)


def model_from_workdir(workdir: str | Path, device: str | None = None, use_ema: bool = True, trust: bool = False):
    """(score model, config, data shape, step) from the newest checkpoint of a training workdir."""
    workdir = Path(workdir)
    ckpt = latest_checkpoint(workdir / "checkpoints")
    if ckpt is None:
        raise CheckpointError(f"no checkpoint in {workdir / 'checkpoints'} (train first: scoresde train --workdir {workdir})")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    state = load_checkpoint(ckpt, map_location=dev, trust=trust)
    check_training_state(state, ckpt)
    try:
        cfg = config_from_dict(state["config"])
        shape = tuple(int(s) for s in state["data_shape"])
        net = build_net(cfg.model, shape).to(dev)
    except ConfigError as e:
        raise CheckpointError(f"{ckpt}: its config is not valid: {e}") from None
    load_weights(net, state["ema"]["shadow"] if use_ema else state["model"], ckpt)
    net.eval()
    return build_model(cfg, net, build_sde(cfg.sde)), cfg, shape, int(state["step"])


def classifier_from_workdir(workdir: str | Path, device: str | None = None, use_ema: bool = True,
                            trust: bool = False) -> tuple[Any, object, tuple[int, ...], int]:
    """(classifier, config, data shape, step) from the newest checkpoint of a classifier workdir (EMA weights)."""
    from .classifier import NoiseConditionalClassifier

    model, cfg, shape, step = model_from_workdir(workdir, device=device, use_ema=use_ema, trust=trust)
    if cfg.training.loss != "classifier":
        raise CheckpointError(f"{workdir} holds a score model (training.loss {cfg.training.loss}), not a classifier")
    return NoiseConditionalClassifier(model.net, model.sde), cfg, shape, step
