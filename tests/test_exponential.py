"""Deterministic exponential integrators and EDM Heun against the closed-form probability-flow solution."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import SDES, assert_batch_invariant, count_exact_calls, slope

import scoresde as s
from scoresde.brownian import NoiseSource
from scoresde.parameterization import NetworkModel
from scoresde.samplers import ddim, dpmpp_2m, edm_heun, etd_erk, etd_erk_1, etd_erk_2, etd_erk_3, make_grid, seeds
from scoresde.samplers.edm import edm_step
from scoresde.samplers.exponential import TABLEAUX, ddim_step, exponential_step, exponential_tableau

F64 = torch.float64


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
@pytest.mark.parametrize("method", [etd_erk_1, etd_erk_2, etd_erk_3], ids=lambda m: m.__name__)
@pytest.mark.parametrize("prediction", ["data", "noise"])
def test_etd_erk_order(sde_name, method, prediction):
    """ETD-ERK-k (DPM-Solver++ / DPM-Solver singlestep) on the log-SNR grid: fitted global order = the declared one.

    Measured slopes (VP, data form, 64-256 steps): 0.98 / 2.00 / 2.9; the data-form order 3 reaches its
    asymptote late (error cancellation below 32 steps), hence the fit over the finest grids."""
    model, x, exact = flow_problem(SDES[sde_name]())
    ns = [64, 128, 256]
    errs = errors(lambda n: method(model, x, steps=n, grid="logsnr", prediction=prediction), exact, ns)
    assert abs(-slope(ns, errs) - method.order_deterministic) < 0.3, errs


@pytest.mark.parametrize("tab", [TABLEAUX["exp2-phi1"], exponential_tableau(2, r1=0.3), exponential_tableau(3, r1=0.2),
                                 exponential_tableau(3, r1=0.25, r2=0.5)], ids=lambda t: t.name)
@pytest.mark.parametrize("prediction", ["data", "noise"])
def test_chosen_tableau_reaches_its_declared_order(tab, prediction):
    """A tableau built from chosen stage fractions declares what its stages reach: order 3 needs r2 = 2/3, any r1
    (measured 2.97-3.03 for r1 = 0.2; 1.99-2.01 for r2 = 0.5; 1.9-2.1 for the order-2 ones)."""
    model, x, exact = flow_problem(s.VPSDE())
    ns = [64, 128, 256]
    errs = errors(lambda n: etd_erk(model, x, steps=n, grid="logsnr", prediction=prediction, tableau=tab), exact, ns)
    assert abs(-slope(ns, errs) - tab.order_deterministic) < 0.3, errs


@pytest.mark.parametrize("sde_name", list(SDES))
def test_dpmpp_2m_order_two(sde_name):
    """DPM-Solver++(2M) (one NFE a step, order-1 first step): fitted order 2 (measured 1.9-2.0)."""
    model, x, exact = flow_problem(SDES[sde_name]())
    ns = [64, 128, 256]
    errs = errors(lambda n: dpmpp_2m(model, x, steps=n, grid="logsnr"), exact, ns)
    assert abs(-slope(ns, errs) - dpmpp_2m.order_deterministic) < 0.25, errs


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("grid", ["edm", "logsnr"])
def test_edm_heun_without_churn_order_two(sde_name, grid):
    """EDM Heun (Karras et al. Alg. 1) in the scaled variable x / alpha: fitted order 2 (measured 2.1)."""
    model, x, exact = flow_problem(SDES[sde_name]())
    ns = [16, 32, 64]
    errs = errors(lambda n: edm_heun(model, x, steps=n, grid=grid), exact, ns)
    assert abs(-slope(ns, errs) - edm_heun.order_deterministic) < 0.25, errs


@pytest.mark.parametrize("sde_name", list(SDES))
def test_order_one_forms_agree_and_equal_ddim(sde_name):
    """ETD-ERK-1 in data form, in noise form and DDIM(eta=0) are the same map (Lu et al. 2022b, eq. 10)."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    x = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(0)) * float(model.sde.prior_std)
    a = etd_erk(model, x, order=1, steps=9, grid="logsnr").samples
    b = etd_erk(model, x, order=1, steps=9, grid="logsnr", prediction="noise").samples
    c = ddim(model, x, steps=9, grid="logsnr", eta=0.0).samples
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
    assert abs(-slope(ns, errs) - edm_heun.order_weak) < 0.3, errs


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


def test_edm_callback_reports_the_churned_sigma_hat():
    """With churn the callback's sigma_hat is the level the denoiser saw, sigma (1 + gamma); sigma outside
    [S_tmin, S_tmax] is not churned (sigma_hat = sigma)."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    noise = NoiseSource(0, (2,), 3, dtype=F64)
    x = model.sde.prior_sample(noise.draw())
    steps, S_churn, lo, hi = 8, 6.0, 0.1, 10.0
    seen = []
    edm_heun(model, x, noise, steps=steps, S_churn=S_churn, S_tmin=lo, S_tmax=hi, callback=seen.append)
    gamma = min(S_churn / steps, math.sqrt(2) - 1)
    assert [st["i"] for st in seen] == list(range(steps))
    churned = 0
    for st in seen:
        sig = float(st["sigma"])
        g = gamma if lo <= sig <= hi else 0.0
        assert float(st["sigma_hat"]) == pytest.approx(sig * (1 + g), rel=1e-12)
        churned += g > 0
    assert 0 < churned < steps


FAMILY = {
    "seeds": lambda m, x, n, **k: seeds(m, x, n, order=3, steps=4, prediction="noise", **k),
    "etd": lambda m, x, n, **k: etd_erk(m, x, order=2, steps=4, **k),
    "dpmpp2m": lambda m, x, n, **k: dpmpp_2m(m, x, steps=4, **k),
    "ddim": lambda m, x, n, **k: ddim(m, x, n, steps=4, eta=0.5, **k),
    "edm": lambda m, x, n, **k: edm_heun(m, x, n, steps=4, S_churn=5.0, **k),
}


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2, dtype=F64)

    def forward(self, x, c):
        return self.lin(torch.cat([x, c[:, None].to(x)], dim=-1))


def _no_history(t):
    return not t.requires_grad and t.grad_fn is None


@pytest.mark.parametrize("name", list(FAMILY))
def test_samplers_leave_no_autograd_history(name):
    """A network whose parameters require grad, and an x_T that does: no sample carries autograd history."""
    model = NetworkModel(_Net(), s.VPSDE(), "eps")
    assert all(p.requires_grad for p in model.net.parameters())
    noise = NoiseSource(0, (2,), 3, dtype=F64)
    x = model.sde.prior_sample(noise.draw()).requires_grad_()
    assert _no_history(FAMILY[name](model, x, noise, denoise=True).samples)


def test_steps_called_directly_leave_no_autograd_history():
    model = NetworkModel(_Net(), s.VPSDE(), "eps")
    x = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    t_s, t_t = torch.full((3,), 0.6, dtype=F64), torch.full((3,), 0.4, dtype=F64)
    xi = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    outs = [*exponential_step(model, x, t_s, t_t, TABLEAUX["exp3"], eta=1.0, draw=lambda a, b: xi),
            *ddim_step(model, x, t_s, t_t, xi, eta=0.5), *edm_step(model, x, t_s, t_t, 0.2, xi)]
    assert all(_no_history(o) for o in outs)


def test_callback_keys_are_the_same_for_every_sampler():
    """seeds / etd / dpmpp2m / ddim / edm pass the contract's callback_state keys, once per step, denoised set."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    keys = set()
    for name, run in FAMILY.items():
        noise = NoiseSource(0, (2,), 3, dtype=F64)
        x = model.sde.prior_sample(noise.draw())
        seen = []
        run(model, x, noise, callback=seen.append)
        assert [st["i"] for st in seen] == [0, 1, 2, 3], name
        assert all(st["denoised"] is not None and st["denoised"].shape == x.shape for st in seen), name
        keys |= {frozenset(st) for st in seen}
    assert keys == {frozenset({"i", "x", "t", "sigma", "sigma_hat", "denoised"})}
