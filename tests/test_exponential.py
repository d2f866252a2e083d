"""Deterministic exponential integrators and EDM Heun against the closed-form probability-flow solution."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import scoresde as s
from scoresde.brownian import NoiseSource
from scoresde.samplers.edm import edm_heun, edm_step
from scoresde.samplers.exponential import ddim, dpmpp_2m, etd_erk, make_grid

SDES = {"ve": s.VESDE, "vp": s.VPSDE, "subvp": s.SubVPSDE}
from helpers import assert_batch_invariant, count_exact_calls

F64 = torch.float64


def slope(ns, errs) -> float:
    return float(np.polyfit(np.log(ns), np.log(errs), 1)[0])


def flow_problem(sde):
    """Gaussian data, three start points in p_T and their exact images at eps under the probability flow.

    For 1-D Gaussian data the flow map is the monotone transport (x - m_t) / sd_t = const.
    """
    prob = s.Gaussian([0.7], [0.3])
    model = s.ExactScoreModel(prob, sde)
    mT, vT = prob.marginal_moments(*sde.marginal(sde.T))
    m0, v0 = prob.marginal_moments(*sde.marginal(sde.t_end))
    z = torch.tensor([[-2.0], [0.3], [1.5]], dtype=F64)
    return model, mT + vT.sqrt() * z, m0 + v0.sqrt() * z


def errors(run, exact, ns):
    return [float((run(n).samples - exact).abs().max()) for n in ns]


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("prediction", ["data", "noise"])
def test_etd_erk_order(sde_name, order, prediction):
    """ETD-ERK-k (DPM-Solver++ / DPM-Solver singlestep) on the log-SNR grid: fitted global order k.

    Measured slopes (VP, data form, 64-256 steps): 0.98 / 2.00 / 2.9; the data-form order 3 reaches its
    asymptote late (error cancellation below 32 steps), hence the fit over the finest grids."""
    model, x, exact = flow_problem(SDES[sde_name]())
    ns = [64, 128, 256]
    errs = errors(lambda n: etd_erk(model, x, order=order, steps=n, prediction=prediction), exact, ns)
    assert abs(-slope(ns, errs) - order) < 0.3, errs


@pytest.mark.parametrize("sde_name", list(SDES))
def test_dpmpp_2m_order_two(sde_name):
    """DPM-Solver++(2M) (one NFE a step, order-1 first step): fitted order 2 (measured 1.9-2.0)."""
    model, x, exact = flow_problem(SDES[sde_name]())
    ns = [64, 128, 256]
    errs = errors(lambda n: dpmpp_2m(model, x, steps=n), exact, ns)
    assert abs(-slope(ns, errs) - 2) < 0.25, errs


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("grid", ["edm", "logsnr"])
def test_edm_heun_without_churn_order_two(sde_name, grid):
    """EDM Heun (Karras et al. Alg. 1) in the scaled variable x / alpha: fitted order 2 (measured 2.1)."""
    model, x, exact = flow_problem(SDES[sde_name]())
    ns = [16, 32, 64]
    errs = errors(lambda n: edm_heun(model, x, steps=n, grid=grid), exact, ns)
    assert abs(-slope(ns, errs) - 2) < 0.25, errs


@pytest.mark.parametrize("sde_name", list(SDES))
def test_order_one_forms_agree_and_equal_ddim(sde_name):
    """ETD-ERK-1 in data form, in noise form and DDIM(eta=0) are the same map (Lu et al. 2022b, eq. 10)."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    x = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(0)) * float(model.sde.prior_std)
    a = etd_erk(model, x, order=1, steps=9).samples
    b = etd_erk(model, x, order=1, steps=9, prediction="noise").samples
    c = ddim(model, x, steps=9, eta=0.0).samples
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


def test_edm_churn_converges_to_exact_variance():
    """EDM with churn (S_churn = 10, S_noise = 1) on Gaussian data: the exact moment recursion of its affine
    step approaches the true marginal at eps at second order in the variance (measured 2.0)."""
    sde = s.VPSDE()
    prob = s.Gaussian([0.7], [0.3])
    model = s.ExactScoreModel(prob, sde)
    mT, vT = (float(v) for v in prob.marginal_moments(*sde.marginal(sde.T)))
    m0, v0 = (float(v) for v in prob.marginal_moments(*sde.marginal(sde.t_end)))
    ns, errs = [16, 32, 64], []
    for n in ns:
        grid = make_grid(sde, n, "edm")
        gamma = min(10.0 / n, math.sqrt(2) - 1)
        m, v = mT, vT
        for i in range(n):
            x = torch.tensor([[m], [0.0], [1.0], [0.0]], dtype=F64)
            xi = torch.tensor([[0.0], [0.0], [0.0], [1.0]], dtype=F64)
            out, _ = edm_step(model, x, grid[i].expand(4), grid[i + 1].expand(4), gamma, xi)
            out = out[:, 0]
            m, v = float(out[0]), float((out[2] - out[1]) ** 2 * v + (out[3] - out[1]) ** 2)
        errs.append(abs(m - m0) + abs(v - v0))
    assert abs(-slope(ns, errs) - 2) < 0.3, errs


@pytest.mark.parametrize("run,per_step", [
    (lambda m, x, n, **k: etd_erk(m, x, order=1, steps=7, **k), 1),
    (lambda m, x, n, **k: etd_erk(m, x, order=2, steps=7, **k), 2),
    (lambda m, x, n, **k: etd_erk(m, x, order=3, steps=7, **k), 3),
    (lambda m, x, n, **k: etd_erk(m, x, order=3, steps=7, prediction="noise", **k), 3),
    (lambda m, x, n, **k: dpmpp_2m(m, x, steps=7, **k), 1),
    (lambda m, x, n, **k: ddim(m, x, n, steps=7, eta=0.5, **k), 1),
    (lambda m, x, n, **k: edm_heun(m, x, n, steps=7, S_churn=5.0, **k), 2),
])
def test_nfe_is_exact(run, per_step):
    """NFE = per-step cost * steps, +1 for the counted final Tweedie denoise; equal to the closed-form calls."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    calls = count_exact_calls(model)
    noise = NoiseSource(0, (2,), 4, dtype=F64)
    x = noise.draw()
    res = run(model, x, noise)
    assert res.nfe == 7 * per_step == calls["n"]
    res = run(model, x, noise, denoise=True)
    assert res.nfe == 7 * per_step + 1 == calls["n"] - 7 * per_step


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("kw", [{"sampler": ddim, "eta": 0.7, "steps": 12}, {"sampler": edm_heun, "S_churn": 8.0, "steps": 8},
                                {"sampler": etd_erk, "order": 3, "steps": 5}])
def test_samples_do_not_depend_on_batch(sde_name, kw):
    kw = dict(kw)
    sampler = kw.pop("sampler")
    assert_batch_invariant(s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]()), sampler, **kw)


def test_bad_input_is_one_clear_error():
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    x = torch.zeros(2, 2, dtype=F64)
    with pytest.raises(ValueError, match="unknown grid"):
        etd_erk(model, x, grid="cosine")
    with pytest.raises(ValueError, match="order must be"):
        etd_erk(model, x, order=4)
    with pytest.raises(ValueError, match="steps must be"):
        dpmpp_2m(model, x, steps=0)
    with pytest.raises(ValueError, match="needs a NoiseSource"):
        ddim(model, x, eta=0.5)
    with pytest.raises(ValueError, match="decreasing"):
        etd_erk(model, x, grid=torch.tensor([0.1, 0.5]))
