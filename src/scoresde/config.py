"""Run configuration: YAML files mirroring score_sde_pytorch's configs, validated, with ``--set`` overrides.

A config has five sections - data, sde, model, training, sampling - each a dataclass below.
Unknown keys and values of the wrong type are errors (:class:`ConfigError`, one line).
This module is the edge where names (SDE, loss, network, sampler) become objects.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

__all__ = ["ConfigError", "Config", "load_config", "apply_overrides", "build_sde", "build_net", "build_model",
           "build_loss", "config_to_dict", "config_from_dict"]


class ConfigError(ValueError):
    """A config that cannot be used: the message names the key."""


@dataclass
class DataConfig:
    dataset: str = "mnist5k"        # mnist5k, digits, mnist, fashion_mnist, cifar10, celeba, folder, array, toy names
    root: str | None = None         # where full data sets / folders / array files live
    resolution: int | None = None   # images: resize to this size (None: native)
    channels: int | None = None     # None: from the data
    scale: str = "[-1,1]"           # "[-1,1]" or "[0,1]"
    random_flip: bool = False
    num_points: int = 10000         # toy data sets: how many points


@dataclass
class SDEConfig:
    name: str = "vp"                # ve, vp, subvp
    beta_min: float = 0.1
    beta_max: float = 20.0
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    N: int = 1000
    t_end: float | None = None      # sampling end time (None: the SDE's default)


@dataclass
class ModelConfig:
    arch: str = "unet"              # mlp, unet, ncsn, ncsnv2
    prediction: str = "eps"         # score, eps, data, v, scaled_score
    time_input: str = "999t"        # t, 999t, sigma, log_sigma, index
    kwargs: dict[str, Any] = field(default_factory=dict)  # constructor arguments of the network


@dataclass
class TrainingConfig:
    loss: str = "dsm"               # dsm, smld, ddpm
    reduce: str = "mean"            # mean, sum
    likelihood_weighting: bool = False
    t_min: float = 1e-5              # training draws t ~ U(t_min, T)
    batch_size: int = 128
    n_iters: int = 2000
    lr: float = 2e-4
    warmup: int = 100
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    ema_rate: float = 0.999
    ema_warmup: bool = True         # decay = min(rate, (1 + step) / (10 + step)): useful for short runs
    seed: int = 0
    amp: bool = False               # bf16 autocast on CUDA
    log_every: int = 25
    snapshot_every: int = 500       # checkpoint period (steps)
    keep_checkpoints: int = 3
    sample_every: int = 0           # sample-grid period (0: only at the end)
    tensorboard: bool = True        # also log to workdir/tensorboard when the tensorboard package is installed


@dataclass
class SamplingConfig:
    # pc, ode, the exponential family (seeds1/2/3, etd1/2/3, dpmpp2m, ddim), edm, or ggf (adaptive SDE)
    sampler: str = "pc"
    predictor: str = "reverse_diffusion"
    corrector: str = "none"
    snr: float = 0.16
    n_corrector: int = 1
    steps: int | None = None        # None: the sampler's default (pc 1000, ode fixed-step 100, fast samplers 20)
    method: str = "dopri5"
    rtol: float | None = None       # None: ode 1e-5, ggf 0.05
    atol: float | None = None       # None: ode 1e-5, ggf 0.0078
    eta: float | None = None        # seeds*: 1 (reverse SDE) .. 0 (ODE); ddim: 0
    grid: str | None = None         # time grid of the fast samplers: logsnr (default), time, quadratic, edm
    form: str = "data"              # seeds*/etd*: data- or noise-prediction form
    s_churn: float = 0.0            # edm: EDM's S_churn
    noise_mode: str = "bridge"      # ggf: retry a rejected step on the Brownian bridge (unbiased) or with fresh noise
    norm: str = "l2_scaled"         # ggf error norm
    denoise: bool | None = None     # final Tweedie denoise (None: the sampler's default)
    num: int = 64
    seed: int = 0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    sde: SDEConfig = field(default_factory=SDEConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


_CHOICES = {
    ("data", "scale"): ("[-1,1]", "[0,1]"),
    ("sde", "name"): ("ve", "vp", "subvp"),
    ("model", "arch"): ("mlp", "unet", "ncsn", "ncsnv2"),
    ("model", "prediction"): ("score", "eps", "data", "v", "scaled_score"),
    ("model", "time_input"): ("t", "999t", "sigma", "log_sigma", "index"),
    ("training", "loss"): ("dsm", "smld", "ddpm"),
    ("training", "reduce"): ("mean", "sum"),
    ("sampling", "sampler"): ("pc", "ode", "seeds1", "seeds2", "seeds3", "etd1", "etd2", "etd3", "dpmpp2m", "ddim",
                              "edm", "ggf"),
    ("sampling", "grid"): ("logsnr", "time", "quadratic", "edm"),
    ("sampling", "form"): ("data", "noise"),
    ("sampling", "noise_mode"): ("bridge", "fresh"),
    ("sampling", "norm"): ("l2_scaled", "l2", "linf"),
    ("sampling", "predictor"): ("euler_maruyama", "reverse_diffusion", "ancestral_sampling", "none"),
    ("sampling", "corrector"): ("langevin", "ald", "none"),
    ("sampling", "method"): ("dopri5", "euler", "heun", "rk4"),
}
_POSITIVE = {("training", k) for k in ("batch_size", "n_iters", "lr", "log_every", "snapshot_every",
                                       "keep_checkpoints")} | {("sampling", k) for k in ("steps", "num", "rtol", "atol")} \
    | {("sde", k) for k in ("sigma_min", "sigma_max", "N", "beta_max")}


def _check_value(section: str, key: str, value: Any, typ: Any) -> Any:
    where = f"{section}.{key}"
    origin = getattr(typ, "__origin__", None)
    allowed = typ.__args__ if origin is None and hasattr(typ, "__args__") else None
    types = tuple(a for a in (allowed or (typ,)) if a is not type(None))
    if value is None:
        if allowed and type(None) in allowed:
            return None
        raise ConfigError(f"config: {where} must not be empty")
    if dict in types or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config: {where} must be a mapping, got {value!r}")
        return value
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join(t.__name__ for t in types)
        raise ConfigError(f"config: {where} must be {names}, got {value!r}")
    if (section, key) in _CHOICES and value not in _CHOICES[(section, key)]:
        raise ConfigError(f"config: {where} must be one of {', '.join(_CHOICES[(section, key)])}, got {value!r}")
    if (section, key) in _POSITIVE and not value > 0:
        raise ConfigError(f"config: {where} must be > 0, got {value!r}")
    return value


def config_from_dict(d: dict[str, Any]) -> Config:
    """Build and validate a Config from nested dicts (missing keys take their defaults)."""
    if not isinstance(d, dict):
        raise ConfigError("config: the file must hold a mapping of sections (data, sde, model, training, sampling)")
    cfg = Config()
    sections = {f.name for f in fields(Config)}
    d = _renamed_keys(d)
    for name, values in d.items():
        if name not in sections:
            raise ConfigError(f"config: unknown section {name!r}; expected {', '.join(sorted(sections))}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"config: section {name!r} must be a mapping")
        sec = getattr(cfg, name)
        hints = get_type_hints(type(sec))
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(f"config: unknown key {name}.{key}; expected one of {', '.join(hints)}")
            setattr(sec, key, _check_value(name, key, value, hints[key]))
    if not 0 < cfg.training.ema_rate < 1:
        raise ConfigError(f"config: training.ema_rate must lie in (0, 1), got {cfg.training.ema_rate}")
    if cfg.sde.beta_min < 0 or cfg.sde.beta_min >= cfg.sde.beta_max:
        raise ConfigError("config: sde.beta_min must be >= 0 and < sde.beta_max")
    if cfg.sde.sigma_min >= cfg.sde.sigma_max:
        raise ConfigError("config: sde.sigma_min must be < sde.sigma_max")
    return cfg


#: keys renamed since configs were first written (old workdirs keep loading): (section, old) -> new
_RENAMED = {("sde", "eps"): "t_end", ("training", "eps_train"): "t_min"}


def _renamed_keys(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    for (section, old), new in _RENAMED.items():
        values = out.get(section)
        if isinstance(values, dict) and old in values:
            values = dict(values)
            if new in values:
                raise ConfigError(f"config: {section}.{old} is the old name of {section}.{new}; give only one")
            values[new] = values.pop(old)
            out[section] = values
    return out


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (value parsed as YAML) to nested dicts."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        path, raw = item.split("=", 1)
        parts = path.strip().split(".")
        if len(parts) < 2:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {path}: cannot parse value {raw!r}") from None
        node = d
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {path}: {p} is not a section")
        node[parts[-1]] = value
    return d


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (None: all defaults), apply overrides, validate."""
    d: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    return config_from_dict(apply_overrides(d, overrides or []))


# ---- names -> objects (the edge) ------------------------------------------------------------
def build_sde(c: SDEConfig):
    from .sde import SubVPSDE, VESDE, VPSDE

    kw = {} if c.t_end is None else {"t_end": c.t_end}
    if c.name == "ve":
        return VESDE(c.sigma_min, c.sigma_max, c.N, **kw)
    return (VPSDE if c.name == "vp" else SubVPSDE)(c.beta_min, c.beta_max, c.N, **kw)


def _arches() -> dict[str, Any]:
    from . import nets

    out = {"mlp": nets.MLP}
    for name, attr in (("unet", "UNet"), ("ncsn", "NCSN"), ("ncsnv2", "NCSNv2")):
        if hasattr(nets, attr):
            out[name] = getattr(nets, attr)
    return out


def build_net(c: ModelConfig, data_shape: tuple[int, ...]):
    """The network of ``c.arch`` with ``c.kwargs``; channel / dimension arguments filled from the data."""
    arches = _arches()
    if c.arch not in arches:
        raise ConfigError(f"config: model.arch {c.arch!r} is not available (have {', '.join(arches)})")
    cls = arches[c.arch]
    params = inspect.signature(cls).parameters
    unknown = sorted(set(c.kwargs) - set(params))
    if unknown:
        raise ConfigError(f"config: model.kwargs has unknown argument(s) {', '.join(unknown)} for {c.arch}; "
                          f"accepted: {', '.join(p for p in params if p != 'self')}")
    kw = dict(c.kwargs)
    if "dim" in params and "dim" not in kw:
        kw["dim"] = int(data_shape[0]) if len(data_shape) == 1 else int(_prod(data_shape))
    for name in ("channels", "in_channels", "num_channels"):
        if name in params and name not in kw and len(data_shape) == 3:
            kw[name] = int(data_shape[0])
    try:
        return cls(**kw)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config: cannot build {c.arch} with {kw}: {e}") from None


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def build_time_input(name: str):
    from . import parameterization as p

    return {"t": p.continuous_time, "999t": p.scaled_time(999.0), "sigma": p.noise_level,
            "log_sigma": p.log_noise_level, "index": p.discrete_index}[name]


def build_model(cfg: Config, net, sde):
    from .parameterization import NetworkModel

    return NetworkModel(net, sde, cfg.model.prediction, build_time_input(cfg.model.time_input))


def build_loss(c: TrainingConfig, sde_name: str):
    """(loss function, its keyword options)."""
    from . import losses

    if c.loss == "dsm":
        return losses.dsm_loss, {"t_min": c.t_min, "reduce": c.reduce,
                                 "likelihood_weighting": c.likelihood_weighting}
    if c.loss == "smld":
        if sde_name != "ve":
            raise ConfigError("config: training.loss smld needs sde.name ve")
        return losses.smld_loss, {"reduce": c.reduce}
    if sde_name != "vp":
        raise ConfigError("config: training.loss ddpm needs sde.name vp")
    return losses.ddpm_loss, {"reduce": c.reduce}
