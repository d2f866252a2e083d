"""Shared pieces of the data package: DataError, the data-set and split names, and the default generator."""
from __future__ import annotations

import torch

__all__ = ["DataError", "TOY_NAMES", "DATASET_NAMES", "SPLITS"]


class DataError(ValueError):
    """A data set that cannot be found or read; the message says what was looked for and where."""


TOY_NAMES = ("gmm", "swiss_roll", "moons", "checkerboard", "rings")
DATASET_NAMES = ("mnist5k", "digits", "mnist", "fashion_mnist", "cifar10", "celeba", "folder", "array",
                 "hf") + TOY_NAMES
SPLITS = ("train", "test", "all")


def _gen(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(0)
