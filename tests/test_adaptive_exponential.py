"""The adaptive exponential SDE solver against closed forms and reference computations: its pair equals the tableau
methods, its noise wiring reproduces SEEDS-2's exact moments, retries on the Brownian bridge stay unbiased, the NFE
count is exact, refilled batches give the same samples for every batch size, and the tolerance is noise-relative."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import SDES, count_exact_calls
from test_seeds import _gauss, propagate

import scoresde as s
from scoresde.brownian import NoiseSource
from scoresde.quality import mixture_report
from scoresde.samplers import etd_erk, make_grid
from scoresde.samplers.adaptive_exponential import adaptive_exponential, sample_adaptive
from scoresde.samplers.base import sample
from scoresde.samplers.controller import StepSizeController

F64 = torch.float64


class FixedSteps(StepSizeController):
    """Every step accepted at the floor h_min (factor 1): the adaptive loop as a fixed-step method."""

    def factor(self, state, error, accept, rows):
        return torch.ones_like(error), state


def _fixed(model, n):
    lam_T, lam_end = (float(model.sde.log_snr(torch.tensor(v, dtype=F64))) for v in (model.sde.T, model.sde.t_end))
    h = (lam_end - lam_T) / n
    return {"controller": FixedSteps(), "h_init": h, "h_min": h, "h_max": math.inf, "denoise": False}


def _prior(model, n, seed, shape=(2,)):
    noise = NoiseSource(seed, shape, n, dtype=F64)
    return model.sde.prior_sample(noise.draw()), noise


@pytest.mark.parametrize("sde_name", list(SDES))
def test_fixed_steps_at_eta_zero_are_etd_erk_2_and_1(sde_name):
    """The pair on a uniform log-SNR grid: the high solution is ETD-ERK-2 (DPM-Solver++(2S) with the phi2 weight), the
    low one (no extrapolation) ETD-ERK-1 = DDIM - the exp2 / exp1 tableaux whose orders tests/test_exponential.py checks."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    x, noise = _prior(model, 6, 0)
    for order, extrapolate in ((2, True), (1, False)):
        a = adaptive_exponential(model, x, noise, eta=0.0, extrapolate=extrapolate, **_fixed(model, 7)).samples
        b = etd_erk(model, x, order=order, steps=7, grid="logsnr").samples
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_fixed_steps_reproduce_seeds2_moments(eta):
    """At eta > 0 the stage and end noises are one Brownian path in v = e^{2 eta lambda}: the Monte-Carlo mean and
    variance on 1-D Gaussian data equal SEEDS-2's exactly propagated ones (stage/end correlation included)."""
    model, mT, vT, _, _ = _gauss(s.VPSDE())
    steps = 5
    m, v = propagate(model, make_grid(model.sde, steps, "logsnr"), mT, vT, 2, eta)
    m1, v1 = propagate(model, make_grid(model.sde, steps, "logsnr"), mT, vT, 1, eta)
    n = 20000
    noise = NoiseSource(5, (1,), n, dtype=F64)
    x = mT + math.sqrt(vT) * noise.draw()
    xs = adaptive_exponential(model, x, noise, eta=eta, **_fixed(model, steps)).samples[:, 0]
    assert abs(float(xs.mean()) - m) < 4 * math.sqrt(v / n)
    assert abs(float(xs.var()) / v - 1) < 4 * math.sqrt(2 / n)
    assert abs(v1 / v - 1) > 8 * math.sqrt(2 / n)  # SEEDS-1's variance is far from it: the test can tell them apart


@pytest.mark.parametrize("rtol", [1.0, 0.2])
def test_unbiased_on_sharp_mixture(rtol):
    """gmm8 (VP, exact score): retries on the Brownian bridge keep the light-mode weight at 1/12 within Monte-Carlo
    error at every tolerance (GGF with fresh noise after a rejection moves it; tests/test_adaptive.py)."""
    prob = s.load_problem("gmm8")
    model = s.ExactScoreModel(prob, s.VPSDE())
    n = 2500
    x, noise = _prior(model, n, 0)
    res = adaptive_exponential(model, x, noise, rtol=rtol, atol=1e-3 * rtol)
    assert res.info["rejected"] > 0  # the retries are exercised
    light = float(mixture_report(prob, res.samples).weights[1::2].mean())
    sd = math.sqrt((1 / 3) * (2 / 3) / n) / 4
    assert abs(light - 1 / 12) < 3 * sd, light


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_exact_nfe_accounting(eta):
    """One batched call per iteration; per sample 2 per accepted step, 1 per rejected one, 1 for the denoise."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    calls = count_exact_calls(model)
    x, noise = _prior(model, 50, 1)
    res = adaptive_exponential(model, x, noise, eta=eta, rtol=0.2, atol=1e-3)
    info = res.info
    assert res.nfe == calls["n"] == info["iterations"]
    torch.testing.assert_close(res.nfe_per_sample, 2 * info["accepted_per_sample"] + info["rejected_per_sample"] + 1,
                               rtol=0, atol=0)
    assert int(res.nfe_per_sample.max()) <= res.nfe


@pytest.mark.parametrize("sde_name,eta", [("vp", 0.0), ("vp", 1.0), ("ve", 1.0), ("subvp", 1.0)])
def test_same_samples_whatever_the_batch_and_refill(sde_name, eta):
    """Sample i of seed S is identical for batch sizes 1, 7 and 64, with slots refilled or not; another seed differs."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    kw = {"eta": eta, "rtol": 0.5, "atol": 1e-3}
    ref = sample(model, 10, 11, adaptive_exponential, (2,), batch_size=64, dtype=F64, **kw)
    for b, refill in ((1, True), (7, True), (7, False)):
        got = sample(model, 10, 11, adaptive_exponential, (2,), batch_size=b, dtype=F64, refill=refill, **kw)
        torch.testing.assert_close(got.samples, ref.samples, rtol=0, atol=0)
        torch.testing.assert_close(got.nfe_per_sample, ref.nfe_per_sample, rtol=0, atol=0)
    other = sample(model, 10, 12, adaptive_exponential, (2,), batch_size=7, dtype=F64, **kw).samples
    assert (other - ref.samples).abs().min() > 0


def test_refilled_slots_keep_the_batch_busy():
    """With refilling, the batched calls per sample come within 1.2x of the per-sample NFE (200 samples, 10 slots);
    without it (fixed batches wait for their slowest sample) they are above."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    kw = {"eta": 1.0, "rtol": 0.5, "atol": 1e-3}
    res = sample(model, 200, 0, adaptive_exponential, (2,), batch_size=10, dtype=F64, **kw)
    per = float(res.nfe_per_sample.double().mean())
    assert res.info["calls_per_sample"] <= 1.2 * per, (res.info["calls_per_sample"], per)
    fixed = sample(model, 200, 0, adaptive_exponential, (2,), batch_size=10, dtype=F64, refill=False, **kw)
    assert fixed.info["total_calls"] * 10 / 200 > 1.1 * res.info["calls_per_sample"]
    torch.testing.assert_close(fixed.samples, res.samples, rtol=0, atol=0)


def test_tolerance_is_relative_to_the_noise_level():
    """Scale the data and the VE noise range by 1000 (atol 0): lambda shifts by log 1000, every error estimate is the
    same relative to sigma, so the run takes the same steps and returns the samples scaled by 1000."""
    prob = s.Gaussian([0.3, -0.2], [0.05, 0.1])
    big = s.Gaussian([300.0, -200.0], [50.0, 100.0])
    runs = []
    for p, c in ((prob, 1.0), (big, 1000.0)):
        model = s.ExactScoreModel(p, s.VESDE(0.01 * c, 50.0 * c))
        x, noise = _prior(model, 30, 4)
        runs.append((adaptive_exponential(model, x, noise, eta=0.0, rtol=0.05, atol=0.0), c))
    (a, _), (b, c) = runs
    torch.testing.assert_close(a.info["accepted_per_sample"], b.info["accepted_per_sample"], rtol=0, atol=0)
    torch.testing.assert_close(a.info["rejected_per_sample"], b.info["rejected_per_sample"], rtol=0, atol=0)
    torch.testing.assert_close(b.samples / c, a.samples, rtol=1e-8, atol=1e-10)


def test_k_diffusion_entry_point_equals_the_direct_run():
    """sample_adaptive(denoiser, x, sigmas) is the solver on the VE SDE over [sigma_min, sigma_max], seeded per sample."""
    prob = s.Gaussian([0.5, -0.5], [0.2, 0.3])
    sde = s.VESDE(0.01, 20.0, t_end=0.0)
    model = s.ExactScoreModel(prob, sde)

    def denoiser(x, sigma):
        return prob.denoised(x, torch.ones_like(sigma), sigma)

    x = 20.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    sigmas = torch.tensor([20.0, 1.0, 0.01, 0.0], dtype=F64)
    a = sample_adaptive(denoiser, x, sigmas, rtol=0.1, atol=1e-3, seed=3, disable=True)
    from scoresde.brownian import SampleStreams
    from scoresde.seeding import BROWNIAN
    streams = SampleStreams(3, (2,), range(16), stream=BROWNIAN, dtype=F64)
    b = adaptive_exponential(model, x, streams, rtol=0.1, atol=1e-3).samples
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kw,match", [
    ({"eta": 1.5}, "eta"), ({"rtol": 0.0, "atol": 0.0}, "both be 0"), ({"rtol": -1.0}, "rtol"),
    ({"norm": "l3"}, "norm"), ({"noise_mode": "x"}, "noise mode"), ({"t_end": 2.0}, "t_end")])
def test_bad_options_one_clear_error(kw, match):
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    x, noise = _prior(model, 3, 0)
    with pytest.raises(ValueError, match=match):
        adaptive_exponential(model, x, noise, **kw)
