"""Likelihoods through the probability-flow ODE agree with closed forms."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import SDES

import scoresde as s
from scoresde.likelihood import (
    bits_per_dim,
    bits_per_dim_from_logp,
    bpd_offset,
    decode,
    dequantization_noise,
    dequantize,
    divergence_exact,
    divergence_hutchinson,
    draw_probes,
    encode,
    log_likelihood,
    round_trip,
)


def mixture16() -> s.GaussianMixture:
    g = torch.Generator().manual_seed(16)
    means = 0.7 * torch.randn(3, 16, generator=g, dtype=torch.float64)
    return s.GaussianMixture([0.5, 0.3, 0.2], means, [0.3, 0.2, 0.4])


def points(problem, n: int, seed: int = 1) -> torch.Tensor:
    return problem.sample(n, generator=torch.Generator().manual_seed(seed))


def exact_prior(model: s.ExactScoreModel):
    """The true marginal density at T (isolates the ODE from the prior mismatch p_T != prior)."""
    return lambda z: model.log_prob(z, model.sde.T)


@pytest.mark.parametrize("sde", sorted(SDES))
def test_gaussian_is_exact_to_solver_tolerance(sde):
    problem = s.load_problem("gaussian")
    model = s.ExactScoreModel(problem, SDES[sde]())
    x = points(problem, 16)
    truth = model.log_prob(x, 1e-5)
    errors = []
    for tol in (1e-5, 1e-9):
        res = log_likelihood(model, x, rtol=tol, atol=tol, prior_logp=exact_prior(model))
        errors.append(float((res.logp - truth).abs().max()))
    # the error falls with the tolerance (measured 6e-5..6e-4 at 1e-5, <= 1e-7 at 1e-9)
    assert errors[1] < 1e-6 and errors[1] < errors[0] / 50


@pytest.mark.parametrize("name", ["gmm8", "mixture16"])
@pytest.mark.parametrize("sde", sorted(SDES))
def test_mixture_log_likelihood_matches_closed_form(name, sde):
    problem = mixture16() if name == "mixture16" else s.load_problem(name)
    model = s.ExactScoreModel(problem, SDES[sde]())
    x = points(problem, 24)
    d = problem.dim
    res = log_likelihood(model, x)  # the SDE's own prior, exact divergence, rtol = atol = 1e-5
    # what the ODE computes is log p_eps (data plus sigma_eps noise); measured <= 5e-3 nats/dim
    assert float((res.logp - model.log_prob(x, 1e-5)).abs().max()) / d < 1e-2
    if name == "mixture16":  # modes of width >= 0.2 >> sigma_eps: also the data density itself
        assert float((res.logp - problem.log_prob(x)).abs().max()) / d < 1e-2
    # with the true p_T and a tight tolerance only the solver error remains (measured <= 4e-6 / dim)
    tight = log_likelihood(model, x, rtol=1e-7, atol=1e-7, prior_logp=exact_prior(model))
    assert float((tight.logp - model.log_prob(x, 1e-5)).abs().max()) / d < 1e-4
    # NFE is honest: one forward call per function evaluation, d backward passes each
    assert res.nfe == res.info["total_calls"] > 0
    assert res.info["backward_passes"] == d * res.nfe


def test_hutchinson_is_unbiased_within_its_standard_error():
    problem = mixture16()
    model = s.ExactScoreModel(problem, s.VPSDE())
    x = points(problem, 64, seed=3)
    exact = log_likelihood(model, x).logp
    spread = {}
    for probe, n in (("gaussian", 1), ("rademacher", 1), ("rademacher", 4)):
        est = log_likelihood(model, x, divergence="hutchinson", probe=probe, probes=n, seed=5)
        diff = est.logp - exact
        se = float(diff.std() / math.sqrt(diff.numel()))
        assert abs(float(diff.mean())) < 3 * se, (probe, n, float(diff.mean()), se)
        assert est.info["backward_passes"] == n * est.nfe
        spread[probe, n] = float(diff.std())
    # near-diagonal Jacobians: Rademacher probes (no diagonal variance) beat Gaussian ones, and the
    # variance falls like 1 / n with n probes
    assert spread["rademacher", 1] < 0.5 * spread["gaussian", 1]
    assert 0.3 < spread["rademacher", 4] / spread["rademacher", 1] < 0.75  # 1/2 expected; 64 points measure it to ~20%


def test_probes_are_seeded_per_point_whatever_the_batch():
    whole = draw_probes(7, (3,), range(10), n=2, kind="gaussian")
    part = draw_probes(7, (3,), range(4, 7), n=2, kind="gaussian")
    assert torch.equal(whole[4:7], part)
    rad = draw_probes(7, (3,), range(10), n=2, kind="rademacher")
    assert torch.equal(rad, torch.sign(whole)) and set(rad.unique().tolist()) == {-1.0, 1.0}
    problem = s.load_problem("gmm2")
    model = s.ExactScoreModel(problem, s.SubVPSDE())
    x = points(problem, 12)
    kw = {"divergence": "hutchinson", "probe": "gaussian", "seed": 11, "rtol": 1e-8, "atol": 1e-8}
    full = log_likelihood(model, x, **kw).logp
    batched = log_likelihood(model, x, batch_size=5, **kw).logp
    tail = log_likelihood(model, x[9:], start_index=9, **kw).logp
    # the same probes: only the shared adaptive steps differ, at the level of the tolerance
    assert float((full - batched).abs().max()) < 1e-5
    assert float((full[9:] - tail).abs().max()) < 1e-5


def test_divergence_helpers_on_a_linear_map():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 5, generator=g, dtype=torch.float64)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    v = x @ a.T
    assert torch.allclose(divergence_exact(v, x), torch.diagonal(a).sum().expand(3), atol=1e-12)
    assert torch.allclose(divergence_exact(v, x, chunk_elements=1), torch.diagonal(a).sum().expand(3), atol=1e-12)

    class Cube(torch.autograd.Function):  # a backward that vmap cannot batch (it leaves torch): the fallback
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return u**3

        @staticmethod
        def backward(ctx, grad):
            (u,) = ctx.saved_tensors
            return torch.from_numpy(grad.detach().numpy()) * 3 * u**2

    assert torch.allclose(divergence_exact(Cube.apply(x), x), (3 * x**2).sum(1), atol=1e-12)
    # the Hutchinson estimate z^T A z is exact in expectation; with 4000 probes within 4 standard errors
    z = draw_probes(1, (5,), range(3), n=4000, kind="gaussian")
    est = divergence_hutchinson(v, x, z)
    sym = 0.5 * (a + a.T)
    se = math.sqrt(2 * float((sym**2).sum()) / 4000)
    assert float((est - torch.diagonal(a).sum()).abs().max()) < 4 * se


def _zero_score_model(sde):
    """A network predicting eps = 0: score 0, so the flow is dx/dt = f(x, t) = a(t) x, linear in closed form."""
    return s.NetworkModel(lambda x, c: torch.zeros_like(x), sde, "eps")


def _zero_score_logp(sde, x, t_end=1e-5):
    # x_T = x alpha_T / alpha_eps, and the log-det of that map is D log(alpha_T / alpha_eps)
    ratio = float(sde.alpha(sde.T) / sde.alpha(t_end))
    d = x[0].numel()
    return sde.prior_logp(x * ratio) + d * math.log(ratio)


def test_bits_per_dim_offsets_and_hand_computation():
    # a model uniform on the data cube gives every 8-bit value probability 1/256: 8 bits, in both ranges
    d = 784
    assert bpd_offset("[0,1]") == 8.0 and bpd_offset("[-1,1]") == 7.0
    assert float(bits_per_dim_from_logp(torch.zeros(1, dtype=torch.float64), d, "[0,1]")) == pytest.approx(8.0, abs=1e-12)
    one_bit_per_dim = torch.full((1,), -d * math.log(2), dtype=torch.float64)
    assert float(bits_per_dim_from_logp(one_bit_per_dim, d, "[-1,1]")) == pytest.approx(8.0, abs=1e-12)

    # 8-bit images through a model whose density is known in closed form (zero score, VP)
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (6, 1, 2, 2), generator=g).double() / 255
    sde = s.VPSDE()
    model = _zero_score_model(sde)
    res = bits_per_dim(model, images, repeats=3, seed=4, data_range="[-1,1]")
    hand = []
    for r in range(3):
        u = dequantization_noise(4, r, (1, 2, 2), range(6), dtype=torch.float64)
        assert float(u.min()) >= 0 and float(u.max()) < 1
        y = 2 * ((255 * images + u) / 256) - 1
        hand.append(-_zero_score_logp(sde, y) / (4 * math.log(2)) + 7)
    hand = torch.stack(hand)
    assert torch.allclose(res.bpd, hand, atol=1e-5)
    assert res.mean == pytest.approx(float(hand.mean()), abs=1e-5)
    # the standard error is taken across images, of each image's mean over the repeats
    per_image = res.bpd.mean(0)
    assert res.stderr == pytest.approx(float(per_image.std() / math.sqrt(6)), rel=1e-9)


def test_bits_per_dim_agrees_between_data_ranges():
    # N(m, s^2) over [0, 1] data is N(2m - 1, 4 s^2) over the centred data: the same bits/dim (7 vs 8
    # offsets absorb the log-det of y = 2x - 1); only sigma_eps (1e-3 << s) breaks the equality. The true
    # p_T is used: the prior mismatch (alpha_T mu != 0) differs between the ranges, by ~5e-3 bits/dim
    images = torch.randint(0, 256, (8, 4), generator=torch.Generator().manual_seed(3)).double() / 255
    m, sd = torch.linspace(0.3, 0.7, 4, dtype=torch.float64), 0.2
    sde = s.VPSDE()
    unit = s.ExactScoreModel(s.Gaussian(m, sd), sde)
    centred = s.ExactScoreModel(s.Gaussian(2 * m - 1, 2 * sd), sde)
    kw = {"seed": 1, "rtol": 1e-7, "atol": 1e-7}
    a = bits_per_dim(unit, images, data_range="[0,1]", prior_logp=exact_prior(unit), **kw)
    b = bits_per_dim(centred, images, data_range="[-1,1]", prior_logp=exact_prior(centred), **kw)
    assert a.bpd.shape == (1, 8)
    assert torch.allclose(a.bpd, b.bpd, atol=1e-4)
    # and against the closed form of the dequantised point
    u = dequantization_noise(1, 0, (4,), range(8), dtype=torch.float64)
    hand = -unit.log_prob(dequantize(images, u), 1e-5) / (4 * math.log(2)) + 8
    assert torch.allclose(a.bpd[0], hand, atol=1e-5)


def test_encoding_of_gaussian_data_is_the_closed_form_transport():
    # for N(mu, s^2) data the flow keeps each coordinate's standard score: x_T = a_T mu + (std_T / std_eps)(x - a_eps mu)
    problem = s.load_problem("gaussian")
    sde = s.VPSDE()
    model = s.ExactScoreModel(problem, sde)
    x = points(problem, 10)
    enc = encode(model, x, rtol=1e-8, atol=1e-8)
    (a0, s0), (a1, s1) = sde.marginal(1e-5), sde.marginal(1.0)
    std0 = torch.sqrt(a0**2 * problem.std**2 + s0**2)
    std1 = torch.sqrt(a1**2 * problem.std**2 + s1**2)
    truth = a1 * problem.mean + std1 / std0 * (x - a0 * problem.mean)
    assert float((enc.out - truth).abs().max()) < 1e-5
    dec = decode(model, enc.out, rtol=1e-8, atol=1e-8)
    assert float((dec.out - x).abs().max()) < 1e-5


@pytest.mark.parametrize("sde", sorted(SDES))
def test_round_trip_error_is_small_at_tight_tolerance(sde):
    problem = s.load_problem("gmm8")
    model = s.ExactScoreModel(problem, SDES[sde]())
    x = points(problem, 20)
    res = round_trip(model, x, rtol=1e-7, atol=1e-7, batch_size=8)
    assert res.error.shape == (20,) and float(res.error.max()) <= 1e-3
    assert res.nfe_encode > 0 and res.nfe_decode > 0
    # the likelihood's latent is the encoding
    lat = log_likelihood(model, x, rtol=1e-7, atol=1e-7).latent
    assert float((lat - res.latent).abs().max()) < 1e-3 * float(res.latent.abs().max())


@pytest.mark.parametrize("kw,needle", [
    ({"divergence": "trace"}, "unknown divergence"),
    ({"divergence": "hutchinson", "probe": "uniform"}, "unknown probe"),
    ({"divergence": "hutchinson", "probes": 0}, "probes must be >= 1"),
    ({"rtol": 0.0}, "rtol and atol"),
    ({"t_end": 1.5}, "t_end must lie in"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_input_is_one_clear_error(kw, needle):
    model = s.ExactScoreModel(s.load_problem("gmm2"), s.VPSDE())
    with pytest.raises(ValueError, match=needle):
        log_likelihood(model, torch.zeros(3, 2, dtype=torch.float64), **kw)
    with pytest.raises(ValueError, match="non-finite"):
        log_likelihood(model, torch.full((3, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bits_per_dim(model, torch.full((3, 2), 1.5, dtype=torch.float64))
