"""Models from other code bases as score models, and scoresde's samplers in theirs.

* score_sde_pytorch checkpoints (:mod:`.score_sde`): :func:`load_score_sde_checkpoint` ...;
* diffusers (:mod:`.diffusers`): :func:`from_diffusers` - a ``save_pretrained`` pipeline or ``UNet2DModel`` folder;
* k-diffusion (:mod:`.kdiffusion`): :func:`from_denoiser` - a denoiser ``D(x, sigma, **extra)``;
* :mod:`.schedulers`: SEEDS-1/2/3 and ms2 / ms3 as diffusers schedulers (``SEEDS2Scheduler``, ``MS2Scheduler`` ...).

Names import lazily: ``import scoresde.interop`` loads nothing heavy; each format's module is imported on
first use of one of its names (so an optional dependency of one format, e.g. diffusers, never blocks another).
"""
from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module of this package that defines it
_NAMES: dict[str, str] = {
    "load_score_sde_checkpoint": "score_sde",
    "read_score_sde_checkpoint": "score_sde",
    "score_sde_config": "score_sde",
    "score_sde_name_map": "score_sde",
    "to_score_sde_state": "score_sde",
    "ScoreSDECheckpointError": "score_sde",
    **dict.fromkeys(["from_diffusers", "DiffusersError", "DiffusersModel", "sde_from_scheduler_config",
                     "alphas_cumprod_from_config"], "diffusers"),
    "from_denoiser": "kdiffusion",
    **dict.fromkeys(["SEEDS1Scheduler", "SEEDS2Scheduler", "SEEDS3Scheduler", "SEEDSScheduler", "MS2Scheduler",
                     "MS3Scheduler", "MultistepSDEScheduler"], "schedulers"),
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'scoresde.interop' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
