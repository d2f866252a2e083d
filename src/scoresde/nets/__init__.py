"""Score networks: every one is ``net(x, c) -> tensor shaped like x``, with c the time/noise input."""
from __future__ import annotations

from typing import Any

from torch import nn

from .classifier import ClassifierCNN, ClassifierMLP
from .embeddings import fourier_features, sinusoidal_embedding
from .layers import count_parameters, downsample_2d, fir_kernel, upfirdn2d, upsample_2d
from .mlp import MLP
from .ncsn import NCSN, NCSN_PAPER_CONFIGS, NCSNv2, RefineNet
from .unet import (
    UNET_PAPER_CONFIGS,
    UNet,
    ddpm_cifar10,
    ddpmpp_cifar10,
    ddpmpp_deep_cifar10,
    ncsnpp_cifar10,
    ncsnpp_deep_cifar10,
)

__all__ = [
    "MLP", "ClassifierCNN", "ClassifierMLP", "fourier_features", "sinusoidal_embedding",
    "count_parameters", "fir_kernel", "upfirdn2d", "upsample_2d", "downsample_2d",
    "UNet", "RefineNet", "NCSN", "NCSNv2",
    "ddpm_cifar10", "ddpmpp_cifar10", "ddpmpp_deep_cifar10", "ncsnpp_cifar10", "ncsnpp_deep_cifar10",
    "paper_configs", "build_paper_net",
]


def paper_configs() -> dict[str, tuple[type[nn.Module], dict[str, Any]]]:
    """The paper-size CIFAR-10 networks: name -> (class, constructor kwargs), 3 channels in and out.

    Names: ddpm (Ho et al. 2020), ddpmpp_cont, ddpmpp_cont_deep, ncsnpp_cont, ncsnpp_cont_deep
    (Song et al. 2021), ncsn (Song & Ermon 2019), ncsnv2 (Song & Ermon 2020).
    """
    out: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {k: (UNet, dict(v)) for k, v in UNET_PAPER_CONFIGS.items()}
    out.update({k: (cls, dict(v)) for k, (cls, v) in NCSN_PAPER_CONFIGS.items()})
    return out


def build_paper_net(name: str, **overrides: Any) -> nn.Module:
    """Instantiate a paper configuration by name, with keyword overrides (e.g. in_channels=1, nf=32)."""
    configs = paper_configs()
    if name not in configs:
        raise ValueError(f"unknown network {name!r}; expected one of {', '.join(configs)}")
    cls, kwargs = configs[name]
    return cls(**{**kwargs, **overrides})
