"""Exact-score problems: closed-form log densities, scores, denoisers, file loading."""
from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import SDES
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from scoresde.exact import (
    EmpiricalDistribution,
    ExactScoreModel,
    Gaussian,
    GaussianMixture,
    ProblemError,
    builtin_problems,
    load_problem,
)
from scoresde.sde import VESDE

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _coefs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    alpha = 0.2 + 0.8 * torch.rand(n, dtype=F64, generator=g)
    sigma = 0.05 + 1.5 * torch.rand(n, dtype=F64, generator=g)
    return alpha, sigma


def gaussian() -> Gaussian:
    return Gaussian([0.5, -0.25, 1.0], [0.3, 0.1, 0.7])


def mixture2d() -> GaussianMixture:
    return GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.0], [1.0, 0.5], [0.0, -1.5]], [0.2, 0.4, 0.1])


PROBLEMS = {
    "gaussian": gaussian,
    "gmm2d": mixture2d,
    "gmm8": lambda: load_problem("gmm8"),
    "gmm64": lambda: load_problem("gmm64"),
    "gmm_shaped": lambda: GaussianMixture([0.6, 0.4], torch.randn(2, 2, 3, generator=_gen(9), dtype=F64),
                                          [0.3, 0.5], shape=(2, 3)),
}


@pytest.fixture(params=list(PROBLEMS))
def problem(request):
    return PROBLEMS[request.param]()


def _x(problem, n: int, seed: int = 1) -> torch.Tensor:
    shape = getattr(problem, "shape", (problem.dim,))
    return 1.5 * torch.randn((n,) + tuple(shape), dtype=F64, generator=_gen(seed))


# ---- closed-form marginal log densities ------------------------------------------------------

def _reference_log_prob(problem, x, alpha, sigma):
    """log p_t(x) through torch.distributions, independent of the library's formulas."""
    xf = x.reshape(x.shape[0], -1)
    if isinstance(problem, Gaussian):
        sd = torch.sqrt(alpha[:, None] ** 2 * problem.std**2 + sigma[:, None] ** 2)
        return Independent(Normal(alpha[:, None] * problem.mean, sd), 1).log_prob(xf)
    loc = alpha[:, None, None] * problem.means[None]  # (B, K, d)
    sd = torch.sqrt(alpha[:, None] ** 2 * problem.stds**2 + sigma[:, None] ** 2)[..., None].expand_as(loc)
    mix = MixtureSameFamily(Categorical(probs=problem.weights.expand(x.shape[0], -1)), Independent(Normal(loc, sd), 1))
    return mix.log_prob(xf)


def test_log_prob_matches_torch_distributions(problem):
    x = _x(problem, 16)
    alpha, sigma = _coefs(16)
    lp = problem.log_prob(x, alpha, sigma)
    assert lp.shape == (16,) and lp.dtype == F64
    torch.testing.assert_close(lp, _reference_log_prob(problem, x, alpha, sigma), rtol=1e-10, atol=1e-9)


def test_log_prob_scalar_coefficients(problem):
    x = _x(problem, 5)
    a, s = torch.full((5,), 0.7, dtype=F64), torch.full((5,), 0.4, dtype=F64)
    torch.testing.assert_close(problem.log_prob(x, 0.7, 0.4), problem.log_prob(x, a, s), rtol=0, atol=0)


def test_score_is_gradient_of_log_prob(problem):
    x = _x(problem, 16).requires_grad_(True)
    alpha, sigma = _coefs(16, seed=2)
    (grad,) = torch.autograd.grad(problem.log_prob(x, alpha, sigma).sum(), x)
    score = problem.score(x.detach(), alpha, sigma)
    assert score.shape == x.shape
    torch.testing.assert_close(score, grad, rtol=1e-9, atol=1e-10)


def test_denoised_satisfies_tweedie(problem):
    """(alpha D - x) / sigma^2 = score (Tweedie / Miyasawa)."""
    x = _x(problem, 16)
    alpha, sigma = _coefs(16, seed=3)
    D = problem.denoised(x, alpha, sigma)
    shape = (-1,) + (1,) * (x.ndim - 1)
    a, s = alpha.reshape(shape), sigma.reshape(shape)
    torch.testing.assert_close((a * D - x) / s**2, problem.score(x, alpha, sigma), rtol=1e-9, atol=1e-10)


def test_gaussian_denoiser_closed_form():
    """Posterior mean of a Gaussian: mu + alpha s^2 / (alpha^2 s^2 + sigma^2) (x - alpha mu)."""
    p = gaussian()
    x = _x(p, 8)
    alpha, sigma = _coefs(8, seed=4)
    mean, var = p.marginal_moments(0.6, 0.3)
    torch.testing.assert_close(mean, 0.6 * p.mean, rtol=1e-15, atol=0)
    torch.testing.assert_close(var, 0.36 * p.std**2 + 0.09, rtol=1e-15, atol=0)
    a, s = alpha[:, None], sigma[:, None]
    want = p.mean + a * p.std**2 / (a**2 * p.std**2 + s**2) * (x - a * p.mean)
    torch.testing.assert_close(p.denoised(x, alpha, sigma), want, rtol=1e-12, atol=1e-14)


def test_responsibilities_sum_to_one_and_match_bayes():
    p = mixture2d()
    x = _x(p, 32)
    alpha, sigma = _coefs(32, seed=5)
    r = p.responsibilities(x, alpha, sigma)
    torch.testing.assert_close(r.sum(-1), torch.ones(32, dtype=F64), rtol=0, atol=1e-14)
    assert (r >= 0).all()
    # Bayes: r_k = w_k N_k(x) / p(x)
    comp = []
    for k in range(3):
        sd = torch.sqrt(alpha**2 * p.stds[k] ** 2 + sigma**2)[:, None].expand(-1, 2)
        comp.append(Independent(Normal(alpha[:, None] * p.means[k], sd), 1).log_prob(x) + math.log(p.weights[k]))
    comp = torch.stack(comp, -1)
    torch.testing.assert_close(r, torch.softmax(comp, -1), rtol=1e-10, atol=1e-13)


def test_sampling_moments():
    p = mixture2d()
    n = 200_000
    x, k = p.sample(n, generator=_gen(6), return_labels=True)
    freq = torch.bincount(k, minlength=3).double() / n
    se = torch.sqrt(p.weights * (1 - p.weights) / n)
    assert ((freq - p.weights).abs() <= 4 * se).all()
    mean = (p.weights[:, None] * p.means).sum(0)
    assert ((x.mean(0) - mean).abs() <= 4 * x.std(0) / math.sqrt(n)).all()


# ---- Monte-Carlo identities ------------------------------------------------------------------

@pytest.mark.parametrize("sde", [cls() for cls in SDES.values()], ids=list(SDES))
def test_monte_carlo_identities_on_noised_mixture(sde):
    """With x0 ~ p0 and x_t = alpha x0 + sigma n:  E[D(x_t)] = E[x0] (total expectation),
    E[score(x_t)] = 0, and Stein's identity E[score(x_t) x_t^T] = -I."""
    p, n = mixture2d(), 100_000
    g = _gen(8)
    x0 = p.sample(n, generator=g)
    t = 0.3 if not isinstance(sde, VESDE) else 0.2  # sigma_t ~ 0.65 (VP), 0.09 (sub-VP), 0.055 (VE)
    alpha, sigma = (float(c) for c in sde.marginal(t))
    xt = alpha * x0 + sigma * torch.randn(n, 2, dtype=F64, generator=g)
    D = p.denoised(xt, alpha, sigma)
    diff = D - x0  # paired: E[D(x_t) - x0] = 0
    assert (diff.mean(0).abs() <= 4 * diff.std(0) / math.sqrt(n)).all()
    score = p.score(xt, alpha, sigma)
    assert (score.mean(0).abs() <= 4 * score.std(0) / math.sqrt(n)).all()
    outer = score[:, :, None] * xt[:, None, :]  # (n, 2, 2)
    err = outer.mean(0) + torch.eye(2, dtype=F64)
    assert (err.abs() <= 4 * outer.std(0) / math.sqrt(n)).all(), err
    # the denoiser is the best L2 estimate: beats the (unbiased) naive estimate x_t / alpha
    assert float((D - x0).pow(2).mean()) < float((xt / alpha - x0).pow(2).mean())


# ---- empirical distribution -------------------------------------------------------------------

POINTS = [[0.0, 0.0], [1.0, 2.0], [-1.5, 0.5]]


def _hand_denoiser(x, alpha, sigma):
    logits = [-((x[0] - alpha * p[0]) ** 2 + (x[1] - alpha * p[1]) ** 2) / (2 * sigma**2) for p in POINTS]
    m = max(logits)
    w = [math.exp(v - m) for v in logits]
    z = sum(w)
    return [sum(wi * p[j] for wi, p in zip(w, POINTS)) / z for j in range(2)]


def test_empirical_denoiser_is_softmax_weighted_mean():
    emp = EmpiricalDistribution(torch.tensor(POINTS, dtype=F64))
    assert emp.num_components == 3 and emp.shape == (2,)
    torch.testing.assert_close(emp.weights, torch.full((3,), 1 / 3, dtype=F64), rtol=1e-15, atol=0)
    xs = [[0.3, 0.9], [-0.7, 0.2], [2.0, -1.0], [0.5, 1.0]]
    coefs = [(1.0, 0.8), (0.6, 0.5), (0.9, 1.7), (0.3, 0.2)]
    x = torch.tensor(xs, dtype=F64)
    alpha = torch.tensor([c[0] for c in coefs], dtype=F64)
    sigma = torch.tensor([c[1] for c in coefs], dtype=F64)
    want = torch.tensor([_hand_denoiser(xi, a, s) for xi, (a, s) in zip(xs, coefs)], dtype=F64)
    torch.testing.assert_close(emp.denoised(x, alpha, sigma), want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(emp.score(x, alpha, sigma), (alpha[:, None] * want - x) / sigma[:, None] ** 2,
                               rtol=1e-10, atol=1e-12)


def test_empirical_denoiser_limits():
    pts = torch.tensor(POINTS, dtype=F64)
    emp = EmpiricalDistribution(pts)
    x = torch.tensor([[0.9, 1.7], [-1.2, 0.6], [0.1, -0.2]], dtype=F64)  # nearest: points 1, 2, 0
    # small sigma: exactly the nearest (scaled) training point
    D = emp.denoised(x, torch.full((3,), 1.0, dtype=F64), torch.full((3,), 1e-3, dtype=F64))
    torch.testing.assert_close(D, pts[[1, 2, 0]], rtol=0, atol=1e-300)
    # with alpha = 0.5 the nearest point is judged against alpha * p_i
    D = emp.denoised(x * 0.5, torch.full((3,), 0.5, dtype=F64), torch.full((3,), 1e-3, dtype=F64))
    torch.testing.assert_close(D, pts[[1, 2, 0]], rtol=0, atol=1e-300)
    # large sigma: D -> mean of the points, with a first correction O(|x| alpha / sigma^2)
    errs = []
    for s in (10.0, 100.0, 1000.0):
        D = emp.denoised(x, torch.full((3,), 0.8, dtype=F64), torch.full((3,), s, dtype=F64))
        errs.append(float((D - pts.mean(0)).abs().max()))
    assert errs[-1] < 1e-5
    assert errs[0] / errs[1] == pytest.approx(100, rel=0.05) and errs[1] / errs[2] == pytest.approx(100, rel=0.01)


def test_empirical_sample_returns_training_points():
    pts = torch.tensor(POINTS, dtype=F64)
    x, k = EmpiricalDistribution(pts).sample(3000, generator=_gen(1), return_labels=True)
    torch.testing.assert_close(x, pts[k], rtol=0, atol=0)
    freq = torch.bincount(k, minlength=3).double() / 3000
    assert ((freq - 1 / 3).abs() <= 4 * math.sqrt(2 / 9 / 3000)).all()


def test_zero_width_mixture_at_sigma_zero_raises():
    emp = EmpiricalDistribution(torch.tensor(POINTS, dtype=F64))
    with pytest.raises(ValueError, match="zero variance"):
        emp.score(torch.zeros(1, 2, dtype=F64), torch.ones(1, dtype=F64), torch.zeros(1, dtype=F64))


# ---- JSON files and named problems --------------------------------------------------------------

VALID = {"weights": [0.25, 0.75], "means": [[0.0, 1.0], [2.0, -1.0]], "stds": [0.1, 0.3]}


def _write(tmp_path, obj, name="m.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_from_json_round_trip(tmp_path):
    path = _write(tmp_path, VALID)
    for p in (GaussianMixture.from_json(path), load_problem(str(path))):
        torch.testing.assert_close(p.weights, torch.tensor(VALID["weights"], dtype=F64), rtol=0, atol=1e-15)
        torch.testing.assert_close(p.means, torch.tensor(VALID["means"], dtype=F64), rtol=0, atol=0)
        torch.testing.assert_close(p.stds, torch.tensor(VALID["stds"], dtype=F64), rtol=0, atol=0)
        ref = GaussianMixture(VALID["weights"], VALID["means"], VALID["stds"])
        x = _x(ref, 4)
        torch.testing.assert_close(p.log_prob(x, 0.8, 0.5), ref.log_prob(x, 0.8, 0.5), rtol=0, atol=0)


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2, 3]", "JSON object"),
    ({"weights": [1.0], "means": [[0.0]]}, "missing key.*stds"),
    ({**VALID, "colour": "red"}, "unknown key.*colour"),
    ({**VALID, "weights": [0.5, 0.6]}, "sum to 1"),
    ({**VALID, "weights": [1.5, -0.5]}, ">= 0"),
    ({**VALID, "stds": [0.1, 0.2, 0.3]}, "as many weights, means and stds"),
    ({**VALID, "weights": [1.0]}, "as many weights, means and stds"),
    ({**VALID, "stds": [0.1, -0.3]}, "stds must be finite and >= 0"),
    ({**VALID, "means": [[0.0, 1.0], [2.0]]}, "means"),
    ({**VALID, "means": [0.0, 1.0]}, "means must hold numbers \\(lists of numbers for means\\)"),
    ({**VALID, "weights": ["a", "b"]}, "numbers"),
])
def test_from_json_rejects_malformed_files(tmp_path, content, match):
    path = _write(tmp_path, content)
    with pytest.raises(ProblemError, match=match) as info:
        GaussianMixture.from_json(path)
    assert str(path) in str(info.value)
    with pytest.raises(ProblemError, match=match):
        load_problem(str(path))


def test_from_json_rejects_nan_std(tmp_path):
    path = _write(tmp_path, '{"weights": [0.5, 0.5], "means": [[0, 1], [1, 0]], "stds": [NaN, 0.1]}')
    with pytest.raises(ProblemError, match="std"):
        GaussianMixture.from_json(path)


def test_from_json_missing_file(tmp_path):
    with pytest.raises(ProblemError, match="not found"):
        GaussianMixture.from_json(tmp_path / "absent.json")
    with pytest.raises(ProblemError, match="not found"):
        load_problem(str(tmp_path / "absent.json"))


def test_load_problem_unknown_name():
    with pytest.raises(ProblemError, match="unknown problem 'no-such-problem'"):
        load_problem("no-such-problem")
    assert issubclass(ProblemError, ValueError)


def test_builtin_problems_match_their_descriptions():
    names = builtin_problems()
    assert set(names) == {"gaussian", "gmm8", "gmm2", "gmm64"}
    g = load_problem("gaussian")
    torch.testing.assert_close(g.mean, torch.tensor([0.5, -0.25], dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(g.std, torch.tensor([0.3, 0.1], dtype=F64), rtol=0, atol=0)
    ring = load_problem("gmm8")
    torch.testing.assert_close(ring.means.norm(dim=-1), torch.ones(8, dtype=F64), rtol=1e-14, atol=0)
    torch.testing.assert_close(ring.weights, torch.tensor([1 / 6, 1 / 12] * 4, dtype=F64), rtol=1e-14, atol=0)
    torch.testing.assert_close(ring.stds, torch.full((8,), 0.05, dtype=F64), rtol=0, atol=0)
    assert load_problem("gmm64").dim == 64 and load_problem("gmm2").num_components == 2
    # the same seeded problem every time
    torch.testing.assert_close(load_problem("gmm64").means, load_problem("gmm64").means, rtol=0, atol=0)


def test_invalid_constructor_arguments():
    with pytest.raises(ProblemError, match="std"):
        Gaussian([0.0, 1.0], [0.1, -0.1])
    with pytest.raises(ProblemError, match="shape"):
        GaussianMixture([1.0], [[0.0, 1.0, 2.0]], 0.1, shape=(2, 2))


# ---- ExactScoreModel -------------------------------------------------------------------------------

@pytest.mark.parametrize("sde", [cls() for cls in SDES.values()], ids=list(SDES))
def test_exact_score_model(sde):
    p = mixture2d()
    model = ExactScoreModel(p, sde)
    x = _x(p, 6)
    t = torch.tensor([0.01, 0.1, 0.3, 0.5, 0.8, 1.0], dtype=F64)
    alpha, sigma = sde.marginal(t)
    assert model.nfe == 0
    s = model.score(x, t)
    assert model.nfe == 1
    torch.testing.assert_close(s, p.score(x, alpha, sigma), rtol=0, atol=0)
    D = model.denoised(x, t)
    assert model.nfe == 2
    torch.testing.assert_close(D, p.denoised(x, alpha, sigma), rtol=0, atol=0)
    eps = model.eps(x, t)
    assert model.nfe == 3
    torch.testing.assert_close(eps, -sigma[:, None] * s, rtol=1e-12, atol=1e-14)
    lp = model.log_prob(x, t)
    assert model.nfe == 3  # closed-form log density is not a network call
    torch.testing.assert_close(lp, p.log_prob(x, alpha, sigma), rtol=0, atol=0)
    for _ in range(5):
        model.score(x, 0.5)
    assert model.nfe == 8
