"""Bring your model: other projects' formats as scoresde score models, and scoresde's samplers in theirs.

* :func:`from_diffusers` - a diffusers pipeline / ``UNet2DModel`` folder (``save_pretrained``) as a ScoreModel;
* :func:`from_denoiser` - a k-diffusion / EDM style denoiser ``D(x, sigma, **extra)`` as a ScoreModel;
* :mod:`scoresde.interop.schedulers` - SEEDS-1/2/3 as diffusers schedulers (``SEEDS2Scheduler`` ...).

Names are imported on first use: ``import scoresde.interop`` imports neither diffusers nor torch models.
diffusers is an optional extra (``pip install 'scoresde[diffusers]'``).
"""
from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module of this package that defines it
_EXPORTS = {
    **dict.fromkeys(["from_diffusers", "DiffusersError", "DiffusersModel", "sde_from_scheduler_config",
                     "alphas_cumprod_from_config"], ".diffusers"),
    **dict.fromkeys(["from_denoiser"], ".kdiffusion"),
    **dict.fromkeys(["SEEDS1Scheduler", "SEEDS2Scheduler", "SEEDS3Scheduler", "SEEDSScheduler"], ".schedulers"),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scoresde.interop' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
