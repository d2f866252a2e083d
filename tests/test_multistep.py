"""ms2 / ms3 (multistep stochastic exponential solvers) against closed-form truth and independent references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import SDES, assert_batch_invariant, count_exact_calls, slope
from test_exponential import errors, flow_problem
from torch import Tensor

import scoresde as s
from scoresde.brownian import NoiseSource
from scoresde.cli import main
from scoresde.samplers import dpmpp_2m, make_grid, ms2, ms3, multistep_sample
from scoresde.samplers.common import coefs
from scoresde.samplers.multistep import adams_weights, exp_moment
from scoresde.samplers.registry import resolve

F64 = torch.float64
GL_U, GL_W = (torch.tensor(v, dtype=F64) for v in np.polynomial.legendre.leggauss(60))


def _quad(f) -> Tensor:  # int_0^1 f(u) du by 60-point Gauss-Legendre (exact to ~1e-15 here)
    u = (GL_U + 1) / 2
    return (f(u) * GL_W).sum(-1) / 2


def _prior(model, n, seed):
    noise = NoiseSource(seed, (2,), n, dtype=F64)
    return model.sde.prior_sample(noise.draw()), noise


# ---- the weights ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("z", [1e-7, 1e-3, 0.2, 0.4999, 0.5, 0.7, 3.0, 40.0])
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_exp_moment_is_the_integral(z, k):
    """I_k(z) = int_0^1 z e^{-z(1-u)} u^k du on both sides of the series / recursion switch.

    Relative 1e-12: the quadrature's own accuracy at z = 40."""
    ref = float(_quad(lambda u: z * torch.exp(-z * (1 - u)) * u**k))
    got = float(exp_moment(torch.tensor([z], dtype=F64), k))
    assert abs(got / ref - 1) < 1e-12, (got, ref)


@pytest.mark.parametrize("nodes", [[0.0], [0.0, -1.0], [0.0, -0.37], [0.0, -1.0, -2.0], [0.0, -0.6, -2.3]])
@pytest.mark.parametrize("hh", [0.01, 0.8, 5.0])
def test_adams_weights_integrate_the_interpolant(nodes, hh):
    """sum_j b_j f(u_j) = int_0^1 hh e^{-hh(1-u)} f(u) du for every polynomial f of degree < number of nodes, any
    step ratios: the weights are those of the Lagrange interpolant; the phi1 variant only for the constant."""
    z = torch.tensor([hh], dtype=F64)
    b = adams_weights([torch.tensor([u], dtype=F64) for u in nodes], z)
    for deg in range(len(nodes)):
        exact = float(_quad(lambda u, d=deg: hh * torch.exp(-hh * (1 - u)) * (u - 0.3) ** d))
        got = sum(float(bj) * (u - 0.3) ** deg for bj, u in zip(b, nodes))
        assert abs(got - exact) < 1e-12 * max(1.0, abs(exact)), (deg, got, exact)
    if len(nodes) == 2:  # phi1 variant: weight phi1(hh) / 2 on the first difference (DPM-Solver++(2M))
        b1 = adams_weights([torch.tensor([u], dtype=F64) for u in nodes], z, "phi1")
        assert abs(float(b1[0] + b1[1]) - float(exp_moment(z, 0))) < 1e-15
        assert abs(float(b1[1]) + float(-torch.expm1(-z)) / 2 / -nodes[1]) < 1e-15


# ---- eta = 0: DPM-Solver++(2M) and the deterministic orders ------------------------------------------------------
@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("grid", ["logsnr", "edm", "time"])
def test_ms2_phi1_at_eta_zero_is_dpmpp_2m(sde_name, grid):
    """ms2 (its default phi1 weight) at eta = 0 is DPM-Solver++(2M) (Lu et al. 2022b Alg. 2) on the same grid."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    x, _ = _prior(model, 6, 0)
    a = ms2(model, x, None, steps=7, grid=grid, eta=0.0).samples
    b = dpmpp_2m(model, x, steps=7, grid=grid).samples
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("method,kw,grid", [(ms2, {"variant": "taylor"}, "logsnr"), (ms2, {}, "edm"), (ms3, {}, "edm"),
                                            (ms3, {}, "quadratic")], ids=["ms2taylor-logsnr", "ms2-edm", "ms3-edm",
                                                                          "ms3-quadratic"])
def test_deterministic_order(sde_name, method, kw, grid):
    """Global order at eta = 0 on the Gaussian flow problem = the declared one (measured 2.01-2.05 / 3.02-3.11).

    Non-uniform grids exercise the step-ratio weights; ms3 on the uniform log-SNR grid measures ~4 on Gaussian data
    (3.8-4.0: its h^3 error term cancels for this D along the flow), so its order is read on the non-uniform grids."""
    model, x, exact = flow_problem(SDES[sde_name]())
    ns = [64, 128, 256]
    errs = errors(lambda n: method(model, x, None, steps=n, grid=grid, eta=0.0, **kw), exact, ns)
    assert abs(-slope(ns, errs) - method.order_deterministic) < 0.3, errs


# ---- eta > 0: the step against an independent reference, weak orders, Monte Carlo ---------------------------------
def reference_run(model, x, grid, order, eta, xis, phi1_weight=False):
    """The multistep recursion written independently: D interpolated through the last ``order`` denoiser values by a
    numpy polynomial in u = (lambda - lambda_s) / h, its integral against hh e^{-hh(1-u)} by quadrature, plus the exact
    linear part and noise of the module docstring (per-sample scalars: all samples share the grid). ``phi1_weight``:
    two nodes as k-diffusion's 2M SDE "midpoint" writes it, phi1(hh) [D_0 + (D_0 - D_1) / (2 r)]."""
    sde, hist = model.sde, []
    for i in range(len(grid) - 1):
        t_s, t_t = grid[i].expand(x.shape[0]), grid[i + 1].expand(x.shape[0])
        _, s_s, l_s = (float(v[0]) for v in coefs(sde, t_s))
        a_t, s_t, l_t = (float(v[0]) for v in coefs(sde, t_t))
        D = model.denoised(x, t_s)
        hist = [(l_s, D)] + hist[: order - 1]
        h, hh = l_t - l_s, (1 + eta) * (l_t - l_s)
        u = np.array([(lj - l_s) / h for lj, _ in hist])
        vals = torch.stack([d for _, d in hist])  # (nodes, batch, dim)
        integral = torch.zeros_like(x)
        two_phi1 = phi1_weight and len(hist) == 2
        if two_phi1:
            p1 = -math.expm1(-hh)
            integral = p1 * vals[0] + p1 / 2 * (vals[0] - vals[1]) / -u[1]
        for j in range(0 if two_phi1 else len(hist)):  # integrate the Lagrange basis polynomial l_j numerically
            e = np.zeros(len(hist))
            e[j] = 1.0
            coef = np.polyfit(u, e, len(hist) - 1) if len(hist) > 1 else np.array([1.0])
            wj = float(_quad(lambda q, c=coef, z=hh: z * torch.exp(-z * (1 - q)) * torch.tensor(np.polyval(c, q.numpy()))))
            integral = integral + wj * vals[j]
        x = s_t / s_s * math.exp(-eta * h) * x + a_t * integral + s_t * math.sqrt(-math.expm1(-2 * eta * h)) * xis[i]
    return x


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("order,variant,eta,grid", [(2, "taylor", 1.0, "logsnr"), (2, "taylor", 0.4, "edm"),
                                                     (2, "phi1", 1.0, "logsnr"), (2, "phi1", 0.6, "time"),
                                                     (3, "taylor", 1.0, "edm"), (3, "taylor", 0.7, "time")])
def test_matches_the_independent_reference(sde_name, order, variant, eta, grid):
    """Same noise, same samples as the independent reference (validates weights, start-up steps and noise scale)."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    g = make_grid(model.sde, 6, grid)
    x, noise = _prior(model, 5, 2)
    got = multistep_sample(model, x, noise, order=order, grid=g, eta=eta, variant=variant).samples
    again = NoiseSource(2, (2,), 5, dtype=F64)
    again.draw()  # x_T
    ref = reference_run(model, x, g, order, eta, [again.draw() for _ in range(6)], variant == "phi1")
    torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-11)


def propagate_run(model, grid, m, v, eta, order):
    """Exact mean / variance after a whole multistep run on 1-D Gaussian data.

    The run is affine in x_T and in the N standard normals of its N steps (D is affine for Gaussian data), so rows
    (x_T = 0), (x_T = 1) and (x_T = 0, xi_i = 1) reveal x_end = a x_T + b + sum_i c_i xi_i, the history included:
    m' = a m + b, v' = a^2 v + sum_i c_i^2."""
    n = len(grid) - 1
    x = torch.zeros(2 + n, 1, dtype=F64)
    x[1] = 1.0
    step = {"i": 0}

    def draw(sigma_from, sigma_to):
        z = torch.zeros(2 + n, 1, dtype=F64)
        z[2 + step["i"]] = 1.0
        step["i"] += 1
        return z

    out = multistep_sample(model, x, None, order=order, grid=grid, eta=eta, draw=draw).samples[:, 0]
    assert step["i"] == n
    a, b, c = out[1] - out[0], out[0], out[2:] - out[0]
    return float(a * m + b), float(a**2 * v + (c**2).sum())


def _gauss(sde):
    prob = s.Gaussian([0.7], [0.3])
    mT, vT = (float(u) for u in prob.marginal_moments(*sde.marginal(sde.T)))
    m0, v0 = (float(u) for u in prob.marginal_moments(*sde.marginal(sde.t_end)))
    return s.ExactScoreModel(prob, sde), mT, vT, m0, v0


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("method", [ms2, ms3], ids=lambda m: m.__name__)
def test_weak_order_of_the_variance(sde_name, method):
    """Weak error of the variance at eps (eta = 1, log-SNR grid, exact propagation): the declared weak order 2 for both.

    The mean is exact (the Gaussian mean path is a fixed point of the affine step). Measured slopes over 64-256 steps:
    ms2 (phi1) 1.98-1.99, ms3 2.06-2.13 (VE errors at 256 steps 3.3e-5 / 1.1e-5: ms3 3x smaller, same order). Two is what an
    exact-noise exponential multistep can reach: the history's D values sit on the noisy path, which is only
    Holder-1/2 in lambda, so the extrapolation cannot carry the iterated integrals a third weak order needs."""
    model, mT, vT, m0, v0 = _gauss(SDES[sde_name]())
    ns = [64, 128, 256]
    errs = []
    for n in ns:
        m, v = propagate_run(model, make_grid(model.sde, n), mT, vT, 1.0, 3 if method is ms3 else 2)
        assert abs(m - m0) < 1e-12
        errs.append(abs(v - v0))
    assert abs(-slope(ns, errs) - method.order_weak) < 0.3, errs


@pytest.mark.parametrize("eta", [0.3, 1.0])
@pytest.mark.parametrize("order", [2, 3])
def test_monte_carlo_matches_moment_propagation(eta, order):
    """Running ms2 / ms3 with a NoiseSource reproduces the propagated mean / variance (validates the noise wiring)."""
    sde = s.VPSDE()
    model, mT, vT, _, _ = _gauss(sde)
    g = make_grid(sde, 6)
    m, v = propagate_run(model, g, mT, vT, eta, order)
    n = 20000
    noise = NoiseSource(5, (1,), n, dtype=F64)
    x = mT + math.sqrt(vT) * noise.draw()
    xs = multistep_sample(model, x, noise, order=order, grid=g, eta=eta).samples[:, 0]
    assert abs(float(xs.mean()) - m) < 4 * math.sqrt(v / n)
    assert abs(float(xs.var()) / v - 1) < 4 * math.sqrt(2 / n)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("order", [2, 3])
def test_linear_part_and_noise_are_exact(sde_name, order):
    """Point-mass data (D = 0): the step is the exact transition, variance sigma_eps^2 after 4 steps at eta = 1."""
    sde = SDES[sde_name]()
    model = s.ExactScoreModel(s.Gaussian([0.0], [0.0]), sde)
    sT, se = float(sde.sigma(sde.T)), float(sde.sigma(sde.t_end))
    m, v = propagate_run(model, make_grid(sde, 4), 0.0, sT**2, 1.0, order)
    assert abs(m) < 1e-14 and abs(v / se**2 - 1) < 1e-10


# ---- the contract ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", [ms2, ms3], ids=lambda m: m.__name__)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_nfe_is_exact(method, eta):
    """NFE = steps (+1 for the counted Tweedie denoise); one draw per step at eta > 0, none at eta = 0."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.SubVPSDE())
    calls = count_exact_calls(model)
    x, noise = _prior(model, 4, 0)
    res = method(model, x, noise, steps=5, eta=eta)
    assert res.nfe == 5 == calls["n"]
    assert noise.count == 1 + (5 if eta > 0 else 0)
    res = method(model, x, noise, steps=5, eta=eta, denoise=True)
    assert res.nfe == 6 == calls["n"] - 5


def test_step_to_sigma_zero_is_the_denoiser():
    """A last step ending at sigma = 0 returns alpha_0 D(x_s) (no noise), the limit of the formula."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    x, noise = _prior(model, 4, 0)
    seen = []
    res = ms3(model, x, noise, grid=torch.tensor([1.0, 0.5, 0.1, 0.0], dtype=F64), callback=seen.append)
    torch.testing.assert_close(res.samples, seen[-1]["denoised"] * float(model.sde.alpha(torch.tensor(0.0))),
                               rtol=0, atol=0)
    assert res.nfe == 3 and noise.count == 1 + 2


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("method,eta", [(ms2, 1.0), (ms3, 0.5)], ids=["ms2", "ms3"])
def test_samples_do_not_depend_on_batch(sde_name, method, eta):
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    assert_batch_invariant(model, method, eta=eta, steps=6)


def test_rejects_bad_options():
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    x, noise = _prior(model, 2, 0)
    for kw, match in [({"eta": 1.5}, "eta must lie"), ({"eta": -0.1}, "eta must lie"), ({"steps": 0}, "steps must be"),
                      ({"order": 4}, "order must be 2 or 3"), ({"variant": "cubic"}, "variant must be"),
                      ({"order": 3, "variant": "phi1"}, "order 2 only"), ({"s_noise": -1.0}, "s_noise")]:
        with pytest.raises(ValueError, match=match):
            multistep_sample(model, x, noise, **kw)
    with pytest.raises(ValueError, match="needs a NoiseSource"):
        ms2(model, x, None, eta=0.5)
    with pytest.raises(ValueError, match="eta must lie"):
        resolve("ms3", {"eta": 2.0})
    with pytest.raises(ValueError, match="does not apply"):
        resolve("ms2", {"form": "noise"})
    with pytest.raises(ValueError, match="exp_moment|k must be"):
        exp_moment(torch.ones(1, dtype=F64), -1)


def test_declared_orders_and_registry():
    assert (ms2.order_deterministic, ms2.order_weak, ms3.order_deterministic, ms3.order_weak) == (2, 2, 3, 2)
    for k, fn in ((2, ms2), (3, ms3)):
        f, kw = resolve(f"ms{k}", {"steps": 9, "eta": 0.5, "grid": "edm", "denoise": True})
        assert f is fn and kw == {"steps": 9, "eta": 0.5, "grid": "edm", "denoise": True}


@pytest.mark.parametrize("argv,needle", [(["--sampler", "ms2", "--eta", "1.5"], "--eta: must lie in [0, 1]"),
                                         (["--sampler", "ms3", "--form", "noise"], "--form does not apply")])
def test_cli_bad_options_give_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["sample", "--problem", "gmm8", "--out", "x.npz", *argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err


def test_cli_matches_the_library(tmp_path, capsys):
    out = tmp_path / "ms3.npz"
    code = main(["sample", "--problem", "gmm8", "--sde", "vp", "--num", "20", "--seed", "3", "--batch-size", "8",
                 "--sampler", "ms3", "--steps", "7", "--eta", "0.6", "--grid", "edm", "--out", str(out),
                 "--no-progress", "--no-plot"])
    assert code == 0, capsys.readouterr().err
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    ref = s.samplers.sample(model, 20, 3, ms3, (2,), dtype=F64, batch_size=8, steps=7, eta=0.6, grid="edm")
    data = np.load(out)
    np.testing.assert_array_equal(data["samples"], ref.samples.numpy())
    assert int(data["nfe"]) == ref.nfe == 7
