"""Class-conditional sampling against closed forms: the exact classifier of a Gaussian mixture is its
responsibilities, guidance at w = 1 is exactly the component's score, and sampling with it reproduces the
component (mean, covariance) for every SDE; classifier-free guidance at w = 1 / w = 0 gives the component /
the mixture."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import SDES

import scoresde as s
from scoresde.cli import main
from scoresde.guidance import ClassifierFreeGuidedModel, ClassifierGuidedModel, MixtureClassifier, mixture_component_model
from scoresde.quality import mixture_report
from scoresde.samplers import ode_sample, sample, seeds

F64 = torch.float64
MIX = s.GaussianMixture([0.5, 0.3, 0.2], [[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]], [0.3, 0.2, 0.25])


def _points(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g, dtype=F64) * 1.5, torch.rand(n, generator=g, dtype=F64) * 0.98 + 0.01


@pytest.mark.parametrize("sde_name", list(SDES))
def test_exact_classifier_is_the_responsibilities_and_its_gradient(sde_name):
    sde = SDES[sde_name]()
    clf = MixtureClassifier(MIX, sde)
    x, t = _points()
    for k in range(3):
        y = torch.full((64,), k)
        alpha, sigma = sde.marginal(t)
        r = MIX.responsibilities(x, alpha, sigma)[:, k]
        torch.testing.assert_close(clf.log_prob(x, t, y), torch.log(r), rtol=1e-12, atol=1e-12)
        xr = x.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(clf.log_prob(xr, t, y).sum(), xr)
        torch.testing.assert_close(clf.grad_log_prob(x, t, y), auto, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sde_name", list(SDES))
def test_guidance_at_w1_is_the_component_score(sde_name):
    sde = SDES[sde_name]()
    mixture = s.ExactScoreModel(MIX, sde)
    x, t = _points()
    for k in range(3):
        comp = mixture_component_model(MIX, k, sde)
        guided = ClassifierGuidedModel(mixture, MixtureClassifier(MIX, sde), k, w=1.0)
        torch.testing.assert_close(guided.score(x, t), comp.score(x, t), rtol=1e-10, atol=1e-10)
        cfg = ClassifierFreeGuidedModel(mixture, comp, w=1.0)
        torch.testing.assert_close(cfg.denoised(x, t), comp.denoised(x, t), rtol=1e-10, atol=1e-10)
    # w = 0: the unconditional model; CFG counts two evaluations per call
    cfg0 = ClassifierFreeGuidedModel(mixture, mixture_component_model(MIX, 0, sde), w=0.0)
    torch.testing.assert_close(cfg0.denoised(x, t), mixture.denoised(x, t), rtol=1e-10, atol=1e-10)
    assert cfg0.nfe == 2
    g0 = ClassifierGuidedModel(mixture, MixtureClassifier(MIX, sde), 1, w=0.0)
    torch.testing.assert_close(g0.score(x, t), mixture.score(x, t), rtol=1e-12, atol=1e-12)


def _moments_match(x: torch.Tensor, comp: s.GaussianMixture, sde) -> None:
    a, sig = (float(v) for v in sde.marginal(sde.t_end))
    var = a**2 * float(comp.stds[0]) ** 2 + sig**2
    n = x.shape[0]
    se_mean = math.sqrt(var / n)
    assert (x.mean(0) - a * comp.means[0]).abs().max() < 4 * se_mean
    cov = torch.cov(x.T)
    se_var = var * math.sqrt(2 / (n - 1))
    assert (torch.diagonal(cov) - var).abs().max() < 4 * se_var
    assert abs(float(cov[0, 1])) < 4 * var / math.sqrt(n)


@pytest.mark.parametrize("sde_name", list(SDES))
def test_guided_sampling_reproduces_the_component(sde_name):
    sde = SDES[sde_name]()
    mixture = s.ExactScoreModel(MIX, sde)
    k = 1  # a light component (weight 0.3)
    guided = ClassifierGuidedModel(mixture, MixtureClassifier(MIX, sde), k, w=1.0)
    res = sample(guided, 2000, 0, ode_sample, (2,), dtype=F64, rtol=1e-6, atol=1e-6)
    _moments_match(res.samples, mixture_component_model(MIX, k, sde).problem, sde)


def test_cfg_sampling_w1_is_the_component_and_w0_the_mixture():
    sde = s.VPSDE()
    mixture = s.ExactScoreModel(MIX, sde)
    comp = mixture_component_model(MIX, 2, sde)
    res = sample(ClassifierFreeGuidedModel(mixture, comp, w=1.0), 2000, 1, seeds, (2,), dtype=F64, order=2,
                 steps=40)
    _moments_match(res.samples, comp.problem, sde)
    assert res.nfe == 2 * 2 * 40  # SEEDS-2: 2 calls a step, each a conditional and an unconditional evaluation
    res0 = sample(ClassifierFreeGuidedModel(mixture, comp, w=0.0), 3000, 1, seeds, (2,), dtype=F64, order=2,
                  steps=40)
    rep = mixture_report(MIX, res0.samples)
    assert rep.tv < 2.5 * rep.tv_noise  # the mixture's mode weights, within Monte-Carlo error


@pytest.mark.parametrize("argv,needle", [
    (["--problem", "gmm8", "--class", "8"], "8 components"),
    (["--problem", "gaussian", "--class", "0"], "no classes"),
    (["--problem", "gmm8", "--guidance", "2"], "need --class"),
    (["--problem", "gmm8", "--class", "-1"], "--class"),
    (["--problem", "gmm8", "--class", "1", "--guidance", "nan"], "--guidance"),
])
def test_cli_class_errors(argv, needle, tmp_path, capsys):
    out = tmp_path / "o.npz"
    assert main(["sample", "--out", str(out), "--num", "4", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and not out.exists()


def test_cli_class_samples_the_component(tmp_path):
    import numpy as np

    out = tmp_path / "c.npz"
    assert main(["sample", "--problem", "gmm8", "--sde", "vp", "--sampler", "seeds2", "--steps", "30", "--class",
                 "3", "--num", "400", "--out", str(out), "--no-plot", "--no-progress"]) == 0
    x = torch.from_numpy(np.load(out)["samples"])
    gmm8 = s.load_problem("gmm8")
    nearest = torch.cdist(x.double(), gmm8.means).argmin(1)
    assert bool((nearest == 3).all())
