"""diffusers models as scoresde score models: a ``save_pretrained`` pipeline or ``UNet2DModel`` folder.

The scheduler config names the forward process and the network's output:

* a discrete-time DDPM schedule (``beta_schedule`` linear / scaled_linear / squaredcos_cap_v2 / sigmoid, or
  ``trained_betas``; DDPMScheduler, DDIMScheduler and every other beta-schedule scheduler, this package's SEEDS
  schedulers too) becomes :class:`~scoresde.sde.DiscreteVPSDE` over the scheduler's own float32
  ``alphas_cumprod`` (Ho et al. 2020): step i of the chain sits at t = (i + 1) / N, log alpha_t is interpolated
  linearly in t in between, and the UNet is fed the timestep N t - 1 (the integer i on the chain's steps,
  fractional between them, DPM-Solver's convention). ``prediction_type`` epsilon / sample / v_prediction is the
  model's eps / data / v output (v = alpha eps - sigma x_0, the same v for a VP process);
* a ``ScoreSdeVeScheduler`` config becomes the VE SDE (Song et al. 2021) with its sigma_min, sigma_max and
  sampling_eps; the UNet is fed sigma_t and returns the score, as diffusers' ScoreSdeVePipeline uses it.

Weights are read by diffusers itself: safetensors, or a ``.bin`` through ``torch.load(weights_only=True)`` (no
pickled code is executed). diffusers is imported only when a model is loaded (an optional extra).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..parameterization import NetworkModel, noise_level
from ..sde import SDE, VESDE, DiscreteVPSDE

__all__ = ["DiffusersError", "DiffusersModel", "from_diffusers", "sde_from_scheduler_config",
           "alphas_cumprod_from_config", "diffusers_timestep", "PREDICTION_TYPES", "BETA_SCHEDULES"]

#: diffusers' prediction_type -> scoresde's prediction kind
PREDICTION_TYPES = {"epsilon": "eps", "sample": "data", "v_prediction": "v"}
#: the beta schedules read from a scheduler config
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")

INSTALL_HINT = "pip install 'scoresde[diffusers]' (or: pip install diffusers safetensors)"


class DiffusersError(ValueError):
    """A diffusers folder or config that cannot be read as a score model (one line)."""


def import_diffusers():
    """The diffusers package, or a :class:`DiffusersError` saying how to install it."""
    try:
        import diffusers
    except ImportError:
        raise DiffusersError(f"diffusers is not installed: {INSTALL_HINT}") from None
    try:  # why: diffusers 0.30 uses safetensors.torch without importing it
        import safetensors.torch  # noqa: F401
    except ImportError:
        pass
    return diffusers


def _cosine_betas(n: int, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal (2021) eq. 17: abar(t) = cos^2((t + 0.008) / 1.008 * pi / 2), betas capped at 0.999."""

    def abar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), max_beta) for i in range(n)], dtype=torch.float32)


def alphas_cumprod_from_config(config: Mapping[str, Any]) -> Tensor:
    """The float64 alphas_cumprod of a diffusers beta-schedule config, computed in float32 as diffusers does
    (so it is bit-for-bit the schedule the model was trained with)."""
    n = int(config.get("num_train_timesteps", 1000))
    bs, be = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
    schedule = config.get("beta_schedule", "linear")
    if config.get("rescale_betas_zero_snr", False):
        raise DiffusersError("rescale_betas_zero_snr: a zero-terminal-SNR schedule (alpha_T = 0) has no Gaussian prior "
                             "at T; it is not supported")
    trained = config.get("trained_betas")
    if trained is not None:
        betas = torch.tensor(trained, dtype=torch.float32).reshape(-1)
    elif schedule == "linear":
        betas = torch.linspace(bs, be, n, dtype=torch.float32)
    elif schedule == "scaled_linear":
        betas = torch.linspace(bs**0.5, be**0.5, n, dtype=torch.float32) ** 2
    elif schedule == "squaredcos_cap_v2":
        betas = _cosine_betas(n)
    elif schedule == "sigmoid":
        betas = torch.sigmoid(torch.linspace(-6, 6, n, dtype=torch.float32)) * (be - bs) + bs
    else:
        raise DiffusersError(f"beta_schedule {schedule!r} is not supported; expected one of {', '.join(BETA_SCHEDULES)} "
                             "or trained_betas")
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise DiffusersError("the scheduler's betas must lie in (0, 1)")
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float64)


def diffusers_timestep(t: Tensor, sde: SDE) -> Tensor:
    """The UNet's timestep input for a discrete-time VP model: N t - 1 (:meth:`DiscreteVPSDE.timestep`)."""
    return sde.timestep(t)


def sde_from_scheduler_config(config: Mapping[str, Any], t_end: float | None = None) -> tuple[SDE, str, Any]:
    """(SDE, scoresde prediction kind, time input) of a diffusers scheduler config (module docstring)."""
    name = config.get("_class_name", "a scheduler")
    if "beta_schedule" in config or "trained_betas" in config:
        kind = config.get("prediction_type", "epsilon")
        if kind not in PREDICTION_TYPES:
            raise DiffusersError(f"{name}: prediction_type {kind!r} is not supported; expected one of "
                                 f"{', '.join(PREDICTION_TYPES)}")
        return DiscreteVPSDE(alphas_cumprod_from_config(config), t_end=t_end), PREDICTION_TYPES[kind], diffusers_timestep
    if name == "ScoreSdeVeScheduler":
        eps = float(config.get("sampling_eps", 1e-5)) if t_end is None else t_end
        try:
            sde = VESDE(float(config.get("sigma_min", 0.01)), float(config.get("sigma_max", 1348.0)),
                        N=int(config.get("num_train_timesteps", 2000)), t_end=eps)
        except ValueError as e:
            raise DiffusersError(f"{name}: {e}") from None
        return sde, "score", noise_level
    raise DiffusersError(f"{name}: not a discrete-time DDPM schedule (no beta_schedule / trained_betas) nor a "
                         "ScoreSdeVeScheduler config; cannot tell the model's forward process")


class UNetNet(nn.Module):
    """``net(x, c)`` around a diffusers UNet2DModel: the UNet's ``.sample`` at timestep c (the first ``channels``
    channels: a learned-variance model's second half is dropped), in the UNet's dtype, returned in x's."""

    def __init__(self, unet: nn.Module, channels: int, class_labels: Tensor | int | None = None):
        super().__init__()
        self.unet, self.channels = unet, int(channels)
        self.class_labels = class_labels

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        dtype = next(self.unet.parameters()).dtype
        kw = {}
        if self.class_labels is not None:
            y = torch.as_tensor(self.class_labels, device=x.device).long()
            kw["class_labels"] = y.expand(x.shape[0]) if y.ndim == 0 else y
        out = self.unet(x.to(dtype), c, **kw).sample
        return out[:, :self.channels].to(x.dtype)


class DiffusersModel(NetworkModel):
    """A diffusers UNet2DModel as a score model (:func:`from_diffusers`); ``shape`` is its (C, H, W) and
    ``data_range`` its image range ("[-1,1]", as diffusers' image pipelines)."""

    data_range = "[-1,1]"

    def __init__(self, unet: nn.Module, sde: SDE, prediction: str, time_input, *, shape: tuple[int, int, int],
                 scheduler_config: Mapping[str, Any], path: str = "", class_labels: Tensor | int | None = None):
        super().__init__(UNetNet(unet, shape[0], class_labels), sde, prediction, time_input)
        self.unet, self.shape, self.scheduler_config, self.path = unet, tuple(shape), dict(scheduler_config), path

    def __repr__(self) -> str:
        return f"DiffusersModel({self.path!r}, {self.sde!r}, prediction={self.prediction!r}, shape={self.shape})"


def _read_json(path: Path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise DiffusersError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise DiffusersError(f"{path} does not hold a JSON object")
    return data


def _find_layout(path: Path) -> tuple[Path, Path | None]:
    """(unet folder, scheduler config file or None) of a pipeline folder or a bare UNet2DModel folder."""
    if not path.exists():
        raise DiffusersError(f"{path}: no such directory")
    if not path.is_dir():
        raise DiffusersError(f"{path} is not a directory (expected a diffusers save_pretrained folder)")
    index = path / "model_index.json"
    if index.is_file():
        components = _read_json(index)
        unet_entry = components.get("unet")
        if not (isinstance(unet_entry, list) and len(unet_entry) == 2):
            others = ", ".join(k for k in components if not k.startswith("_"))
            raise DiffusersError(f"{index}: no unet component (it has {others or 'none'}); only UNet2DModel pipelines "
                                 "(DDPM, DDIM, ScoreSdeVe layouts) are supported")
        if unet_entry[1] != "UNet2DModel":
            raise DiffusersError(f"{index}: the unet is a {unet_entry[1]}; only UNet2DModel (unconditional or "
                                 "class-conditional pixel-space) pipelines are supported")
        if any(k in components for k in ("vqvae", "vae")):
            raise DiffusersError(f"{index}: a latent-diffusion pipeline (it has a VAE); only pixel-space pipelines "
                                 "are supported")
        sched = path / "scheduler" / "scheduler_config.json"
        if not sched.is_file():
            raise DiffusersError(f"{path}: the pipeline has no scheduler/scheduler_config.json")
        return path / "unet", sched
    config = path / "config.json"
    if config.is_file():
        cls = _read_json(config).get("_class_name")
        if cls != "UNet2DModel":
            raise DiffusersError(f"{config}: a {cls or 'model without _class_name'}; expected a UNet2DModel folder")
        for candidate in (path / "scheduler_config.json", path.parent / "scheduler" / "scheduler_config.json"):
            if candidate.is_file():
                return path, candidate
        return path, None
    raise DiffusersError(f"{path}: neither a diffusers pipeline (model_index.json) nor a UNet2DModel folder "
                         "(config.json)")


def _scheduler_config(scheduler: Any) -> dict:
    if isinstance(scheduler, (str, Path)):
        p = Path(scheduler)
        return _read_json(p / "scheduler_config.json" if p.is_dir() else p)
    if isinstance(scheduler, Mapping):
        return dict(scheduler)
    if hasattr(scheduler, "config"):
        return dict(scheduler.config)
    raise DiffusersError(f"scheduler must be a config dict, a scheduler_config.json path or a diffusers scheduler, "
                         f"got {type(scheduler).__name__}")


def from_diffusers(path: str | Path, *, scheduler: Any = None, prediction_type: str | None = None,
                   t_end: float | None = None, class_labels: Tensor | int | None = None,
                   device: str | torch.device | None = None) -> DiffusersModel:
    """A diffusers ``save_pretrained`` folder as a score model (Ho et al. 2020 DDPM / Song et al. 2021 VE; module doc).

    ``path``: a pipeline folder (model_index.json with unet/ and scheduler/) or a bare UNet2DModel folder, whose
    scheduler config is ``scheduler_config.json`` beside it or ``../scheduler/``, or ``scheduler`` (a config dict,
    a scheduler_config.json path or a diffusers scheduler, which also wins over the folder's). ``prediction_type``
    overrides the config's; ``t_end`` the SDE's sampling end time (default: timestep 0 = 1/N for DDPM schedules,
    sampling_eps for VE); ``class_labels`` feeds a class-conditional UNet2DModel. Errors: :class:`DiffusersError`.
    """
    path = Path(path)
    unet_dir, sched_file = _find_layout(path)
    if scheduler is not None:
        config = _scheduler_config(scheduler)
    elif sched_file is not None:
        config = _read_json(sched_file)
    else:
        raise DiffusersError(f"{path}: no scheduler_config.json beside the UNet or in ../scheduler/; pass scheduler= "
                             "(a config dict, file or diffusers scheduler)")
    if prediction_type is not None:
        if prediction_type not in PREDICTION_TYPES:
            raise DiffusersError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {prediction_type!r}")
        config["prediction_type"] = prediction_type
    sde, prediction, time_input = sde_from_scheduler_config(config, t_end)
    diffusers = import_diffusers()
    if not (unet_dir / "config.json").is_file():
        raise DiffusersError(f"{unet_dir}: no config.json (expected the UNet2DModel's save_pretrained folder)")
    try:
        unet = diffusers.UNet2DModel.from_pretrained(unet_dir, local_files_only=True, low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DiffusersError(f"cannot load the UNet2DModel in {unet_dir}: {first}") from None
    unet.eval()
    if device is not None:
        unet.to(device)
    cfg = unet.config
    channels = int(cfg.in_channels)
    if int(cfg.out_channels) not in (channels, 2 * channels):
        raise DiffusersError(f"{unet_dir}: out_channels {cfg.out_channels} is neither in_channels ({channels}) nor "
                             "twice it (a learned-variance model)")
    if getattr(cfg, "num_class_embeds", None) is not None and class_labels is None:
        raise DiffusersError(f"{unet_dir}: a class-conditional UNet2DModel ({cfg.num_class_embeds} classes); pass "
                             "class_labels")
    size = cfg.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return DiffusersModel(unet, sde, prediction, time_input, shape=(channels, int(h), int(w)), scheduler_config=config,
                          path=str(path), class_labels=class_labels)
