"""Sample-quality measures on any features: Frechet distance, KID, Inception Score, precision / recall;
the feature extractors (the FID Inception-v3, the offline MNIST judge) and statistics files.

Names are imported on first use, so the command line's registry can name the extractors without
loading scipy or the networks.
"""
from __future__ import annotations

import importlib
from typing import Any

# eager, because the module and its function share the name: importing the module later would otherwise
# leave ``scoresde.metrics.inception_score`` pointing at the module
from .inception_score import inception_score

#: public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(["DigitClassifier", "DigitReport", "digit_report", "load_digit_classifier",
                     "train_digit_classifier"], ".digits"),
    **dict.fromkeys(["frechet_distance", "gaussian_stats", "kernel_inception_distance"], ".frechet"),
    **dict.fromkeys(["knn_radii", "precision_recall"], ".manifold"),
    **dict.fromkeys(["FIDInceptionV3", "load_inception"], ".inception"),
    **dict.fromkeys(["FeatureExtractor", "extract_features"], ".features"),
    **dict.fromkeys(["Statistics", "load_statistics", "save_statistics"], ".stats"),
}

__all__ = [*_EXPORTS, "inception_score"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scoresde.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
