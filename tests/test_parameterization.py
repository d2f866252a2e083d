"""The model contract: score / eps / data / v / scaled_score conversions and adapters."""
from __future__ import annotations

import itertools

import pytest
import torch
from helpers import SDES

from scoresde._tensor import like
from scoresde.exact import ExactScoreModel, Gaussian, GaussianMixture
from scoresde.parameterization import (
    PREDICTIONS,
    DenoiserModel,
    NetworkModel,
    continuous_time,
    convert,
    discrete_index,
    log_noise_level,
    noise_level,
    scaled_time,
    to_denoiser,
)
from scoresde.sde import VESDE, VPSDE

F64 = torch.float64


@pytest.fixture(params=list(SDES))
def sde(request):
    return SDES[request.param]()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _setup(sde, n: int = 12, seed: int = 0):
    """Random per-sample t in (0.01, 0.99), clean data x0, noise eps and x = alpha x0 + sigma eps."""
    g = _gen(seed)
    x0 = torch.randn(n, 3, 2, dtype=F64, generator=g)
    eps = torch.randn(n, 3, 2, dtype=F64, generator=g)
    t = 0.01 + 0.98 * torch.rand(n, dtype=F64, generator=g)
    alpha, sigma = sde.marginal(t)
    a, s = like(alpha, x0), like(sigma, x0)
    return t, x0, eps, a * x0 + s * eps, a, s


def _truth(x0, eps, a, s) -> dict[str, torch.Tensor]:
    """Every prediction kind at the true (x0, eps), from the formulas of Song et al. 2021 (not from the library)."""
    r = torch.sqrt(a**2 + s**2)
    return {"score": -eps / s, "eps": eps, "data": x0, "v": (a * eps - s * x0) / r, "scaled_score": -eps}


# ---- convert --------------------------------------------------------------------------------------

@pytest.mark.parametrize("src, dst", list(itertools.permutations(PREDICTIONS, 2)))
def test_convert_round_trip(sde, src, dst):
    t, x0, eps, x, a, s = _setup(sde)
    value = torch.randn(x.shape, dtype=F64, generator=_gen(1))  # an arbitrary prediction
    there = convert(value, x, a, s, src, dst)
    back = convert(there, x, a, s, dst, src)
    scale = value.abs().max()
    torch.testing.assert_close(back, value, rtol=1e-10, atol=1e-10 * float(scale))


@pytest.mark.parametrize("src, dst", list(itertools.product(PREDICTIONS, repeat=2)))
def test_convert_is_consistent_with_the_truth(sde, src, dst):
    """At the true (x0, eps) every pair of kinds maps truth to truth."""
    t, x0, eps, x, a, s = _setup(sde, seed=2)
    truth = _truth(x0, eps, a, s)
    got = convert(truth[src], x, a, s, src, dst)
    # relative to the size of the target; data from eps loses ~|x| / alpha * 1e-16
    torch.testing.assert_close(got, truth[dst], rtol=1e-9, atol=1e-9 * float(truth[dst].abs().max()))


def test_convert_named_identities(sde):
    t, x0, eps, x, a, s = _setup(sde, seed=3)
    torch.testing.assert_close(convert(eps, x, a, s, "eps", "data"), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(convert(eps, x, a, s, "eps", "score"), -eps / s, rtol=1e-12, atol=0)
    v = convert(eps, x, a, s, "eps", "v")
    torch.testing.assert_close(v, (a * eps - s * x0) / torch.sqrt(a**2 + s**2), rtol=1e-9, atol=1e-9)
    # score = (alpha D - x) / sigma^2
    torch.testing.assert_close(convert(x0, x, a, s, "data", "score"), (a * x0 - x) / s**2, rtol=1e-12, atol=0)


def test_convert_rejects_unknown_kinds():
    x = torch.zeros(2, 1, dtype=F64)
    one = torch.ones(2, 1, dtype=F64)
    for src, dst in [("noise", "score"), ("score", "noise"), ("x0", "x0")]:
        with pytest.raises(ValueError, match="unknown prediction"):
            convert(x, x, one, one, src, dst)
    with pytest.raises(ValueError, match="unknown prediction"):
        NetworkModel(lambda x, c: x, VPSDE(), "noise")


# ---- NetworkModel: adapters reproduce the closed-form score -------------------------------------

def _invert_sigma(sde, sig: torch.Tensor) -> torch.Tensor:
    """t with sde.sigma(t) = sig, by bisection (sigma is increasing on [0, 1] for all three SDEs)."""
    lo, hi = torch.zeros_like(sig), torch.ones_like(sig)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = sde.sigma(mid) < sig
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _time_inputs(sde):
    """(time_input, recover t from the network's conditioning c)."""
    return {
        "continuous_time": (continuous_time, lambda c: c),
        "scaled_time_999": (scaled_time(999), lambda c: c / 999),
        "noise_level": (noise_level, lambda c: _invert_sigma(sde, c)),
        "discrete_index": (discrete_index, lambda c: c / (sde.N - 1)),
    }


PROBLEM = Gaussian([0.5, -0.25, 1.0, 0.0, 0.3, -0.7], [0.3, 0.1, 0.7, 1.0, 0.5, 0.2])


def _exact_net(sde, kind, recover, seen):
    """A toy network: recovers t from c and returns the exact prediction of ``kind`` for PROBLEM."""

    def net(x, c):
        seen.append(c.clone())
        t = recover(c)
        alpha, sigma = sde.marginal(t)
        a, s = like(alpha, x), like(sigma, x)
        xf = x.reshape(x.shape[0], -1)
        var = (alpha[:, None] ** 2 * PROBLEM.std**2 + sigma[:, None] ** 2)
        score = (-(xf - alpha[:, None] * PROBLEM.mean) / var).reshape(x.shape)
        eps = -s * score
        x0 = (x + s**2 * score) / a
        out = {"score": score, "eps": eps, "data": x0, "v": (a * eps - s * x0) / torch.sqrt(a**2 + s**2),
               "scaled_score": s * score}
        return out[kind]

    return net


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("time_name", ["continuous_time", "scaled_time_999", "noise_level", "discrete_index"])
def test_network_model_reproduces_exact_score(sde, kind, time_name):
    time_input, recover = _time_inputs(sde)[time_name]
    g = _gen(4)
    n = 8
    x = torch.randn(n, 2, 3, dtype=F64, generator=g)
    if time_name == "discrete_index":  # times on the index grid, so rounding is exact
        t = torch.randint(10, sde.N - 10, (n,), generator=g).double() / (sde.N - 1)
    else:
        t = 0.02 + 0.96 * torch.rand(n, dtype=F64, generator=g)
    seen = []
    model = NetworkModel(_exact_net(sde, kind, recover, seen), sde, kind, time_input)
    ref = ExactScoreModel(PROBLEM, sde)
    score = model.score(x, t)
    assert model.nfe == 1 and len(seen) == 1
    torch.testing.assert_close(score, ref.score(x, t), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(model.denoised(x, t), ref.denoised(x, t), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(model.eps(x, t), ref.eps(x, t), rtol=1e-8, atol=1e-10)
    assert model.nfe == 3
    # the conditioning the net saw is what the time input promises
    c = seen[0]
    want = {"continuous_time": t, "scaled_time_999": 999 * t, "noise_level": sde.sigma(t),
            "discrete_index": torch.round(t * (sde.N - 1))}[time_name]
    torch.testing.assert_close(c, want, rtol=1e-14, atol=0)


def test_log_noise_level_is_edm_c_noise(sde):
    t = torch.linspace(0.05, 1.0, 7, dtype=F64)
    torch.testing.assert_close(log_noise_level(t, sde), 0.25 * torch.log(sde.sigma(t) / sde.alpha(t)),
                               rtol=1e-13, atol=1e-14)


def test_seed_vp_convention_score_is_minus_eps_over_sigma():
    """score = -net(x, 999 t) / sigma_t for score_sde_pytorch's VP eps-networks."""
    vp = VPSDE()
    net = lambda x, c: torch.sin(x) * (1 + c[:, None] / 999)  # noqa: E731 - an arbitrary eps-net
    model = NetworkModel(net, vp, "eps", scaled_time(999))
    x = torch.randn(5, 4, dtype=F64, generator=_gen(5))
    t = torch.tensor([0.001, 0.1, 0.4, 0.7, 1.0], dtype=F64)
    want = -torch.sin(x) * (1 + t[:, None]) / vp.sigma(t)[:, None]
    torch.testing.assert_close(model.score(x, t), want, rtol=1e-10, atol=0)


def test_seed_ve_convention_scaled_score_divided_by_sigma():
    """VE nets with scale_by_sigma output score * sigma, conditioned on sigma."""
    ve = VESDE()
    net = lambda x, c: torch.cos(x) * c[:, None]  # noqa: E731
    model = NetworkModel(net, ve, "scaled_score", noise_level)
    x = torch.randn(4, 3, dtype=F64, generator=_gen(6))
    t = torch.tensor([0.0, 0.2, 0.6, 1.0], dtype=F64)
    torch.testing.assert_close(model.score(x, t), torch.cos(x), rtol=1e-13, atol=0)


# ---- DenoiserModel / to_denoiser (k-diffusion's D(x, sigma) convention) --------------------------

MIX = GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.0], [1.0, 0.5], [0.0, -1.5]], [0.2, 0.4, 0.1])


def test_denoiser_round_trip_reproduces_exact_score(sde):
    exact = ExactScoreModel(MIX, sde)
    model = DenoiserModel(to_denoiser(exact), sde)
    g = _gen(7)
    x = 1.5 * torch.randn(10, 2, dtype=F64, generator=g)
    t = torch.cat([torch.tensor([0.01, 0.99], dtype=F64), 0.02 + 0.96 * torch.rand(8, dtype=F64, generator=g)])
    ref = ExactScoreModel(MIX, sde)
    torch.testing.assert_close(model.score(x, t), ref.score(x, t), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(model.denoised(x, t), ref.denoised(x, t), rtol=1e-8, atol=1e-10)
    assert model.nfe == 2 and exact.nfe == 2


def test_to_denoiser_is_the_ve_space_posterior_mean(sde):
    """D(x_ve, s) = E[x0 | x0 + s n = x_ve] whatever SDE the model lives on."""
    D = to_denoiser(ExactScoreModel(MIX, sde))
    g = _gen(8)
    x = 1.5 * torch.randn(6, 2, dtype=F64, generator=g)
    t = torch.tensor([0.05, 0.1, 0.3, 0.5, 0.7, 0.95], dtype=F64)
    s = sde.sigma_tilde(t)
    want = MIX.denoised(x, torch.ones(6, dtype=F64), s)
    torch.testing.assert_close(D(x, s), want, rtol=1e-8, atol=1e-10)
    # a scalar sigma is broadcast over the batch
    torch.testing.assert_close(D(x, float(s[2])), MIX.denoised(x, torch.ones(6, dtype=F64), s[2].expand(6)),
                               rtol=1e-8, atol=1e-10)


# ---- NFE: counted in ScoreModel, once per call, nowhere else ------------------------------------

def test_nfe_is_counted_in_score_model_only(sde):
    """The library's models supply predictions (predict / predict_for) and never count themselves;
    every score / denoised / eps call is exactly one NFE whatever kind the model answers in."""
    from scoresde.parameterization import ScoreModel

    for cls in (NetworkModel, DenoiserModel, ExactScoreModel):
        for name in ("output", "score", "denoised", "eps"):
            assert name not in vars(cls), (cls.__name__, name)

    class Both(ScoreModel):
        """Answers data requests with a closed-form denoiser, the rest from its score."""

        def __init__(self, sde):
            super().__init__(sde, "score")
            self.kinds = []

        def predict(self, x, t):
            self.kinds.append("score")
            return MIX.score(x, *self.sde.marginal(t))

        def predict_for(self, x, t, kind):
            if kind == "data":
                self.kinds.append("data")
                return MIX.denoised(x, *self.sde.marginal(t)), "data"
            return super().predict_for(x, t, kind)

    model = Both(sde)
    x = torch.randn(5, 2, dtype=F64, generator=_gen(3))
    t = torch.tensor([0.05, 0.2, 0.4, 0.6, 0.9], dtype=F64)
    alpha, sigma = sde.marginal(t)
    torch.testing.assert_close(model.denoised(x, t), MIX.denoised(x, alpha, sigma), rtol=0, atol=0)
    torch.testing.assert_close(model.eps(x, t), -sigma[:, None] * MIX.score(x, alpha, sigma), rtol=1e-12, atol=1e-14)
    model.score(x, t)
    assert model.kinds == ["data", "score", "score"] and model.nfe == 3


def test_discrete_index_needs_a_step_count():
    from scoresde.sde import SigmaSDE

    with pytest.raises(TypeError, match="N discretisation steps"):
        discrete_index(torch.tensor([0.5], dtype=F64), SigmaSDE(80.0))
