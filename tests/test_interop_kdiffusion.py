"""k-diffusion denoisers as score models (issue 13, deliverable 3): exact on Gaussian data through every path."""
from __future__ import annotations

import math

import pytest
import torch

from scoresde.brownian import NoiseSource, SampleStreams
from scoresde.exact import ExactScoreModel, Gaussian, GaussianMixture
from scoresde.guidance import ClassifierFreeGuidedModel, ClassifierGuidedModel, MixtureClassifier
from scoresde.interop import from_denoiser
from scoresde.likelihood import log_likelihood
from scoresde.parameterization import to_denoiser
from scoresde.samplers import ggf_sample, ode_sample, pc_sample, seeds
from scoresde.samplers.kdiffusion import sample_seeds_2
from scoresde.sde import VESDE, VPSDE, SigmaSDE

F64 = torch.float64
S, DIM, SMIN, SMAX = 0.5, 3, 0.01, 50.0


def gauss_denoiser(x, sigma, gain=1.0):
    """E[x_0 | x_0 + sigma n = x] for x_0 ~ N(0, S^2 I): S^2 / (S^2 + sigma^2) x (k-diffusion's convention)."""
    s2 = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return gain * S**2 / (S**2 + s2) * x


def reference():
    return ExactScoreModel(Gaussian(torch.zeros(DIM), S), VESDE(SMIN, SMAX, t_end=0.0))


def test_score_and_denoiser_equal_the_closed_form():
    model = from_denoiser(gauss_denoiser, SMIN, SMAX)
    assert isinstance(model.sde, VESDE) and model.sde.t_end == 0.0
    x = torch.randn(7, DIM, dtype=F64, generator=torch.Generator().manual_seed(0)) * 3
    t = torch.rand(7, dtype=F64, generator=torch.Generator().manual_seed(1))
    ref = reference()
    assert torch.allclose(model.score(x, t), ref.score(x, t), rtol=1e-12, atol=1e-12)
    assert torch.allclose(model.denoised(x, t), ref.denoised(x, t), rtol=1e-12, atol=1e-12)
    # a denoiser carrying its range (k-diffusion's wrappers do), extra_args passed through
    gauss_denoiser.sigma_min, gauss_denoiser.sigma_max = SMIN, SMAX
    try:
        m2 = from_denoiser(gauss_denoiser, extra_args={"gain": 2.0})
        assert torch.allclose(m2.denoised(x, t), 2 * ref.denoised(x, t), rtol=1e-12)
    finally:
        del gauss_denoiser.sigma_min, gauss_denoiser.sigma_max


def test_probability_flow_ode_is_the_closed_form_map():
    """For N(0, S^2 I) data the VE probability-flow ODE maps x_T to x_T sqrt(S^2 + sigma_t^2) / sqrt(S^2 + sigma_T^2)."""
    model = from_denoiser(gauss_denoiser, SMIN, SMAX)
    xT = torch.randn(16, DIM, dtype=F64, generator=torch.Generator().manual_seed(2)) * SMAX
    res = ode_sample(model, xT, rtol=1e-10, atol=1e-10, t_end=0.0)
    exact = xT * math.sqrt(S**2 + SMIN**2) / math.sqrt(S**2 + SMAX**2)
    assert torch.allclose(res.samples, exact, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("run", ["pc", "seeds3", "ggf"])
def test_samplers_give_the_exact_models_samples(run):
    """PC, SEEDS and GGF on from_denoiser give the samples of the closed-form score model (same noise) to 1e-9."""
    def go(model):
        xT = model.sde.prior_sample(NoiseSource(3, (DIM,), 16, dtype=F64).draw())
        noise = NoiseSource(4, (DIM,), 16, dtype=F64)
        if run == "pc":
            return pc_sample(model, xT, noise, steps=30, snr=0.16).samples
        if run == "seeds3":
            return seeds(model, xT, noise, order=3, steps=10, t_end=1e-3).samples
        streams = SampleStreams(4, (DIM,), range(16), stream=1, dtype=F64)
        return ggf_sample(model, xT, streams, rtol=0.1, t_end=1e-3).samples

    ours, ref = go(from_denoiser(gauss_denoiser, SMIN, SMAX)), go(reference())
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_likelihood_equals_the_closed_form():
    """With the exact marginal at T as the prior (sigma_max = 50 is not infinite: N(0, sigma_max^2) would be off by
    ~1e-4 nats), the ODE log-likelihood is the closed-form log-density at t_end."""
    model = from_denoiser(gauss_denoiser, SMIN, SMAX)
    x = torch.randn(2, DIM, dtype=F64, generator=torch.Generator().manual_seed(5)) * S
    prior = Gaussian(torch.zeros(DIM), math.sqrt(S**2 + SMAX**2))
    res = log_likelihood(model, x, rtol=1e-8, atol=1e-8, t_end=1e-5, prior_logp=prior.log_prob)
    sig = float(model.sde.sigma(torch.tensor(1e-5, dtype=F64)))
    exact = Gaussian(torch.zeros(DIM), math.sqrt(S**2 + sig**2)).log_prob(x)
    assert torch.allclose(res.logp, exact, atol=1e-5)


def test_guidance_wrappers_on_denoisers():
    """A mixture's exact denoiser wrapped by from_denoiser: classifier guidance at w = 1 is component k's score;
    classifier-free guidance is D_u + w (D_c - D_u)."""
    mix = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.5, 0.5]], [0.4, 0.6])
    sde = VESDE(SMIN, SMAX)
    D_mix = to_denoiser(ExactScoreModel(mix, sde))
    D_one = to_denoiser(ExactScoreModel(GaussianMixture([1.0], [[1.5, 0.5]], [0.6]), sde))
    uncond = from_denoiser(D_mix, SMIN, SMAX)
    cond = from_denoiser(D_one, sde=uncond.sde)  # CFG needs both over one SDE object
    x = torch.randn(9, 2, dtype=F64, generator=torch.Generator().manual_seed(6)) * 2
    t = torch.full((9,), 0.4, dtype=F64)
    guided = ClassifierGuidedModel(uncond, MixtureClassifier(mix, sde), 1, 1.0)
    assert torch.allclose(guided.score(x, t), cond.score(x, t), rtol=1e-9, atol=1e-9)
    cfg = ClassifierFreeGuidedModel(uncond, cond, 2.5)
    want = uncond.denoised(x, t) + 2.5 * (cond.denoised(x, t) - uncond.denoised(x, t))
    assert torch.allclose(cfg.denoised(x, t), want, rtol=1e-12, atol=1e-12)


def test_kdiffusion_entry_point_and_other_sdes():
    """sample_seeds_2(D, x, sigmas) is seeds() on from_denoiser(D, sde="sigma") over the same sigmas; over a VP SDE
    the denoiser is asked at sigma_tilde(t) with x / alpha_t and still gives the exact score."""
    sigmas = torch.tensor([20.0, 5.0, 1.0, 0.2, 0.05], dtype=F64)
    x = torch.randn(5, DIM, dtype=F64, generator=torch.Generator().manual_seed(7)) * 20
    draws = [torch.randn(5, DIM, dtype=F64, generator=torch.Generator().manual_seed(8 + i)) for i in range(8)]
    it = iter(draws)
    ref = sample_seeds_2(gauss_denoiser, x, sigmas, disable=True, noise_sampler=lambda a, b: next(it))
    model = from_denoiser(gauss_denoiser, 0.05, 20.0, sde="sigma")
    assert isinstance(model.sde, SigmaSDE)
    it = iter(draws)
    ours = seeds(model, x, order=2, steps=4, grid=sigmas, draw=lambda a, b: next(it)).samples
    assert torch.equal(ours, ref)
    vp = from_denoiser(gauss_denoiser, sde=VPSDE())
    t = torch.full((5,), 0.5, dtype=F64)
    assert torch.allclose(vp.score(x, t), ExactScoreModel(Gaussian(torch.zeros(DIM), S), VPSDE()).score(x, t),
                          rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="sigma_min and sigma_max"):
        from_denoiser(gauss_denoiser)
    with pytest.raises(ValueError, match="sde must be"):
        from_denoiser(gauss_denoiser, 0.1, 1.0, sde="vp")
