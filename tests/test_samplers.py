"""Samplers against closed-form truth: convergence orders, exact moments, mixtures, NFE, seeding."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import SDES, slope

import scoresde as s
from scoresde.brownian import NoiseSource
from scoresde.parameterization import NetworkModel
from scoresde.quality import mixture_report
from scoresde.samplers import (
    ancestral_sampling,
    annealed_langevin,
    euler_maruyama,
    langevin,
    ode_sample,
    pc_sample,
    reverse_diffusion,
    sample,
)
from scoresde.samplers.pc import default_snr
from scoresde.schedules import uniform_time
from scoresde.sde import SigmaSDE

F64 = torch.float64


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
    res = pc_sample(model, x, noise, grid=grid, predictor=euler_maruyama, corrector=None, final_mean=False)
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


# ---- the Langevin corrector's step size (Song et al. Algorithm 5) ------------------------------------------
@pytest.mark.parametrize("sde_name", ["ve", "vp"])
def test_langevin_step_is_algorithm_5(sde_name):
    """One corrector step against the hand-computed Algorithm 5: eps = 2 alpha_i (r ||z|| / ||s||)^2 with the
    norms averaged over the batch (score_sde_pytorch), x_mean = x + eps s, x = x_mean + sqrt(2 eps) z."""
    sde = SDES[sde_name]()
    prob = s.Gaussian([0.3, -0.2, 0.1], [0.5, 0.2, 0.8])
    model = s.ExactScoreModel(prob, sde)
    g = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(6, 3, generator=g, dtype=F64)
    z = torch.randn(6, 3, generator=g, dtype=F64)
    t, snr = 0.4, 0.16
    out, mean = langevin(model, x, torch.full((6,), t, dtype=F64), z, snr)
    # the exact score and alpha_i by hand (VE: 1; VP: 1 - beta(t) / N)
    alpha_t, sigma_t = (float(v) for v in sde.marginal(t))
    var = alpha_t**2 * torch.tensor([0.5, 0.2, 0.8], dtype=F64) ** 2 + sigma_t**2
    score = -(x - alpha_t * torch.tensor([0.3, -0.2, 0.1], dtype=F64)) / var
    alpha_i = 1.0 if sde_name == "ve" else 1 - (0.1 + t * (20.0 - 0.1)) / 1000
    ratio = float(z.norm(dim=1).mean()) / float(score.norm(dim=1).mean())
    eps = 2 * alpha_i * (snr * ratio) ** 2
    torch.testing.assert_close(mean, x + eps * score, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out - mean, math.sqrt(2 * eps) * z, rtol=1e-12, atol=1e-14)
    assert model.nfe == 1


def test_annealed_langevin_step_is_per_sample():
    """Annealed Langevin (Song & Ermon 2019): eps = 2 alpha_i (r sigma_t)^2 per sample, whatever the batch."""
    sde = s.VPSDE()
    prob = s.Gaussian([0.3, -0.2], [0.5, 0.2])
    model = s.ExactScoreModel(prob, sde)
    g = torch.Generator().manual_seed(1)
    x, z = torch.randn(4, 2, generator=g, dtype=F64), torch.randn(4, 2, generator=g, dtype=F64)
    t = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=F64)
    out, mean = annealed_langevin(model, x, t, z, 0.05)
    alpha, sigma = sde.marginal(t)
    eps = 2 * (1 - (0.1 + t * 19.9) / 1000) * (0.05 * sigma) ** 2
    score = prob.score(x, alpha, sigma)
    torch.testing.assert_close(mean, x + eps[:, None] * score, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out - mean, torch.sqrt(2 * eps)[:, None] * z, rtol=1e-12, atol=1e-14)


# ---- the sampler contract (samplers/base.py) for PC and the ODE ---------------------------------------------
def _net_model(sde):
    """A network model whose parameters require grad (as a trained net's do)."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2).double()

    def fn(x, c):
        return net(torch.cat([x, c[:, None].to(x.dtype)], 1))

    return NetworkModel(fn, sde, "eps"), net


@pytest.mark.parametrize("sampler,kw", [(pc_sample, dict(steps=5)), (pc_sample, dict(steps=5, denoise=True)),
                                        (ode_sample, dict(method="euler", steps=5)),
                                        (ode_sample, dict(method="dopri5", rtol=1e-3, atol=1e-3, denoise=True))])
def test_samplers_keep_no_autograd_history(sampler, kw):
    """Called directly (not through sample()), a sampler runs under no_grad: no graph on the output."""
    model, net = _net_model(s.VPSDE())
    assert all(p.requires_grad for p in net.parameters())
    noise = NoiseSource(0, (2,), 4, dtype=F64)
    out = sampler(model, noise.draw(), noise, **kw).samples
    assert out.grad_fn is None and not out.requires_grad


def test_pc_final_mean_and_denoise():
    """final_mean (default) is the last step's mean, no NFE; denoise is one Tweedie step D(x, t_end), one NFE."""
    sde = s.VPSDE()
    model = s.ExactScoreModel(s.load_problem("gmm8"), sde)
    kw = dict(steps=6, predictor=reverse_diffusion, corrector=langevin)

    def run(**k):
        noise = NoiseSource(2, (2,), 5, dtype=F64)
        return pc_sample(model, noise.draw(), noise, **kw, **k)

    default, mean, noisy = run(), run(final_mean=True), run(final_mean=False)
    assert torch.equal(default.samples, mean.samples) and default.nfe == mean.nfe == noisy.nfe == 12
    assert (mean.samples - noisy.samples).abs().min() > 0
    t_end = torch.full((5,), sde.t_end, dtype=F64)
    tweedie = run(final_mean=False, denoise=True)
    assert tweedie.nfe == 13
    torch.testing.assert_close(tweedie.samples, model.denoised(noisy.samples, t_end), rtol=0, atol=0)
    both = run(denoise=True)  # the Tweedie step applies to whichever end state is returned
    assert both.nfe == 13
    torch.testing.assert_close(both.samples, model.denoised(mean.samples, t_end), rtol=0, atol=0)


def test_pc_callback_and_progress(capsys):
    """callback(state) after every predictor step: step i, x and t before it, sigma at t, denoised None."""
    sde = s.VESDE()
    model = s.ExactScoreModel(s.load_problem("gmm8"), sde)
    grid = uniform_time(sde, 5)
    seen = []
    noise = NoiseSource(0, (2,), 3, dtype=F64)
    x = noise.draw()
    res = pc_sample(model, x, noise, grid=grid, final_mean=False, callback=seen.append, progress=True)
    assert "pc" in capsys.readouterr().err
    assert [d["i"] for d in seen] == list(range(5))
    assert torch.equal(seen[0]["x"], x)
    for i, d in enumerate(seen):
        assert torch.equal(d["t"], grid[i].expand(3)) and torch.equal(d["t_next"], grid[i + 1].expand(3))
        assert torch.equal(d["sigma"], sde.sigma(d["t"])) and torch.equal(d["sigma_hat"], d["sigma"])
        assert d["denoised"] is None
    noise = NoiseSource(0, (2,), 3, dtype=F64)
    ref = pc_sample(model, noise.draw(), noise, grid=grid, final_mean=False)
    assert torch.equal(ref.samples, res.samples)  # neither the callback nor the bar changes the result
    for k in range(1, 5):  # the state before step k is what the first k steps give
        noise = NoiseSource(0, (2,), 3, dtype=F64)
        part = pc_sample(model, noise.draw(), noise, grid=grid[: k + 1], final_mean=False)
        assert torch.equal(seen[k]["x"], part.samples)


@pytest.mark.parametrize("sde_name", list(SDES))
def test_pc_default_snr_is_the_cli_rule(sde_name):
    """snr=None: 0.16 for VE, 0.01 for VP / sub-VP (score_sde_pytorch's configs, the CLI's rule)."""
    sde = SDES[sde_name]()
    want = 0.16 if sde_name == "ve" else 0.01
    assert default_snr(sde) == want
    model = s.ExactScoreModel(s.load_problem("gmm8"), sde)

    def run(**k):
        noise = NoiseSource(1, (2,), 4, dtype=F64)
        return pc_sample(model, noise.draw(), noise, steps=5, **k).samples

    assert torch.equal(run(), run(snr=want))
    assert not torch.equal(run(), run(snr=0.16 if want == 0.01 else 0.01))
    assert default_snr(SigmaSDE(80.0, 0.002)) == 0.16  # k-diffusion's sigma SDE is a VE


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
def test_ode_fixed_step_callback_and_progress(method, capsys):
    sde = s.VPSDE()
    model = s.ExactScoreModel(s.load_problem("gmm8"), sde)
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    grid = uniform_time(sde, 6)
    seen = []
    res = ode_sample(model, x, method=method, grid=grid, callback=seen.append, progress=True)
    assert "ode" in capsys.readouterr().err
    assert torch.equal(res.samples, ode_sample(model, x, method=method, grid=grid).samples)
    assert [d["i"] for d in seen] == list(range(6)) and torch.equal(seen[0]["x"], x)
    for i, d in enumerate(seen):
        assert torch.equal(d["t"], grid[i].expand(4)) and torch.equal(d["t_next"], grid[i + 1].expand(4))
        assert torch.equal(d["sigma"], sde.sigma_tilde(d["t"])) and d["denoised"] is None
        if i:  # x before step i is the result of steps 0..i-1
            torch.testing.assert_close(d["x"], ode_sample(model, x, method=method, grid=grid[: i + 1]).samples,
                                       rtol=0, atol=0)


def test_ode_dopri5_callback_reports_every_attempt():
    """dopri5: one callback per attempt (torchdiffeq's accept / reject callbacks); the accepted steps tile [t_end, T]."""
    sde = s.VPSDE()
    model = s.ExactScoreModel(s.load_problem("gmm8"), sde)
    x = sde.prior_sample(torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(0)))
    seen = []
    res = ode_sample(model, x, rtol=1e-4, atol=1e-4, callback=seen.append)
    assert torch.equal(res.samples, ode_sample(model, x, rtol=1e-4, atol=1e-4).samples)
    assert [d["i"] for d in seen] == list(range(len(seen)))
    acc = [d for d in seen if d["accepted"]]
    assert len(acc) < len(seen)  # this run has rejections: they are reported too
    assert res.nfe == 6 * len(seen) + 1  # dopri5: the first evaluation, then 6 an attempt (FSAL)
    t = [float(d["t"][0]) for d in acc]
    assert t[0] == sde.T and all(a > b for a, b in zip(t, t[1:]))
    for a, b in zip(acc, acc[1:]):
        assert float(a["t"][0]) - a["h"] == pytest.approx(float(b["t"][0]), rel=1e-12)
    assert float(acc[-1]["t"][0]) - acc[-1]["h"] == pytest.approx(sde.t_end, abs=1e-12)
    assert torch.equal(seen[0]["x"], x) and all(d["denoised"] is None for d in seen)
