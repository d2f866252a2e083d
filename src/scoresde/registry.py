"""Names -> objects for what configs and the command line name: SDEs, networks, time inputs, losses, features.

Each name is written here once; :mod:`scoresde.config` and :mod:`scoresde.cli` read these maps (samplers
have their own registry, :mod:`scoresde.samplers.registry`). Errors are ``ValueError`` with one line.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from . import classifier, losses, nets
from .metrics.features import digit_features, inception_features
from .parameterization import (
    PREDICTIONS,
    continuous_time,
    ddpm_index,
    discrete_index,
    log_noise_level,
    noise_level,
    reversed_index,
    scaled_time,
)
from .sde import SDE, VESDE, VPSDE, SubVPSDE

__all__ = ["SDES", "NETWORKS", "TIME_INPUTS", "LOSSES", "LOSS_SDE", "FEATURES", "PREDICTIONS", "sde_parameters", "make_sde"]

#: the forward SDEs (Song et al. 2021): variance exploding, variance preserving, sub-variance preserving
SDES: dict[str, type[SDE]] = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}

#: score networks by ``model.arch``
NETWORKS: dict[str, type] = {"mlp": nets.MLP, "unet": nets.UNet, "ncsn": nets.NCSN, "ncsnv2": nets.NCSNv2,
                             "classifier_cnn": nets.ClassifierCNN, "classifier_mlp": nets.ClassifierMLP}

#: what a network is fed as its time input, by ``model.time_input``
TIME_INPUTS: dict[str, Callable] = {"t": continuous_time, "999t": scaled_time(999.0), "sigma": noise_level,
                                    "log_sigma": log_noise_level, "index": discrete_index,
                                    "reversed_index": reversed_index, "ddpm_index": ddpm_index}

#: training losses by ``training.loss``; the discrete ones need their SDE (LOSS_SDE)
LOSSES: dict[str, Callable] = {"dsm": losses.dsm_loss, "smld": losses.smld_loss, "ddpm": losses.ddpm_loss,
                               "classifier": classifier.cross_entropy_loss}
LOSS_SDE: dict[str, str] = {"smld": "ve", "ddpm": "vp"}

#: feature extractors of the sample-quality metrics by ``--features`` (each call builds its network)
FEATURES: dict[str, Callable] = {"inception": inception_features, "digits": digit_features}

#: SDE constructor arguments that are not the SDE's own shape parameters
_NOT_SHAPE = ("N", "t_end")


def sde_parameters(name: str) -> tuple[str, ...]:
    """The shape parameters of SDE ``name`` (e.g. sigma_min, sigma_max for VE), from its constructor."""
    params = inspect.signature(SDES[name]).parameters
    return tuple(p for p in params if p not in _NOT_SHAPE)


def make_sde(name: str, **params: Any) -> SDE:
    """SDE ``name`` with the given parameters (None: default); a parameter of another SDE is an error."""
    if name not in SDES:
        raise ValueError(f"unknown SDE {name!r}; expected one of {', '.join(SDES)}")
    allowed = set(sde_parameters(name)) | set(_NOT_SHAPE)
    given = {k: v for k, v in params.items() if v is not None}
    wrong = sorted(set(given) - allowed)
    if wrong:
        raise ValueError(f"{wrong[0]} does not apply to the {name} SDE (it takes {', '.join(sde_parameters(name))})")
    sde = SDES[name](**given)
    if not 0 <= sde.t_end < sde.T:
        raise ValueError(f"t_end must lie in [0, T={sde.T:g}), got {sde.t_end:g}")
    return sde
