"""scoresde: score-based generative modelling through stochastic differential equations.

The names below are imported on first use, so ``import scoresde.data`` (or the command line's
``--help``) does not pull in the SDE, sampler and likelihood machinery.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(["BrownianPath", "NoiseSource", "SampleStreams"], ".brownian"),
    "sample_seed": ".seeding",
    **dict.fromkeys(["EmpiricalDistribution", "ExactScoreModel", "Gaussian", "GaussianMixture", "load_problem"],
                    ".exact"),
    **dict.fromkeys(["bits_per_dim", "decode", "encode", "log_likelihood", "round_trip"], ".likelihood"),
    **dict.fromkeys(["DenoiserModel", "NetworkModel", "ScoreModel", "convert", "to_denoiser"], ".parameterization"),
    **dict.fromkeys(["SDE", "VESDE", "VPSDE", "SubVPSDE", "SigmaSDE", "SMLDChain", "DDPMChain"], ".sde"),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scoresde' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
