"""Colorization against closed forms: the colour transform is orthonormal, grey decouples to (sqrt 3 g, 0, 0),
the output's channel mean is the grey input, and sampled colours match the closed-form conditional of a
3-D Gaussian mixture given the grey value."""
from __future__ import annotations

import math

import pytest
import torch

import scoresde as s
from scoresde.colorization import COLOR_MATRIX, DecoupledModel, colorize, couple, decouple, grey_of
from scoresde.samplers import sample

F64 = torch.float64


def test_transform_is_orthonormal_and_grey_decouples():
    torch.testing.assert_close(COLOR_MATRIX.T @ COLOR_MATRIX, torch.eye(3, dtype=F64), rtol=0, atol=1e-15)
    torch.testing.assert_close(COLOR_MATRIX[:, 0], torch.full((3,), 1 / math.sqrt(3), dtype=F64), rtol=0, atol=0)
    g = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(0), dtype=F64) * 2 - 1
    y = decouple(g.expand(2, 3, 5, 7))
    torch.testing.assert_close(y[:, :1], math.sqrt(3) * g, rtol=0, atol=1e-15)
    assert y[:, 1:].abs().max() < 1e-15
    x = torch.randn(3, 3, 4, 6, dtype=F64)
    torch.testing.assert_close(couple(decouple(x)), x, rtol=0, atol=1e-14)
    torch.testing.assert_close(decouple(x)[:, 0:1], math.sqrt(3) * grey_of(x), rtol=0, atol=1e-14)


def test_decoupled_model_is_the_model_seen_through_m():
    mix = s.GaussianMixture([0.6, 0.4], [[0.5, -0.2, 0.1, 0.3, 0.0, -0.4], [-0.3, 0.4, 0.2, 0.0, -0.5, 0.1]], [0.3, 0.2],
                            shape=(3, 2, 1))
    model = s.ExactScoreModel(mix, s.VPSDE())
    y, t = torch.randn(4, 3, 2, 1, dtype=F64), torch.full((4,), 0.3, dtype=F64)
    dec = DecoupledModel(model)
    for kind in ("score", "data", "eps"):
        torch.testing.assert_close(dec.output(y, t, kind), decouple(model.output(couple(y), t, kind)), rtol=1e-12,
                                   atol=1e-12)
    assert dec.nfe == 3 and model.nfe == 3  # the wrapper counts its own calls; the inner output() calls counted there


@pytest.mark.parametrize("base", ["seeds1", "pc", "ddim", "edm", "dpmpp2m"])
def test_any_size_any_grid_sampler_keeps_the_grey(base):
    h, w = 3, 5
    g = torch.Generator().manual_seed(1)
    means = torch.rand(3, 3 * h * w, generator=g, dtype=F64) * 2 - 1
    model = s.ExactScoreModel(s.GaussianMixture([0.3, 0.3, 0.4], means, 0.2, shape=(3, h, w)), s.VESDE())
    grey = torch.rand(4, 1, h, w, generator=g, dtype=F64) * 2 - 1
    res = sample(model, 4, 0, colorize, (3, h, w), dtype=F64, grey=grey, base=base, steps=12, batch_size=4)
    assert res.samples.shape == (4, 3, h, w) and torch.isfinite(res.samples).all()
    torch.testing.assert_close(grey_of(res.samples), grey, rtol=0, atol=1e-14)


def _pixel_mixture(same_grey: bool) -> s.GaussianMixture:
    """Three colour modes of one pixel; with ``same_grey`` they share the grey value and a std (grey says nothing)."""
    colours = torch.tensor([[0.8, -0.4, -0.4], [-0.5, 0.7, -0.2], [0.1, -0.1, 0.9]], dtype=F64)
    if same_grey:
        colours = colours - colours.mean(1, keepdim=True) + 0.1
        return s.GaussianMixture([0.5, 0.3, 0.2], colours, 0.15, shape=(3, 1, 1))
    return s.GaussianMixture([0.5, 0.3, 0.2], colours, [0.15, 0.2, 0.1], shape=(3, 1, 1))


def _mode_shares(x: torch.Tensor, mix: s.GaussianMixture) -> torch.Tensor:
    d = ((x.reshape(x.shape[0], 1, 3) - mix.means[None]) ** 2).sum(-1)
    return torch.bincount(d.argmin(1), minlength=3).double() / x.shape[0]


@pytest.mark.parametrize("same_grey, method", [(False, "exact"), (True, "replacement")])
def test_colours_match_the_closed_form_conditional(same_grey, method):
    mix = _pixel_mixture(same_grey)
    n = 1500
    grey_value = 0.1 if same_grey else 0.05
    grey = torch.full((n, 1, 1, 1), grey_value, dtype=F64)
    # the conditional in the decoupled space: y_0 = sqrt 3 grey known
    dec = s.GaussianMixture(mix.weights, decouple(mix.means.reshape(3, 3, 1, 1)).reshape(3, 3), mix.stds)
    cond = dec.condition(torch.tensor([math.sqrt(3) * grey_value, 0, 0], dtype=F64), torch.tensor([1.0, 0, 0]))
    model = s.ExactScoreModel(mix, s.VPSDE())
    res = sample(model, n, 0, colorize, (3, 1, 1), dtype=F64, grey=grey[:1], base="seeds2",
                 steps=40, method=method)
    shares = _mode_shares(res.samples, mix)
    se = torch.sqrt(cond.weights * (1 - cond.weights) / n)
    assert ((shares - cond.weights).abs() <= 4 * se + 1 / n).all(), (shares, cond.weights)
    # the colour coordinates of the heaviest mode: the conditional mean and std of that component
    y = decouple(res.samples).reshape(n, 3)[:, 1:]
    k = int(cond.weights.argmax())
    near = ((y - cond.means[k]) ** 2).sum(1) < (3 * float(cond.stds[k])) ** 2
    assert (y[near].mean(0) - cond.means[k]).abs().max() < 5 * float(cond.stds[k]) / math.sqrt(int(near.sum()))
    if not same_grey:
        assert float(cond.weights.max()) < 0.9 and abs(float(cond.weights[0]) - 0.5) > 0.05  # grey is informative
