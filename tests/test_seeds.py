"""SEEDS-1/2/3 against closed-form truth: identities, exact moment propagation, weak orders, NFE, seeding."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from helpers import SDES, assert_batch_invariant, count_exact_calls, slope

import scoresde as s
from scoresde.brownian import NoiseSource
from scoresde.samplers import ancestral_sampling, ddim, etd_erk, make_grid, pc_sample, seeds, seeds_1, seeds_2, seeds_3
from scoresde.samplers.exponential import TABLEAUX, ExponentialTableau, exponential_step, exponential_tableau

F64 = torch.float64


def _prior(model, n, seed):
    noise = NoiseSource(seed, (2,), n, dtype=F64)
    return model.sde.prior_sample(noise.draw()), noise


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("grid", ["time", "logsnr"])
def test_seeds1_is_the_ancestral_step(sde_name, grid):
    """SEEDS-1 (data form, eta = 1) is algebraically the DDPM ancestral / posterior step: same noise, same samples.

    DDIM(eta = 1) is the same step again."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    g = make_grid(model.sde, 25, grid)
    x, n1 = _prior(model, 8, 3)
    _, n2 = _prior(model, 8, 3)
    _, n3 = _prior(model, 8, 3)
    a = seeds(model, x, n1, order=1, grid=g, eta=1.0).samples
    b = pc_sample(model, x, n2, grid=g, predictor=ancestral_sampling, corrector=None, final_mean=False).samples
    c = ddim(model, x, n3, grid=g, eta=1.0).samples
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("order,prediction,variant", [
    (1, "data", "taylor"), (2, "data", "taylor"), (2, "data", "phi1"), (3, "data", "taylor"),
    (2, "noise", "taylor"), (2, "noise", "phi1"), (3, "noise", "taylor")])
def test_seeds_at_eta_zero_is_etd_erk(sde_name, order, prediction, variant):
    """SEEDS-k at eta = 0 (written in the eta-generalised stage form) equals ETD-ERK-k (written in DPM-Solver form)."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    x, _ = _prior(model, 6, 0)
    a = seeds(model, x, None, order=order, steps=6, grid="logsnr", eta=0.0, prediction=prediction, variant=variant).samples
    b = etd_erk(model, x, order=order, steps=6, grid="logsnr", prediction=prediction, variant=variant).samples
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def propagate(model, grid, m, v, order, eta, prediction="data"):
    """Exact mean/variance after a SEEDS-k run on 1-D Gaussian data (the step is affine in x and the xi's).

    Rows: (m, xi = 0), (0, 0), (1, 0), (0, e_j) reveal x' = A x + b + sum_j C_j xi_j; so m' = A m + b and
    v' = A^2 v + sum_j C_j^2, with the k normals of a step shared by its stages as in the sampler.
    ``order`` is k or a tableau."""
    tab = order if isinstance(order, ExponentialTableau) else exponential_tableau(order)
    k = tab.stages
    for i in range(len(grid) - 1):
        rows = 3 + k
        x = torch.zeros(rows, 1, dtype=F64)
        x[0], x[2] = m, 1.0
        xis = [torch.zeros(rows, 1, dtype=F64) for _ in range(k)]
        for j in range(k):
            xis[j][3 + j] = 1.0
        it = iter(xis)
        out, _ = exponential_step(model, x, grid[i].expand(rows), grid[i + 1].expand(rows), tab, eta=eta,
                                  prediction=prediction, draw=lambda a, b, _it=it: next(_it))
        out = out[:, 0]
        m, v = out[0], (out[2] - out[1]) ** 2 * v + ((out[3:] - out[1]) ** 2).sum()
    return float(m), float(v)


def _gauss(sde):
    prob = s.Gaussian([0.7], [0.3])
    mT, vT = (float(u) for u in prob.marginal_moments(*sde.marginal(sde.T)))
    m0, v0 = (float(u) for u in prob.marginal_moments(*sde.marginal(sde.t_end)))
    return s.ExactScoreModel(prob, sde), mT, vT, m0, v0


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("order", [1, 2, 3])
def test_seeds_weak_order_data_form(sde_name, order):
    """Weak error of the variance at eps (exact moment propagation, eta = 1, log-SNR grid): the tableau's declared
    weak order, SEEDS-1/2/3 ~ 1/2/2.

    The mean is exact for every k (the Gaussian mean path is a fixed point of the affine step). SEEDS-3 is
    not third order weakly: the stage noise makes D(x_lambda) only Holder-1/2 in lambda, and the iterated
    integrals int int dW dlambda that its stages would need are not matched (measured 0.95 / 1.99 / 1.8-2.0,
    approaching 2 from below; design.md measured the same 1/2/2)."""
    expected = exponential_tableau(order).order_weak
    model, mT, vT, m0, v0 = _gauss(SDES[sde_name]())
    ns = [64, 128, 256] if order < 3 else [128, 256, 512]
    errs = []
    for n in ns:
        m, v = propagate(model, make_grid(model.sde, n), mT, vT, order, 1.0)
        assert abs(m - m0) < 1e-12
        errs.append(abs(v - v0))
    assert abs(-slope(ns, errs) - expected) < 0.3, errs


#: what the noise form gains over the declared weak order on Gaussian data (VP), measured 1.9 / 3.3 / 2.2 against
#: 1 / 2 / 2, less margin: a property of Gaussian data, not an order of the method
NOISE_FORM_EXCESS = {1: 0.7, 2: 0.8, 3: -0.1}


@pytest.mark.parametrize("order", [1, 2, 3])
def test_seeds_noise_form_converges_at_least_as_fast(order):
    """Noise-form SEEDS on Gaussian data (VP): weak variance order >= the data form's (measured 1.9 / 3.3 / 2.2)."""
    model, mT, vT, _m0, v0 = _gauss(s.VPSDE())
    ns = [64, 128, 256]
    errs = [abs(propagate(model, make_grid(model.sde, n), mT, vT, order, 1.0, "noise")[1] - v0) for n in ns]
    assert -slope(ns, errs) > exponential_tableau(order).order_weak + NOISE_FORM_EXCESS[order], errs


@pytest.mark.parametrize("eta", [0.3, 1.0])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_seeds_monte_carlo_matches_moment_propagation(eta, order):
    """Running seeds() with a NoiseSource reproduces the propagated mean/variance (validates the noise wiring)."""
    sde = s.VPSDE()
    model, mT, vT, _, _ = _gauss(sde)
    g = make_grid(sde, 6)
    m, v = propagate(model, g, mT, vT, order, eta)
    n = 20000
    noise = NoiseSource(5, (1,), n, dtype=F64)
    x = mT + math.sqrt(vT) * noise.draw()
    xs = seeds(model, x, noise, order=order, grid=g, eta=eta).samples[:, 0]
    assert abs(float(xs.mean()) - m) < 4 * math.sqrt(v / n)
    assert abs(float(xs.var()) / v - 1) < 4 * math.sqrt(2 / n)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("order", [1, 2, 3])
def test_linear_part_and_noise_are_exact(sde_name, order):
    """For point-mass data (D = 0) the data-form SEEDS step is the exact transition: variance sigma_eps^2
    after 3 steps, whatever k (the noise form treats eps = x / sigma as the nonlinearity, so it is not exact)."""
    sde = SDES[sde_name]()
    model = s.ExactScoreModel(s.Gaussian([0.0], [0.0]), sde)
    sT, se = float(sde.sigma(sde.T)), float(sde.sigma(sde.t_end))
    aT, ae = float(sde.alpha(sde.T)), float(sde.alpha(sde.t_end))
    # start from p_T of the point mass (variance sigma_T^2; the VE prior_std equals sigma_T)
    _, v = propagate(model, make_grid(sde, 3), 0.0, sT**2, order, 1.0)
    assert abs(v / se**2 - 1) < 1e-10, (v, se**2, aT, ae)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("prediction", ["data", "noise"])
def test_seeds_nfe_is_exact(order, prediction):
    """NFE = order * steps (+1 for the counted Tweedie denoise), and each step takes `order` draws."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.SubVPSDE())
    calls = count_exact_calls(model)
    x, noise = _prior(model, 4, 0)
    res = seeds(model, x, noise, order=order, steps=5, prediction=prediction)
    assert res.nfe == 5 * order == calls["n"]
    assert noise.count == 1 + 5 * order
    res = seeds(model, x, noise, order=order, steps=5, prediction=prediction, denoise=True)
    assert res.nfe == 5 * order + 1 == calls["n"] - 5 * order


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("order,eta", [(1, 1.0), (2, 0.5), (3, 1.0)])
def test_seeds_samples_do_not_depend_on_batch(sde_name, order, eta):
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    assert_batch_invariant(model, seeds, order=order, eta=eta, steps=6)


def test_seeds_rejects_bad_options():
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    x, noise = _prior(model, 2, 0)
    with pytest.raises(ValueError, match="eta must lie"):
        seeds(model, x, noise, eta=1.5)
    with pytest.raises(ValueError, match="prediction must be"):
        seeds(model, x, noise, prediction="v")
    with pytest.raises(ValueError, match="r1 < r2"):
        seeds(model, x, noise, order=3, r1=0.7, r2=0.5)


@pytest.mark.parametrize("tab", [TABLEAUX["exp2-phi1"], exponential_tableau(2, r1=0.3), exponential_tableau(3, r1=0.2),
                                 exponential_tableau(3, r1=0.25, r2=0.5)], ids=lambda t: t.name)
def test_chosen_tableau_weak_order(tab):
    """Chosen stage fractions and the phi1 weight keep the declared weak order (VP, eta = 1; measured 1.92-1.97)."""
    model, mT, vT, _m0, v0 = _gauss(s.VPSDE())
    ns = [64, 128, 256] if tab.stages < 3 else [128, 256, 512]
    errs = [abs(propagate(model, make_grid(model.sde, n), mT, vT, tab, 1.0)[1] - v0) for n in ns]
    assert abs(-slope(ns, errs) - tab.order_weak) < 0.3, errs


def test_methods_declare_their_tableau_orders():
    """seeds_k / etd_erk_k carry the orders of tableau exp{k}; chosen r1 / r2 declare what their stages reach."""
    from scoresde.samplers import etd_erk_1, etd_erk_2, etd_erk_3

    for k, sk, ek in [(1, seeds_1, etd_erk_1), (2, seeds_2, etd_erk_2), (3, seeds_3, etd_erk_3)]:
        tab = exponential_tableau(k)
        assert tab is TABLEAUX[f"exp{k}"] and tab.stages == k
        assert (sk.order_deterministic, sk.order_weak) == (tab.order_deterministic, tab.order_weak)
        assert (ek.order_deterministic, ek.order_weak) == (tab.order_deterministic, None)
    assert exponential_tableau(2, "phi1") is TABLEAUX["exp2-phi1"]
    assert exponential_tableau(3, r1=0.2).c == (0.2, 2 / 3) and exponential_tableau(3, r1=0.2).order_deterministic == 3
    low = exponential_tableau(3, r1=0.25, r2=0.5)
    assert (low.c, low.weights, low.order_deterministic, low.order_weak) == ((0.25, 0.5), ("taylor", "taylor"), 2, 2)
    assert exponential_tableau(2, r1=0.3).c == (0.3,)


@pytest.mark.parametrize("kw,match", [
    ({"c": (0.6, 0.4), "weights": ("taylor", "taylor")}, "0 < c_1 < c_2"),
    ({"c": (0.0,), "weights": ("taylor",)}, "0 < c_1 < c_2"),
    ({"c": (0.5, 1.0), "weights": ("taylor", "taylor")}, "0 < c_1 < c_2"),
    ({"c": (float("nan"),), "weights": ("taylor",)}, "0 < c_1 < c_2"),
    ({"c": (0.5,), "weights": ()}, "one weight per corrected point"),
    ({"c": (), "weights": ("taylor",)}, "one weight per corrected point"),
    ({"c": (0.5,), "weights": ("cubic",)}, "unknown weight in"),
    ({"c": (0.5,), "weights": ("taylor",), "order_deterministic": 0}, "positive integers"),
    ({"c": (0.5,), "weights": ("taylor",), "order_weak": 1.5}, "positive integers"),
    ({"c": (0.5,), "weights": ("taylor",), "order_deterministic": 3}, "deterministic order 3 exceeds the 2"),
    ({"c": (0.25, 0.5), "weights": ("taylor", "taylor"), "order_deterministic": 3}, "exceeds the 2"),
    ({"c": (1 / 3, 2 / 3), "weights": ("taylor", "phi1"), "order_deterministic": 3}, "exceeds the 2"),
    ({"c": (), "weights": (), "order_deterministic": 2}, "exceeds the 1"),
    ({"c": (1 / 3, 2 / 3), "weights": ("taylor", "taylor"), "order_deterministic": 3, "order_weak": 3},
     "weak order 3 exceeds"),
    ({"c": (), "weights": (), "order_weak": 2}, "weak order 2 exceeds"),
])
def test_tableau_is_validated_on_construction(kw, match):
    with pytest.raises(ValueError, match=match):
        ExponentialTableau("bad", **kw)


def test_tableau_options_are_validated():
    with pytest.raises(ValueError, match="order must be 1, 2 or 3"):
        exponential_tableau(4)
    with pytest.raises(ValueError, match="variant must be"):
        exponential_tableau(2, "cubic")
    with pytest.raises(ValueError, match="order 2 only"):
        exponential_tableau(3, "phi1")
    with pytest.raises(ValueError, match="0 < c_1"):
        exponential_tableau(2, r1=1.5)
    with pytest.raises(ValueError, match="r1 < r2"):
        exponential_tableau(3, r1=0.4, r2=0.4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        TABLEAUX["exp3"].c = (0.5,)


@pytest.mark.parametrize("k,fixed", [(1, s.samplers.seeds_1), (2, s.samplers.seeds_2), (3, s.samplers.seeds_3),
                                     (1, s.samplers.etd_erk_1), (2, s.samplers.etd_erk_2)])
def test_fixed_order_wrappers_carry_the_measured_defaults(k, fixed):
    """seeds_k / etd_erk_k run their order with the grid and eta measured best for it (benchmarks/grids.py): the same
    samples as the generic function given those options, and the registry reads the same defaults."""
    import inspect

    from scoresde.samplers.exponential import MEASURED_DEFAULTS as ETD
    from scoresde.samplers.registry import option_default
    from scoresde.samplers.seeds import MEASURED_DEFAULTS as SEEDS

    is_seeds = fixed.__name__.startswith("seeds")
    base, measured, name = (seeds, SEEDS[k], f"seeds{k}") if is_seeds else (etd_erk, ETD[k], f"etd{k}")
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    x, n1 = _prior(model, 6, 4)
    _, n2 = _prior(model, 6, 4)
    a = fixed(model, x, n1, steps=5).samples
    b = base(model, x, n2, order=k, steps=5, **measured).samples
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    params = inspect.signature(fixed).parameters
    assert "order" not in params
    for opt in ("grid", "eta") if is_seeds else ("grid",):
        expected = measured.get(opt, inspect.signature(base).parameters[opt].default)
        assert params[opt].default == expected == option_default(name, opt)


def test_measured_defaults_of_the_same_map_agree():
    """DDIM at its default eta 0 is ETD-ERK-1: their default grids agree, so the two names give the same samples."""
    from scoresde.samplers.registry import option_default

    assert option_default("ddim", "eta") == 0.0 and option_default("ddim", "grid") == option_default("etd1", "grid")
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    x, _ = _prior(model, 6, 1)
    torch.testing.assert_close(ddim(model, x, steps=7).samples, s.samplers.etd_erk_1(model, x, steps=7).samples,
                               rtol=1e-12, atol=1e-12)
