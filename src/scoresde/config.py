"""Run configuration: YAML files mirroring score_sde_pytorch's configs, validated, with ``--set`` overrides.

A config has five sections - data, sde, model, training, sampling - each a dataclass below.
Unknown keys and values of the wrong type are errors (:class:`ConfigError`, one line).
Names (SDE, network, time input, loss, sampler) are looked up in :mod:`scoresde.registry` and
:mod:`scoresde.samplers.registry`; the sampler options follow the same rules as on the command line.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .registry import LOSS_SDE, LOSSES, NETWORKS, PREDICTIONS, SDES, TIME_INPUTS, make_sde, sde_parameters
from .samplers.registry import DEFAULT_SAMPLER, SAMPLERS, resolve

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
    time_input: str = "999t"        # t, 999t, sigma, log_sigma, index, reversed_index, ddpm_index
    kwargs: dict[str, Any] = field(default_factory=dict)  # constructor arguments of the network


@dataclass
class TrainingConfig:
    loss: str = "dsm"               # dsm, smld, ddpm; classifier (cross-entropy of a noise-conditional classifier)
    label_dropout: float = 0.0      # classifier-free guidance: share of labels replaced by the null label
    reduce: str = "mean"            # mean, sum
    likelihood_weighting: bool = False
    t_min: float = 1e-5              # training draws t in [t_min, T]
    t_sampling: str = "uniform"     # uniform in t; lognormal: log sigma~ ~ N(p_mean, p_std^2) (EDM)
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float | None = None  # EDM loss weighting 1 + sigma~^2 / sigma_data^2 on the eps error (none: 1)
    batch_size: int = 128
    n_iters: int = 2000
    lr: float = 2e-4
    warmup: int = 100
    grad_clip: float = 1.0          # <= 0: no clipping (score_sde_pytorch writes -1)
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
    """The sampler of the end-of-training grid and of ``scoresde sample --workdir`` by default.

    ``sampler`` is a name of :data:`scoresde.samplers.registry.SAMPLERS`; every other key of the YAML
    section is one of that sampler's options (``steps``, ``eta``, ...), validated by the registry and
    kept in ``options`` (written back flat).
    """
    sampler: str = DEFAULT_SAMPLER
    num: int = 64
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    sde: SDEConfig = field(default_factory=SDEConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


_CHOICES = {
    ("data", "scale"): ("[-1,1]", "[0,1]"),
    ("sde", "name"): tuple(SDES),
    ("model", "arch"): tuple(NETWORKS),
    ("model", "prediction"): PREDICTIONS,
    ("model", "time_input"): tuple(TIME_INPUTS),
    ("training", "loss"): tuple(LOSSES),
    ("training", "reduce"): ("mean", "sum"),
    ("training", "t_sampling"): ("uniform", "lognormal"),
    ("sampling", "sampler"): tuple(SAMPLERS),
}
_POSITIVE = {("training", k) for k in ("batch_size", "n_iters", "lr", "log_every", "snapshot_every",
                                       "keep_checkpoints", "p_std", "sigma_data")} | {("sampling", "num")} \
    | {("sde", k) for k in ("sigma_min", "sigma_max", "N", "beta_max")} | {("data", "num_points")}
_NONNEGATIVE = {("training", k) for k in ("weight_decay", "warmup", "sample_every", "t_min", "seed")} \
    | {("sde", k) for k in ("beta_min", "t_end")} | {("sampling", "seed")}


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
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config: {where} must be finite, got {value!r}")
    if (section, key) in _POSITIVE and not value > 0:
        raise ConfigError(f"config: {where} must be > 0, got {value!r}")
    if (section, key) in _NONNEGATIVE and not value >= 0:
        raise ConfigError(f"config: {where} must be >= 0, got {value!r}")
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
        if name == "sampling":
            values = _sampling_values(values)
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(f"config: unknown key {name}.{key}; expected one of {', '.join(hints)}")
            setattr(sec, key, _check_value(name, key, value, hints[key]))
    try:  # the sampler's options are checked by the sampler registry, as on the command line
        resolve(cfg.sampling.sampler, cfg.sampling.options)
    except ValueError as e:
        raise ConfigError(f"config: sampling: {e}") from None
    if not 0 <= cfg.training.label_dropout <= 1:
        raise ConfigError(f"config: training.label_dropout must lie in [0, 1], got {cfg.training.label_dropout}")
    if not 0 < cfg.training.ema_rate < 1:
        raise ConfigError(f"config: training.ema_rate must lie in (0, 1), got {cfg.training.ema_rate}")
    if cfg.sde.beta_min < 0 or cfg.sde.beta_min >= cfg.sde.beta_max:
        raise ConfigError("config: sde.beta_min must be >= 0 and < sde.beta_max")
    if cfg.sde.sigma_min >= cfg.sde.sigma_max:
        raise ConfigError("config: sde.sigma_min must be < sde.sigma_max")
    try:
        t_end = build_sde(cfg.sde).t_end
    except ValueError as e:
        raise ConfigError(f"config: sde: {e}") from None
    if cfg.training.likelihood_weighting and cfg.training.sigma_data is not None:
        raise ConfigError("config: training.likelihood_weighting and training.sigma_data are two weightings; set one")
    if cfg.training.loss == "dsm" and cfg.training.t_min > t_end:
        raise ConfigError(f"config: training.t_min {cfg.training.t_min:g} is above the sampling end time {t_end:g} "
                          "(the model would never be trained where the samplers end)")
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


def _sampling_values(values: dict[str, Any]) -> dict[str, Any]:
    """A YAML sampling section (flat) as SamplingConfig fields: sampler options go into ``options``."""
    own = {f.name for f in fields(SamplingConfig)} - {"options"}
    out: dict[str, Any] = {k: v for k, v in values.items() if k in own}
    opts = dict(values.get("options") or {}) if isinstance(values.get("options", {}), dict) else values["options"]
    opts.update({k: v for k, v in values.items() if k not in own and k != "options"})
    out["options"] = opts
    return out


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Nested dicts of plain values; the sampling options are written flat beside ``sampler``."""
    d = dataclasses.asdict(cfg)
    d["sampling"] = {**{k: v for k, v in d["sampling"].items() if k != "options"}, **d["sampling"]["options"]}
    return d


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
            value = yaml.load(raw, Loader=_UniqueKeyLoader)
        except yaml.YAMLError:
            raise ConfigError(f"--set {path}: cannot parse value {raw!r}") from None
        node = d
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {path}: {p} is not a section")
        node[parts[-1]] = value
    return d


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (YAML itself would keep the last one)."""


def _unique_mapping(loader: _UniqueKeyLoader, node, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"repeats the key {key!r} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
# why: YAML 1.1 (PyYAML) reads 3e-3 (no dot) as a string, so `--set training.lr=3e-3` was refused as not a number;
# YAML 1.2 and every user read it as a float
_UniqueKeyLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"""^(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML config file; ConfigError (one line naming the file) for anything else."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"config file {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read as text: {getattr(e, 'strerror', None) or e}") from None
    try:
        d = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as e:
        raise ConfigError(f"config file {path} {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None
    if d is None:
        raise ConfigError(f"config file {path} is empty (write at least one section, e.g. training: {{n_iters: 100}})")
    if not isinstance(d, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (data, sde, model, training, "
                          f"sampling), not a {type(d).__name__}")
    return d


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (None: all defaults), apply overrides, validate."""
    d: dict[str, Any] = read_config_file(path) if path is not None else {}
    file_sampling = d.get("sampling")
    file_sampling = dict(file_sampling) if isinstance(file_sampling, dict) else file_sampling
    return config_from_dict(_switch_sampler(apply_overrides(d, overrides or []), file_sampling, overrides or []))


def _switch_sampler(d: dict[str, Any], file_sampling: Any, overrides: list[str]) -> dict[str, Any]:
    """After ``--set sampling.sampler=X``: the file's options of its own sampler that X does not take are dropped.

    Options set by an override are kept, so they are still checked against X.
    """
    sampling = d.get("sampling")
    if not isinstance(sampling, dict) or not isinstance(file_sampling, dict):
        return d
    old, new = file_sampling.get("sampler", DEFAULT_SAMPLER), sampling.get("sampler", DEFAULT_SAMPLER)
    if old == new or old not in SAMPLERS or new not in SAMPLERS:
        return d
    overridden = {o.split("=", 1)[0].strip().removeprefix("sampling.") for o in overrides}
    drop = {k for k in file_sampling if k in SAMPLERS[old].options and k not in SAMPLERS[new].options
            and k not in overridden}
    return {**d, "sampling": {k: v for k, v in sampling.items() if k not in drop}}


# ---- names -> objects (the edge) ------------------------------------------------------------
def build_sde(c: SDEConfig):
    """The SDE of the config (its N and t_end too)."""
    params = {k: getattr(c, k) for k in ("sigma_min", "sigma_max", "beta_min", "beta_max")
              if k in sde_parameters(c.name)}
    return make_sde(c.name, N=c.N, t_end=c.t_end, **params)


def build_net(c: ModelConfig, data_shape: tuple[int, ...]):
    """The network of ``c.arch`` with ``c.kwargs``; channel / dimension arguments filled from the data."""
    cls = NETWORKS[c.arch]
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
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"config: cannot build {c.arch} with {kw}: {e}") from None


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def build_model(cfg: Config, net, sde):
    from .parameterization import NetworkModel

    return NetworkModel(net, sde, cfg.model.prediction, TIME_INPUTS[cfg.model.time_input])


def build_loss(c: TrainingConfig, sde_name: str):
    """(loss function, its keyword options)."""
    need = LOSS_SDE.get(c.loss)
    if need is not None and sde_name != need:
        raise ConfigError(f"config: training.loss {c.loss} needs sde.name {need}")
    if c.loss == "dsm":
        return LOSSES[c.loss], {"t_min": c.t_min, "reduce": c.reduce, "likelihood_weighting": c.likelihood_weighting,
                                "t_sampling": c.t_sampling, "p_mean": c.p_mean, "p_std": c.p_std,
                                "sigma_data": c.sigma_data}
    if c.loss == "classifier":
        return LOSSES[c.loss], {"t_min": c.t_min}
    return LOSSES[c.loss], {"reduce": c.reduce}
