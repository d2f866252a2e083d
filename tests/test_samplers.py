"""Samplers against closed-form truth: convergence orders, exact moments, mixtures, NFE, seeding."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import scoresde as s
from scoresde.brownian import NoiseSource
from scoresde.quality import mixture_report
from scoresde.samplers import (ancestral_sampling, annealed_langevin, euler_maruyama, langevin, ode_sample,
                               pc_sample, reverse_diffusion, sample)
from scoresde.schedules import uniform_time

SDES = {"ve": s.VESDE, "vp": s.VPSDE, "subvp": s.SubVPSDE}
F64 = torch.float64


def slope(ns, errs) -> float:
    """Fitted slope of log(err) against log(n)."""
    return float(np.polyfit(np.log(ns), np.log(errs), 1)[0])


def propagate_moments(model, predictor, grid, m0, v0):
    """Exact mean/variance of a 1-D affine sampler step chain, using the predictor itself.

    With a Gaussian score every predictor step is affine: x' = A x + b + C z. Calling the step on
    the batch x = (m, 0, 1, 0), z = (0, 0, 0, 1) reveals A, b, C, so the moments propagate exactly
    (no Monte Carlo): m' = A m + b, v' = A^2 v + C^2.
    """
    m, v = torch.tensor(m0, dtype=F64), torch.tensor(v0, dtype=F64)
    for i in range(len(grid) - 1):
        x = torch.stack([m, torch.zeros((), dtype=F64), torch.ones((), dtype=F64), torch.zeros((), dtype=F64)])[:, None]
        z = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=F64)[:, None]
        t = grid[i].expand(4)
        out, _ = predictor(model, x, t, grid[i + 1].expand(4), z)
        out = out[:, 0]
        a, c = out[2] - out[1], out[3] - out[1]
        m, v = out[0], a**2 * v + c**2
    return float(m), float(v)


@pytest.mark.parametrize("sde_name", list(SDES))
def test_euler_maruyama_weak_order_one(sde_name):
    """EM on the reverse SDE with the exact Gaussian score: weak error of mean and variance ~ 1/N."""
    sde = SDES[sde_name]()
    prob = s.Gaussian([0.7], [0.3])
    model = s.ExactScoreModel(prob, sde)
    aT, sT = (float(v) for v in sde.marginal(sde.T))
    a0, s0 = (float(v) for v in sde.marginal(sde.t_end))
    m_true, v_true = a0 * 0.7, a0**2 * 0.09 + s0**2
    ns, errs = [16, 32, 64, 128, 256], []
    for n in ns:
        m, v = propagate_moments(model, euler_maruyama, uniform_time(sde, n), aT * 0.7, aT**2 * 0.09 + sT**2)
        errs.append(abs(m - m_true) + abs(v - v_true))
    assert all(e2 < e1 for e1, e2 in zip(errs, errs[1:]))
    if sde_name == "ve":
        # VE keeps the mean exact (the score vanishes at the mean) and its variance recursion
        # superconverges on Gaussian data (measured slope ~2): at least first order
        assert -slope(ns, errs) > 0.9, errs
    else:
        assert 0.8 < -slope(ns, errs) < 1.25, errs


@pytest.mark.parametrize("sde_name", list(SDES))
def test_em_moment_propagation_matches_monte_carlo(sde_name):
    """The affine moment recursion above agrees with actually running pc_sample (Monte Carlo)."""
    sde = SDES[sde_name]()
    prob = s.Gaussian([0.7], [0.3])
    model = s.ExactScoreModel(prob, sde)
    aT, sT = (float(v) for v in sde.marginal(sde.T))
    grid = uniform_time(sde, 32)
    m, v = propagate_moments(model, euler_maruyama, grid, aT * 0.7, aT**2 * 0.09 + sT**2)
    n = 40000
    noise = NoiseSource(3, (1,), n, dtype=F64)
    x = aT * 0.7 + math.sqrt(aT**2 * 0.09 + sT**2) * noise.draw()
    res = pc_sample(model, x, noise, grid=grid, predictor=euler_maruyama, corrector=None, denoise=False)
    xs = res.samples[:, 0]
    assert abs(float(xs.mean()) - m) < 4 * math.sqrt(v / n)
    assert abs(float(xs.var()) / v - 1) < 4 * math.sqrt(2 / n)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("predictor", [euler_maruyama, reverse_diffusion, ancestral_sampling])
def test_predictors_converge_to_exact_marginal(sde_name, predictor):
    """Every predictor's output moments approach the exact marginal at eps as steps grow."""
    sde = SDES[sde_name]()
    prob = s.Gaussian([0.7], [0.3])
    model = s.ExactScoreModel(prob, sde)
    aT, sT = (float(v) for v in sde.marginal(sde.T))
    a0, s0 = (float(v) for v in sde.marginal(sde.t_end))
    m_true, v_true = a0 * 0.7, a0**2 * 0.09 + s0**2
    errs = []
    for n in (50, 200, 800):
        m, v = propagate_moments(model, predictor, uniform_time(sde, n), aT * 0.7, aT**2 * 0.09 + sT**2)
        errs.append(abs(m - m_true) + abs(v / v_true - 1))
    assert errs[2] < errs[1] < errs[0] and errs[2] < 0.05, errs
    assert -slope([50, 200, 800], errs) > 0.7, errs  # at least first order


def test_ancestral_step_is_smld_step_for_ve():
    """For VE the posterior step is SMLD's: x + (s_t^2 - s_n^2) score, variance s_n^2 (s_t^2 - s_n^2) / s_t^2."""
    sde = s.VESDE()
    model = s.ExactScoreModel(s.load_problem("gmm8"), sde)
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0)) * 3
    z = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    t, tn = torch.full((5,), 0.6, dtype=F64), torch.full((5,), 0.55, dtype=F64)
    st, sn = float(sde.sigma(t[0])), float(sde.sigma(tn[0]))
    out, mean = ancestral_sampling(model, x, t, tn, z)
    ref_mean = x + (st**2 - sn**2) * model.score(x, t)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, ref_mean + math.sqrt(sn**2 * (st**2 - sn**2) / st**2) * z, rtol=1e-12, atol=1e-12)


def _whitened(n, d, seed):
    u = torch.randn(n, d, dtype=F64, generator=torch.Generator().manual_seed(seed))
    u = u - u.mean(0)
    return u / u.std(0)


@pytest.mark.parametrize("sde_name", list(SDES))
def test_ode_sampler_reproduces_gaussian_moments(sde_name):
    """Probability-flow ODE (dopri5, tight tolerance) maps the exact p_T to p_eps: mean and variance to 1e-3.

    For Gaussian data the flow is affine per coordinate, so pushing a point set with exact sample
    mean 0 and variance 1 (scaled to p_T) gives the mapped moments without Monte-Carlo error.
    """
    sde = SDES[sde_name]()
    prob = s.Gaussian([0.5, -0.25], [0.3, 0.1])
    model = s.ExactScoreModel(prob, sde)
    mT, vT = prob.marginal_moments(*sde.marginal(sde.T))
    m0, v0 = prob.marginal_moments(*sde.marginal(sde.t_end))
    x = mT + vT.sqrt() * _whitened(256, 2, 0)
    res = ode_sample(model, x, rtol=1e-7, atol=1e-7)
    assert (res.samples.mean(0) - m0).abs().max() < 1e-3
    assert (res.samples.var(0) / v0 - 1).abs().max() < 1e-3
    assert res.nfe == model.nfe


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_fixed_step_ode_orders(method, order):
    """Fixed-step Euler / Heun / RK4 on the Gaussian probability flow: fitted order 1 / 2 / 4."""
    sde = s.VPSDE()
    prob = s.Gaussian([0.5], [0.3])
    model = s.ExactScoreModel(prob, sde)
    mT, vT = prob.marginal_moments(*sde.marginal(sde.T))
    m0, v0 = prob.marginal_moments(*sde.marginal(sde.t_end))
    x = mT + vT.sqrt() * _whitened(64, 1, 1)
    ns = [16, 32, 64, 128] if order < 4 else [8, 16, 32, 64]
    errs = []
    for n in ns:
        out = ode_sample(model, x, method=method, steps=n).samples
        errs.append(float((out.mean(0) - m0).abs().max() + (out.var(0) - v0).abs().max()))
    assert abs(-slope(ns, errs) - order) < 0.35, errs


def _count_calls(model):
    calls = {"n": 0}
    fn = model.problem.score

    def counted(*a, **k):
        calls["n"] += 1
        return fn(*a, **k)

    model.problem.score = counted
    return calls


@pytest.mark.parametrize("predictor,corrector,k,expected", [
    (reverse_diffusion, langevin, 1, 2 * 7), (euler_maruyama, None, 1, 7), (None, annealed_langevin, 3, 21),
    (ancestral_sampling, annealed_langevin, 2, 7 * 3), (None, None, 1, 0)])
def test_pc_nfe_is_exact(predictor, corrector, k, expected):
    """NFE equals the number of score calls: steps * [predictor] + steps * k * [corrector]."""
    prob = s.Gaussian([0.0, 0.0], [1.0, 1.0])
    model = s.ExactScoreModel(prob, s.VPSDE())
    calls = _count_calls(model)
    if predictor is ancestral_sampling:  # ancestral uses the closed-form denoiser, counted separately
        fn = prob.denoised

        def counted(*a, **kw):
            calls["n"] += 1
            return fn(*a, **kw)

        prob.denoised = counted
    noise = NoiseSource(0, (2,), 4, dtype=F64)
    res = pc_sample(model, noise.draw(), noise, steps=7, predictor=predictor, corrector=corrector, n_corrector=k)
    assert res.nfe == expected == calls["n"]


@pytest.mark.parametrize("method,per_step", [("euler", 1), ("heun", 2), ("rk4", 4), ("dopri5", None)])
def test_ode_nfe_is_exact(method, per_step):
    prob = s.Gaussian([0.0, 0.0], [0.5, 0.5])
    model = s.ExactScoreModel(prob, s.VESDE())
    calls = _count_calls(model)
    x = torch.randn(8, 2, dtype=F64) * 50
    res = ode_sample(model, x, method=method, steps=10, rtol=1e-4, atol=1e-4)
    assert res.nfe == calls["n"]
    if per_step is not None:
        assert res.nfe == 10 * per_step
    before = model.nfe
    res2 = ode_sample(model, x, method=method, steps=10, rtol=1e-4, atol=1e-4, denoise=True)
    assert res2.nfe == res.nfe + 1 == model.nfe - before  # the Tweedie denoise is one more evaluation


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("kw", [
    dict(sampler=pc_sample, predictor=euler_maruyama, corrector=annealed_langevin, steps=40),
    dict(sampler=pc_sample, predictor=reverse_diffusion, corrector=None, steps=40),
    dict(sampler=pc_sample, predictor=ancestral_sampling, corrector=None, steps=40),
    dict(sampler=ode_sample, method="rk4", steps=10),
])
def test_seeded_samples_do_not_depend_on_batch(sde_name, kw):
    """Sample i of seed S is identical whatever the batch size and the number of samples asked for."""
    kw = dict(kw)
    sampler = kw.pop("sampler")
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    a = sample(model, 5, 11, sampler, (2,), batch_size=5, dtype=F64, **kw).samples
    b = sample(model, 23, 11, sampler, (2,), batch_size=4, dtype=F64, **kw).samples
    torch.testing.assert_close(a, b[:5], rtol=0, atol=0)
    c = sample(model, 5, 12, sampler, (2,), batch_size=5, dtype=F64, **kw).samples
    assert (a - c).abs().min() > 0


def test_pc_sampler_hits_mixture_weights_and_spread():
    """PC (reverse diffusion + Langevin) on the sharp 8-mode mixture: weights and spreads in closed form."""
    prob = s.load_problem("gmm8")
    model = s.ExactScoreModel(prob, s.VESDE())
    res = sample(model, 6000, 0, pc_sample, (2,), batch_size=6000, dtype=F64, steps=400, snr=0.16)
    rep = mixture_report(prob, res.samples)
    assert rep.tv < 3 * rep.tv_noise
    assert ((rep.spread_ratio - 1).abs() < 0.08).all(), rep.spread_ratio


def test_langevin_corrector_beats_predictor_alone():
    """On a sharp 0.8/0.2 mixture (VE, 20 reverse-diffusion steps), adding 5 Langevin corrector steps per
    predictor step brings the light-mode weight and the within-mode spread closer to the closed form.

    Measured (seed 0, 8000 samples): light weight 0.282 -> 0.263 (true 0.2); spread ratio 1.28 -> 1.04."""
    prob = s.load_problem("gmm2")
    model = s.ExactScoreModel(prob, s.VESDE())
    reps = {}
    for name, corr in [("p", None), ("pc", langevin)]:
        res = sample(model, 8000, 0, pc_sample, (2,), batch_size=8000, dtype=F64, steps=20,
                     predictor=reverse_diffusion, corrector=corr, snr=0.16, n_corrector=5)
        reps[name] = mixture_report(prob, res.samples)
    w_err = {k: abs(float(r.weights[1]) - 0.2) for k, r in reps.items()}
    spread_err = {k: float((r.spread_ratio - 1).abs().max()) for k, r in reps.items()}
    assert spread_err["pc"] < 0.5 * spread_err["p"], spread_err
    assert w_err["pc"] < w_err["p"], w_err
