"""Forward SDEs: marginals against drift/diffusion, Monte-Carlo, inverses, discrete chains."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import SDES, slope

from scoresde.sde import SDE, VESDE, VPSDE, BetaSDE, DDPMChain, DiscreteForm, Discretized, SigmaSDE, SMLDChain, SubVPSDE

F64 = torch.float64



@pytest.fixture(params=list(SDES))
def sde(request):
    return SDES[request.param]()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _times(n: int = 7, lo: float = 0.01, hi: float = 0.99) -> torch.Tensor:
    return torch.linspace(lo, hi, n, dtype=F64)


# ---- closed forms of the design table, computed independently of the library ------------------

def _table(sde, t: float) -> tuple[float, float, float, float]:
    """(alpha_t, sigma_t, a(t), g(t)^2) from the SDE table of docs/architecture.md (Song et al. 2021), in plain floats."""
    if isinstance(sde, VESDE):
        r = math.log(sde.sigma_max / sde.sigma_min)
        s = sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** t
        return 1.0, s, 0.0, 2 * s**2 * r
    bmin, bmax = sde.beta_min, sde.beta_max
    beta = bmin + t * (bmax - bmin)
    alpha = math.exp(-0.25 * t**2 * (bmax - bmin) - 0.5 * t * bmin)
    if isinstance(sde, SubVPSDE):
        int_beta = bmin * t + 0.5 * t**2 * (bmax - bmin)
        return alpha, 1 - alpha**2, -0.5 * beta, beta * (1 - math.exp(-2 * int_beta))
    return alpha, math.sqrt(1 - alpha**2), -0.5 * beta, beta


ALL_PARAMS = [VESDE(), VESDE(0.05, 20.0), VPSDE(), VPSDE(0.05, 10.0), SubVPSDE(), SubVPSDE(0.2, 15.0)]


@pytest.mark.parametrize("sde", ALL_PARAMS, ids=repr)
def test_coefficients_match_design_table(sde):
    t = _times(11, 0.0, 1.0)
    alpha, sigma = sde.marginal(t)
    want = torch.tensor([_table(sde, float(ti)) for ti in t], dtype=F64)
    assert alpha.dtype == sigma.dtype == F64
    torch.testing.assert_close(alpha, want[:, 0], rtol=1e-12, atol=0)
    torch.testing.assert_close(sigma, want[:, 1], rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(sde.drift_coef(t), want[:, 2], rtol=1e-12, atol=0)
    torch.testing.assert_close(sde.diffusion(t) ** 2, want[:, 3], rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(sde.sigma_tilde(t[1:]), want[1:, 1] / want[1:, 0], rtol=1e-12, atol=0)
    torch.testing.assert_close(sde.log_snr(t[1:]), torch.log(want[1:, 0] / want[1:, 1]), rtol=1e-12, atol=1e-12)


# ---- marginal <-> drift / diffusion ---------------------------------------------------------

def test_marginal_consistent_with_drift_and_diffusion_autograd(sde):
    """d log(alpha)/dt = a(t) and d(sigma^2)/dt = 2 a(t) sigma^2 + g(t)^2 (moment ODEs of a linear SDE)."""
    t = _times(9).requires_grad_(True)
    log_alpha = sde.log_alpha(t)
    var = sde.sigma(t) ** 2
    if log_alpha.requires_grad:
        (dla,) = torch.autograd.grad(log_alpha.sum(), t)
    else:  # VE: log alpha is the constant 0
        dla = torch.zeros_like(t)
    (dvar,) = torch.autograd.grad(var.sum(), t)
    t = t.detach()
    a, g2, var = sde.drift_coef(t), sde.diffusion(t) ** 2, var.detach()
    torch.testing.assert_close(dla, a, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dvar, 2 * a * var + g2, rtol=1e-10, atol=1e-12)


def test_marginal_consistent_with_drift_and_diffusion_finite_differences(sde):
    t = _times(9)
    h = 1e-5
    dla = (sde.log_alpha(t + h) - sde.log_alpha(t - h)) / (2 * h)
    dvar = (sde.sigma(t + h) ** 2 - sde.sigma(t - h) ** 2) / (2 * h)
    a, g2, var = sde.drift_coef(t), sde.diffusion(t) ** 2, sde.sigma(t) ** 2
    torch.testing.assert_close(dla, a, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(dvar, 2 * a * var + g2, rtol=1e-6, atol=1e-9)


def test_marginal_at_time_zero(sde):
    alpha, sigma = sde.marginal(0.0)
    assert float(alpha) == 1.0
    expected_sigma = sde.sigma_min if isinstance(sde, VESDE) else 0.0
    assert float(sigma) == pytest.approx(expected_sigma, abs=1e-15)


# ---- Monte-Carlo: Euler-Maruyama of the forward SDE against the closed-form marginal ---------

def test_marginals_match_simulated_forward_sde(sde):
    """EM paths from x0 ~ N(mu, s^2) have mean alpha_t mu and variance alpha_t^2 s^2 + sigma_t^2.

    The EM estimate is unbiased for the EM chain's own moments, which obey the deterministic
    recursion m <- (1 + a dt) m, v <- (1 + a dt)^2 v + g^2 dt. The tolerance is 4 Monte-Carlo
    standard errors plus the (computed, and separately asserted O(dt)-small) gap between the EM
    moments and the closed form.
    """
    mu, s = 0.5, 0.2
    n_paths, steps = 40_000, 2000
    t_end = 0.5 if isinstance(sde, VESDE) else 1.0
    dt = t_end / steps
    checks = {steps // 10, steps // 4, steps // 2, steps}
    g = _gen(1234)
    x = mu + s * torch.randn(n_paths, dtype=F64, generator=g)
    m, v = mu, s**2
    if isinstance(sde, VESDE):  # the VE marginal at t = 0 already carries sigma_min
        x = x + sde.sigma_min * torch.randn(n_paths, dtype=F64, generator=g)
        v = v + sde.sigma_min**2
    grid = torch.arange(steps + 1, dtype=F64) * dt
    a_all, g_all = sde.drift_coef(grid).tolist(), sde.diffusion(grid).tolist()
    seen = 0
    for k in range(steps):
        a, gk = a_all[k], g_all[k]
        x = x + a * x * dt + gk * math.sqrt(dt) * torch.randn(n_paths, dtype=F64, generator=g)
        m, v = (1 + a * dt) * m, (1 + a * dt) ** 2 * v + gk**2 * dt
        if k + 1 in checks:
            seen += 1
            t = float(grid[k + 1])
            alpha, sigma = (float(c) for c in sde.marginal(t))
            m_true, v_true = alpha * mu, alpha**2 * s**2 + sigma**2
            # discretisation gap is first order in dt and small
            assert abs(m - m_true) <= 0.01 * abs(m_true) + 1e-12
            assert abs(v - v_true) <= 0.01 * v_true
            mc_mean, mc_var = float(x.mean()), float(x.var())
            se_mean = math.sqrt(mc_var / n_paths)
            se_var = v_true * math.sqrt(2 / (n_paths - 1))
            assert abs(mc_mean - m_true) <= 4 * se_mean + abs(m - m_true), (t, mc_mean, m_true)
            assert abs(mc_var - v_true) <= 4 * se_var + abs(v - v_true), (t, mc_var, v_true)
    assert seen == len(checks)


# ---- inverses ----------------------------------------------------------------------------------

def test_t_from_sigma_tilde_inverts_sigma_tilde(sde):
    t = torch.cat([torch.tensor([sde.t_end, 1e-3, 1.0], dtype=F64), _times(50)])
    torch.testing.assert_close(sde.t_from_sigma_tilde(sde.sigma_tilde(t)), t, rtol=1e-10, atol=1e-12)
    sig = sde.sigma_tilde(_times(20))
    torch.testing.assert_close(sde.sigma_tilde(sde.t_from_sigma_tilde(sig)), sig, rtol=1e-10, atol=0)


def test_t_from_log_snr_inverts_log_snr(sde):
    t = torch.cat([torch.tensor([sde.t_end, 1e-3, 1.0], dtype=F64), _times(50)])
    torch.testing.assert_close(sde.t_from_log_snr(sde.log_snr(t)), t, rtol=1e-10, atol=1e-12)
    lam = sde.log_snr(_times(20))
    torch.testing.assert_close(sde.log_snr(sde.t_from_log_snr(lam)), lam, rtol=1e-10, atol=1e-10)


def test_log_snr_is_decreasing(sde):
    lam = sde.log_snr(_times(200, 1e-3, 1.0))
    assert (lam[1:] < lam[:-1]).all()


# ---- reverse drift, probability flow, prior ---------------------------------------------------

def test_reverse_and_probability_flow_drift(sde):
    g = _gen(7)
    x = torch.randn(6, 3, 2, dtype=F64, generator=g)
    score = torch.randn(6, 3, 2, dtype=F64, generator=g)
    t = 0.01 + 0.98 * torch.rand(6, dtype=F64, generator=g)
    tab = torch.tensor([_table(sde, float(ti)) for ti in t], dtype=F64)
    a, g2 = tab[:, 2, None, None], tab[:, 3, None, None]
    torch.testing.assert_close(sde.drift(x, t), a * x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sde.reverse_drift(x, t, score), a * x - g2 * score, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(sde.probability_flow_drift(x, t, score), a * x - 0.5 * g2 * score,
                               rtol=1e-12, atol=1e-10)
    # scalar time broadcasts like a constant per-sample vector
    torch.testing.assert_close(sde.reverse_drift(x, 0.3, score),
                               sde.reverse_drift(x, torch.full((6,), 0.3, dtype=F64), score), rtol=0, atol=0)


def test_prior_logp_is_gaussian_log_density(sde):
    z = torch.randn(5, 2, 3, dtype=F64, generator=_gen(3)) * sde.prior_std
    zero, std = torch.zeros((), dtype=F64), torch.tensor(sde.prior_std, dtype=F64)
    want = torch.distributions.Normal(zero, std).log_prob(z).sum((1, 2))
    torch.testing.assert_close(sde.prior_logp(z), want, rtol=1e-12, atol=1e-10)
    expected_std = 50.0 if isinstance(sde, VESDE) else 1.0
    assert sde.prior_std == expected_std
    noise = torch.randn(4, 2, dtype=F64, generator=_gen(4))
    torch.testing.assert_close(sde.prior_sample(noise), expected_std * noise, rtol=0, atol=0)


def test_marginal_sample(sde):
    g = _gen(11)
    x0, n = torch.randn(4, 3, dtype=F64, generator=g), torch.randn(4, 3, dtype=F64, generator=g)
    t = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=F64)
    alpha, sigma = sde.marginal(t)
    torch.testing.assert_close(sde.marginal_sample(x0, t, n), alpha[:, None] * x0 + sigma[:, None] * n,
                               rtol=1e-14, atol=1e-14)


# ---- discretisation ----------------------------------------------------------------------------

def test_discretize(sde):
    g = _gen(5)
    x = torch.randn(4, 3, dtype=F64, generator=g)
    t = torch.tensor([0.2, 0.5, 0.7, 1.0], dtype=F64)
    dt = 1e-3
    t_next = t - dt
    f, G = sde.discretize(x, t, t_next)
    assert f.shape == x.shape
    if isinstance(sde, VESDE):
        assert torch.equal(f, torch.zeros_like(x))
        torch.testing.assert_close(G**2, sde.sigma(t) ** 2 - sde.sigma(t_next) ** 2, rtol=1e-10, atol=0)
    elif isinstance(sde, SubVPSDE):  # plain Euler-Maruyama
        torch.testing.assert_close(f, sde.drift_coef(t)[:, None] * x * dt, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(G, sde.diffusion(t) * math.sqrt(dt), rtol=1e-10, atol=0)
    else:  # DDPM step with the exact VP transition: beta_i = 1 - alpha_t^2 / alpha_next^2
        alpha, alpha_next = sde.alpha(t), sde.alpha(t_next)
        beta_i = 1 - alpha**2 / alpha_next**2
        torch.testing.assert_close(f, (torch.sqrt(1 - beta_i)[:, None] - 1) * x, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(G, torch.sqrt(beta_i), rtol=1e-10, atol=0)
        # = beta(t) dt + O(dt^2): B = int_{t-dt}^t beta = beta(t) dt - db dt^2 / 2 and 1 - e^-B = B - B^2 / 2 + ...
        beta_t = 0.1 + t * 19.9
        want = beta_t * dt - (19.9 + beta_t**2) * dt**2 / 2
        torch.testing.assert_close(beta_i, want, rtol=0, atol=float(beta_t.max()) ** 3 * dt**3)


@pytest.mark.parametrize("cls", [VPSDE, VESDE])
def test_discretized_step_preserves_the_marginal(cls):
    """x_next ~ N(alpha_next x0, sigma_next^2) stepped by x + f + G z lands on N(alpha_t x0, sigma_t^2) for
    any step size: VP (exact DDPM transition) alpha_next sqrt(1 - beta_i) = alpha_t and
    (1 - beta_i) sigma_next^2 + beta_i = sigma_t^2; VE sigma_next^2 + G^2 = sigma_t^2."""
    sde = cls()
    t = torch.tensor([0.05, 0.3, 0.6, 1.0, 1.0], dtype=F64)
    t_next = torch.tensor([0.0, 0.1, 0.55, 0.2, 0.999], dtype=F64)
    x = torch.ones(5, 1, dtype=F64)
    f, G = sde.discretize(x, t, t_next)
    (alpha, sigma), (alpha_n, sigma_n) = sde.marginal(t), sde.marginal(t_next)
    scale = (x + f)[:, 0]  # the step multiplies x by (1 + f / x)
    torch.testing.assert_close(alpha_n * scale, alpha, rtol=1e-12, atol=0)
    torch.testing.assert_close(sigma_n**2 * scale**2 + G**2, sigma**2, rtol=1e-12, atol=1e-15)


def test_discretize_vp_approaches_ddpm_betas_at_second_order():
    """At t_i = i/(N-1) with dt = 1/N, the exact VP transition beta_i differs from the DDPM chain's
    beta(t_i)/N by O(1/N^2) (fitted log-log slope about -2)."""
    vp, ns, errs = VPSDE(), [100, 300, 1000, 3000], []
    for N in ns:
        i = torch.arange(N)
        t = i.double() / (N - 1)
        _, G = vp.discretize(torch.zeros(N, 1, dtype=F64), t, t - 1.0 / N)
        errs.append(float((G**2 - DDPMChain(0.1, 20.0, N).betas).abs().max()))
    assert -2.2 < slope(ns, errs) < -1.8, errs
    assert errs[-1] < 3e-5


def test_corrector_alpha(sde):
    t = _times(5)
    if isinstance(sde, VESDE):
        torch.testing.assert_close(sde.corrector_alpha(t), torch.ones_like(t), rtol=0, atol=0)
    else:
        beta = sde.beta_min + t * (sde.beta_max - sde.beta_min)
        torch.testing.assert_close(sde.corrector_alpha(t), 1 - beta / sde.N, rtol=1e-14, atol=0)


# ---- discrete chains -----------------------------------------------------------------------------

def test_ddpm_betas_match_design_formula():
    N = 50
    i = np.arange(N)
    want = 0.1 / N + i * (20 - 0.1) / (N * (N - 1))
    np.testing.assert_allclose(DDPMChain(0.1, 20.0, N).betas.numpy(), want, rtol=1e-13, atol=0)
    np.testing.assert_allclose(DDPMChain(0.1, 20.0, N).times().numpy(), (i + 1) / N, rtol=0, atol=1e-15)


def test_ddpm_chain_marginal_monte_carlo():
    """Simulate x_i = sqrt(1-beta_i) x_{i-1} + sqrt(beta_i) z from N(mu, s^2) and compare moments with
    marginal(i): mean sqrt(abar_i) mu, variance abar_i s^2 + 1 - abar_i (an exact chain: no bias)."""
    chain, mu, s, n = DDPMChain(0.1, 20.0, 50), 0.5, 0.2, 40_000
    betas = chain.betas.numpy()
    abar = np.cumprod(1 - betas)
    g = _gen(21)
    x = mu + s * torch.randn(n, dtype=F64, generator=g)
    checks = {0, 4, 12, 25, 49}
    for i in range(chain.N):
        x = chain.step(x, i, torch.randn(n, dtype=F64, generator=g))
        if i in checks:
            alpha, sigma = (float(c) for c in chain.marginal(i))
            assert alpha == pytest.approx(math.sqrt(abar[i]), rel=1e-12)
            assert sigma == pytest.approx(math.sqrt(1 - abar[i]), rel=1e-12)
            m_true, v_true = alpha * mu, alpha**2 * s**2 + sigma**2
            assert abs(float(x.mean()) - m_true) <= 4 * math.sqrt(v_true / n)
            assert abs(float(x.var()) - v_true) <= 4 * v_true * math.sqrt(2 / (n - 1))


@pytest.mark.parametrize("frac", [1.0, 0.5, 0.1])
def test_ddpm_chain_converges_to_vp_at_first_order(frac):
    """DDPMChain(N).marginal(i) with t = (i+1)/N converges to VPSDE().marginal(t) at rate 1/N.

    N starts at 30: with beta_max = 20 the chain needs beta_max / N < 1 (DDPMChain rejects beta_max / N >= 1).
    """
    vp = VPSDE()
    ns = [30, 100, 300, 1000, 3000]
    err_a, err_s = [], []
    for N in ns:
        i = round(frac * N) - 1
        t = (i + 1) / N
        assert t == pytest.approx(frac)
        a, s = DDPMChain(0.1, 20.0, N).marginal(i)
        A, S = vp.marginal(t)
        err_a.append(abs(float(a - A)))
        err_s.append(abs(float(s - S)))
    for errs in (err_a, err_s):
        assert all(e1 < e0 for e0, e1 in zip(errs, errs[1:])), errs
        assert -1.3 < slope(ns, errs) < -0.7, errs
    assert err_a[-1] < 1e-3 and err_s[-1] < 1e-3


def test_ddpm_chain_rejects_betas_of_one_or_more():
    with pytest.raises(ValueError):
        chain = DDPMChain(0.1, 20.0, 10)  # beta_9 = 2.0
        chain.marginal(9)


@pytest.mark.parametrize("cls", [VPSDE, SubVPSDE])
def test_t_from_sigma_tilde_at_zero_with_beta_min_zero(cls):
    sde = cls(beta_min=0.0, beta_max=20.0)
    t = torch.tensor([0.0, 1e-6, 0.5], dtype=F64)
    torch.testing.assert_close(sde.t_from_sigma_tilde(sde.sigma_tilde(t)), t, rtol=1e-10, atol=1e-14)


def test_vp_discrete_form():
    chain = VPSDE(0.1, 20.0, N=200).discrete()
    assert chain == DDPMChain(0.1, 20.0, 200)
    assert VESDE(0.01, 50.0, N=100).discrete() == SMLDChain(0.01, 50.0, 100)
    # sub-VP has no discrete form: no discrete() at all (not one that raises)
    assert not isinstance(SubVPSDE(), DiscreteForm) and not hasattr(SubVPSDE(), "discrete")


def test_discrete_notions_are_not_part_of_the_continuous_sde():
    """N, discretize, corrector_alpha and discrete live in the Discretized / DiscreteForm mixins, not on SDE."""
    for name in ("N", "discretize", "corrector_alpha", "discrete"):
        assert not hasattr(SDE, name), name
        assert not hasattr(SigmaSDE(80.0, 0.002), name), name
    assert isinstance(VESDE(), DiscreteForm) and isinstance(VPSDE(), DiscreteForm)
    assert isinstance(SubVPSDE(), Discretized)
    # N stays an argument (positional, as config.py passes sde.N) of every SDE with a discretisation
    assert VESDE(0.01, 50.0, 123).N == VPSDE(0.1, 20.0, 123).N == SubVPSDE(0.1, 20.0, 123).N == 123


def test_vp_and_subvp_share_a_parent_and_subvp_undoes_nothing():
    """sub-VP is not a VP: both are BetaSDEs (beta schedule, alpha_t, drift), each with its own sigma and g."""
    vp, sub = VPSDE(0.2, 15.0), SubVPSDE(0.2, 15.0)
    assert isinstance(vp, BetaSDE) and isinstance(sub, BetaSDE) and not isinstance(sub, VPSDE)
    t = _times(9)
    for name in ("beta", "log_alpha", "drift_coef", "corrector_alpha"):
        torch.testing.assert_close(getattr(sub, name)(t), getattr(vp, name)(t), rtol=0, atol=0)
    # the shared parts are defined once, on BetaSDE; sub-VP overrides no discrete step of VP's
    for name in ("beta", "log_alpha", "drift_coef", "corrector_alpha"):
        assert name not in vars(VPSDE) and name not in vars(SubVPSDE), name
    assert "discretize" not in vars(SubVPSDE) and "discrete" not in vars(SubVPSDE)


def test_sigma_sde():
    """k-diffusion's SDE (t = sigma): alpha = 1, sigma_t = t, g^2 = d sigma^2 / dt = 2 t, on [sigma_min, sigma_max]."""
    from scoresde.samplers import kdiffusion

    assert kdiffusion.SigmaSDE is SigmaSDE
    sde = SigmaSDE(80.0, 0.002)
    assert (sde.T, sde.t_end, sde.prior_std) == (80.0, 0.002, 80.0)
    t = torch.tensor([0.002, 0.5, 3.0, 80.0], dtype=F64)
    alpha, sigma = sde.marginal(t)
    assert torch.equal(alpha, torch.ones_like(t)) and torch.equal(sigma, t)
    torch.testing.assert_close(sde.diffusion(t) ** 2, 2 * t, rtol=1e-15, atol=0)
    assert torch.equal(sde.drift_coef(t), torch.zeros_like(t))
    torch.testing.assert_close(sde.t_from_sigma_tilde(sde.sigma_tilde(t)), t, rtol=0, atol=0)


def test_smld_chain_marginal_equals_ve_marginal():
    N = 50
    chain, ve = SMLDChain(0.01, 50.0, N), VESDE(0.01, 50.0)
    i = torch.arange(N)
    a, s = chain.marginal(i)
    A, S = ve.marginal(i.double() / (N - 1))
    torch.testing.assert_close(a, A, rtol=0, atol=0)
    torch.testing.assert_close(s, S, rtol=1e-13, atol=0)
    torch.testing.assert_close(chain.times(), i.double() / (N - 1), rtol=0, atol=1e-15)
    assert float(s[0]) == pytest.approx(0.01, rel=1e-14) and float(s[-1]) == pytest.approx(50.0, rel=1e-14)


def test_smld_chain_marginal_monte_carlo():
    """x_0 = data + sigma_0 z, x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z has variance s^2 + sigma_i^2."""
    chain, mu, s, n = SMLDChain(0.01, 5.0, 30), 0.5, 0.2, 40_000
    g = _gen(31)
    x = mu + s * torch.randn(n, dtype=F64, generator=g) + 0.01 * torch.randn(n, dtype=F64, generator=g)
    for i in range(1, chain.N):
        x = chain.step(x, i, torch.randn(n, dtype=F64, generator=g))
        if i in (1, 10, 29):
            _, sigma = chain.marginal(i)
            v_true = s**2 + float(sigma) ** 2
            assert abs(float(x.mean()) - mu) <= 4 * math.sqrt(v_true / n)
            assert abs(float(x.var()) - v_true) <= 4 * v_true * math.sqrt(2 / (n - 1))


def test_invalid_parameters_raise():
    with pytest.raises(ValueError):
        VESDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError):
        VPSDE(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError):
        SubVPSDE(beta_min=-0.1, beta_max=1.0)


def test_discrete_vp_sde_is_the_chain_at_its_steps_and_a_vp_sde_between():
    """DiscreteVPSDE: alpha_t^2 = abar_i at t = (i + 1) / N, variance preserving, beta(t) = -2 dlog alpha/dt per
    segment (moment ODEs), inverses, the exact DDPM step and alpha_i = abar_i / abar_{i-1}."""
    from scoresde.sde import DiscreteVPSDE

    n = 50
    abar = torch.cumprod(1 - torch.linspace(1e-3, 0.2, n, dtype=F64), 0)
    sde = DiscreteVPSDE(abar)
    assert sde.N == n and sde.t_end == 1 / n
    nodes = torch.arange(1, n + 1, dtype=F64) / n
    alpha, sigma = sde.marginal(nodes)
    torch.testing.assert_close(alpha**2, abar, rtol=1e-13, atol=0)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(alpha), rtol=0, atol=1e-15)
    assert float(sde.alpha(0.0)) == 1.0 and float(sde.sigma(0.0)) == 0.0
    torch.testing.assert_close(sde.timestep(nodes), torch.arange(n, dtype=F64), rtol=0, atol=1e-12)
    t = (torch.arange(n, dtype=F64) + torch.rand(n, dtype=F64, generator=_gen(0)).clamp(0.05, 0.95)) / n  # in segments
    h = 1e-7
    dla = (sde.log_alpha(t + h) - sde.log_alpha(t - h)) / (2 * h)
    dvar = (sde.sigma(t + h) ** 2 - sde.sigma(t - h) ** 2) / (2 * h)
    torch.testing.assert_close(dla, sde.drift_coef(t), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(dvar, 2 * sde.drift_coef(t) * sde.sigma(t) ** 2 + sde.diffusion(t) ** 2, rtol=1e-6,
                               atol=1e-9)
    torch.testing.assert_close(sde.t_from_sigma_tilde(sde.sigma_tilde(t)), t, rtol=0, atol=1e-13)
    torch.testing.assert_close(sde.t_from_log_snr(sde.log_snr(t)), t, rtol=0, atol=1e-13)
    # the exact transition between any two times preserves the marginal; on the chain it is DDPM's beta_i
    t_next = t * torch.rand(n, dtype=F64, generator=_gen(1))
    x = torch.ones(n, 1, dtype=F64)
    f, G = sde.discretize(x, t, t_next)
    (a, s), (a_n, s_n) = sde.marginal(t), sde.marginal(t_next)
    scale = (x + f)[:, 0]
    torch.testing.assert_close(a_n * scale, a, rtol=1e-12, atol=0)
    torch.testing.assert_close(s_n**2 * scale**2 + G**2, s**2, rtol=1e-12, atol=1e-15)
    ratio = abar[1:] / abar[:-1]
    torch.testing.assert_close(sde.corrector_alpha(t[1:]), ratio, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        DiscreteVPSDE(torch.tensor([0.9, 0.0]))
