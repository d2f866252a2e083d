"""Colorization: sample the colours of an RGB image given its grey version, with any grid sampler.

Song et al. (2021, App. I.3): an orthonormal colour transform M whose first column is the grey direction,

    M = [(1, 1, 1)/sqrt 3 | (-2, 1, 1)/sqrt 6 | (0, 1, -1)/sqrt 2],   y = M^T x per pixel, x = M y,

decouples a pixel into its grey coordinate y_0 = (r + g + b)/sqrt 3 = sqrt 3 grey and two colour coordinates.
Colorization is then inpainting in the decoupled space with y_0 = sqrt 3 grey known (:func:`scoresde.inpainting.inpaint`:
replacement, RePaint or DPS, every grid sampler). Because M is orthonormal the forward SDE, its isotropic
prior and every prediction kind (score, eps, data, v) commute with it, so the decoupled model is the
trained model seen through M (no approximation), and the initial state is a full prior draw in all three
decoupled channels - score_sde_pytorch zeroes one RGB channel before decoupling, which gives the colour
channels the wrong initial variance. The output's channel mean equals the grey input exactly.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .brownian import NoiseSource
from .exact import ExactScoreModel, GaussianMixture
from .inpainting import inpaint
from .parameterization import ScoreModel
from .samplers.base import SampleResult

__all__ = ["COLOR_MATRIX", "decouple", "couple", "grey_of", "DecoupledModel", "decoupled_model", "colorize"]

#: columns: the grey direction (1, 1, 1)/sqrt 3, then (-2, 1, 1)/sqrt 6 and (0, 1, -1)/sqrt 2 (orthonormal)
COLOR_MATRIX = torch.tensor([[1 / math.sqrt(3), -2 / math.sqrt(6), 0.0],
                             [1 / math.sqrt(3), 1 / math.sqrt(6), 1 / math.sqrt(2)],
                             [1 / math.sqrt(3), 1 / math.sqrt(6), -1 / math.sqrt(2)]], dtype=torch.float64)


def _apply(matrix: Tensor, x: Tensor) -> Tensor:
    if x.ndim < 2 or x.shape[1] != 3:
        raise ValueError(f"colour transforms need (N, 3, ...) images, got shape {tuple(x.shape)}")
    return torch.einsum("ij,nj...->ni...", matrix.to(x), x)


def decouple(x: Tensor) -> Tensor:
    """y = M^T x per pixel (Song et al. 2021, App. I.3): channel 0 is sqrt 3 x the grey value."""
    return _apply(COLOR_MATRIX.T, x)


def couple(y: Tensor) -> Tensor:
    """x = M y per pixel, the inverse of :func:`decouple`."""
    return _apply(COLOR_MATRIX, y)


def grey_of(x: Tensor) -> Tensor:
    """The grey image (r + g + b)/3, shape (N, 1, ...)."""
    return x.mean(1, keepdim=True)


class DecoupledModel(ScoreModel):
    """A score model of RGB images seen in the decoupled colour space: every prediction kind is M^T of the RGB one."""

    def __init__(self, model: ScoreModel):
        super().__init__(model.sde, model.prediction)
        self.model = model

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return self.predict_for(x, t, self.prediction)[0]

    def predict_for(self, x: Tensor, t: Tensor, kind):
        raw, raw_kind = self.model.predict_for(couple(x), t, kind)
        return decouple(raw), raw_kind


def decoupled_model(model: ScoreModel) -> ScoreModel:
    """``model`` in the decoupled space; an exact mixture stays an exact mixture (its means decoupled)."""
    if isinstance(model, ExactScoreModel) and isinstance(model.problem, GaussianMixture):
        p = model.problem
        if len(p.shape) < 1 or p.shape[0] != 3:
            raise ValueError(f"colorization needs problems of shape (3, ...), got {p.shape}")
        means = decouple(p.means.reshape((-1,) + p.shape)).reshape(p.means.shape)
        return ExactScoreModel(GaussianMixture(p.weights, means, p.stds, shape=p.shape), model.sde)
    return DecoupledModel(model)


def colorize(model: ScoreModel, x: Tensor, noise: NoiseSource, *, grey: Tensor, method: str = "replacement",
             base: str = "seeds1", steps: int = 100, **options: Any) -> SampleResult:
    """Colour images (N, 3, ...) given their grey version (N or 1, 1, ...) (Song et al. 2021, App. I.3).

    ``x`` is the prior draw x_T (N, 3, ...), taken as the decoupled state (the prior is isotropic, so its law
    is the same); ``method`` / ``base`` / ``steps`` / ``options`` as :func:`scoresde.inpainting.inpaint`.
    The result is in RGB; its channel mean equals ``grey``.
    """
    if x.ndim < 2 or x.shape[1] != 3:
        raise ValueError(f"colorization needs (N, 3, ...) images, got shape {tuple(x.shape)}")
    grey = torch.as_tensor(grey, dtype=x.dtype, device=x.device)
    if grey.shape[0] == 1 and x.shape[0] > 1:  # one grey image for every sample
        grey = grey.expand((x.shape[0],) + tuple(grey.shape[1:]))
    if grey.shape != (x.shape[0], 1) + tuple(x.shape[2:]):
        raise ValueError(f"grey images of shape {tuple(grey.shape)} do not fit images of shape {tuple(x.shape)}")
    known = torch.cat([math.sqrt(3) * grey, torch.zeros_like(x[:, 1:])], 1)
    mask = torch.zeros((1,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    mask[:, 0] = 1
    space = decoupled_model(model)
    res = inpaint(space, x, noise, known=known, mask=mask, base=base, steps=steps, method=method, **options)
    rgb = couple(res.samples)
    # the grey direction exactly: remove the rounding of M y from the channel mean
    rgb = rgb + (grey - grey_of(rgb))
    return SampleResult(rgb, res.nfe, info={**res.info, "task": "colorization"})
