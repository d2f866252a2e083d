"""Feature extractors of the sample-quality metrics: 8-bit images -> (features, logits), by name.

Every metric input is first an 8-bit image tensor (N, C, H, W), values 0..255 (:func:`to_uint8` maps
data-space samples there, rounding), so samples, image folders, data sets and evaluation shards meet the
network through the same quantisation. The extractors (named in :data:`scoresde.registry.FEATURES`):

* ``inception`` - the FID Inception-v3 (:mod:`.inception`): 2048-d pool_3 features, 1008 logits when the
  weights hold the classifier. FIDs in this space are comparable with published ones (same network,
  same TensorFlow input handling, 50,000 samples against the data set's statistics).
* ``digits`` - the project's MNIST judge (:mod:`.digits`): its 128-d hidden layer and 10 logits, for
  28x28 digits only. Comparable only with numbers from this project's judge.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["FeatureExtractor", "digit_features", "extract_features", "inception_features", "kid_scale", "to_uint8"]


@dataclass
class FeatureExtractor:
    """A named map from a batch of 8-bit images to (features (B, dim), logits (B, K) or None), float tensors."""

    name: str
    dim: int
    fn: Callable[[Tensor], tuple[Tensor, Tensor | None]]
    has_logits: bool
    description: str
    batch_size: int = 50
    device: str | torch.device = "cpu"
    #: KID's cubic kernel expects unit-scale features: KID divides them by this (see :func:`kid_scale`)
    kid_scale: float = 1.0
    #: raises ValueError for images the network cannot take (called before any batch runs)
    check: Callable[[Tensor], None] | None = None

    def __call__(self, images: Tensor, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Features (N, dim) and logits (N, K) or None, float64, of (N, C, H, W) 8-bit images, in batches."""
        return extract_features(self, images, progress=progress)


def to_uint8(x01: Tensor) -> Tensor:
    """Images in [0, 1] -> uint8 0..255, rounded to the nearest level (values outside [0, 1] clipped)."""
    return (x01.float() * 255).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def extract_features(fx: FeatureExtractor, images: Tensor, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Run ``fx`` over ``images`` (N, C, H, W), 0..255, in batches of ``fx.batch_size``."""
    from tqdm.auto import tqdm

    if images.ndim != 4:
        raise ValueError(f"features take (N, C, H, W) images, got shape {tuple(images.shape)}")
    if fx.check is not None:
        fx.check(images)
    feats, logits = [], []
    with tqdm(total=images.shape[0], disable=not progress, desc=f"{fx.name} features", leave=False,
              dynamic_ncols=True) as bar:
        for lo in range(0, images.shape[0], fx.batch_size):
            f, lg = fx.fn(images[lo:lo + fx.batch_size].to(fx.device))
            feats.append(f.double().cpu().numpy())
            if lg is not None:
                logits.append(lg.double().cpu().numpy())
            bar.update(min(fx.batch_size, images.shape[0] - lo))
    f = np.concatenate(feats) if feats else np.zeros((0, fx.dim))
    return f, (np.concatenate(logits) if logits else None)


def inception_features(weights: str | None = None, preprocessing: str = "tf", device: str | torch.device = "cpu",
                       batch_size: int = 50) -> FeatureExtractor:
    """The FID Inception-v3's pool_3 features (and logits when the weights have them); see :mod:`.inception`."""
    from .inception import find_fid_helper_weights, load_inception, preprocess

    net = load_inception(weights, device=device)
    source = weights or find_fid_helper_weights()

    def check(images: Tensor) -> None:
        if images.shape[1] not in (1, 3):
            raise ValueError(f"Inception features take 1- or 3-channel images, got shape {tuple(images.shape)}")

    def fn(images: Tensor) -> tuple[Tensor, Tensor | None]:
        return net(preprocess(images, preprocessing))

    return FeatureExtractor("inception", 2048, fn, net.has_logits,
                            f"FID Inception-v3 pool_3 ({source}; {preprocessing} input handling"
                            f"{'' if net.has_logits else '; no logits'})", batch_size, device, check=check)


def digit_features(device: str | torch.device = "cpu", batch_size: int = 500) -> FeatureExtractor:
    """The MNIST judge's 128-d hidden layer and 10 logits, on (N, 1 or 3, 28, 28) digits (RGB: ITU-R 601 luma)."""
    from ..data import convert_channels
    from .digits import load_digit_classifier

    net = load_digit_classifier(progress=False).to(device)

    def check(images: Tensor) -> None:
        if tuple(images.shape[2:]) != (28, 28) or images.shape[1] not in (1, 3):
            raise ValueError(f"the digit features take 28x28 digits (N, 1 or 3, 28, 28), got {tuple(images.shape)}")

    def fn(images: Tensor) -> tuple[Tensor, Tensor | None]:
        check(images)
        x = convert_channels(images.float() / 255.0, 1)
        f = net.features(x)
        return f, net.fc2(f)

    return FeatureExtractor("digits", 128, fn, True, "the MNIST digit judge's 128-d hidden layer (this project's "
                            "network; not comparable with published FIDs)", batch_size, device, kid_scale("digits"), check)


def kid_scale(name: str) -> float:
    """The feature scale KID divides by: 1 for Inception (unit-scale features, as the reference), the RMS of
    the judge's features over the training digits for ``digits`` (as :func:`.digits.digit_report` does)."""
    if name != "digits":
        return 1.0
    from .digits import _reference, load_digit_classifier

    f = _reference(load_digit_classifier(progress=False))[2]
    return float(np.sqrt((f**2).mean()))
