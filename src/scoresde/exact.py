"""Exact-score problems: data distributions whose noised marginals are known in closed form.

For data x_0 ~ p_0 and x_t = alpha x_0 + sigma n:

* Gaussian N(mu, diag(s^2)):  x_t ~ N(alpha mu, diag(alpha^2 s^2 + sigma^2)), score linear;
* isotropic mixture {w_k, mu_k, s_k}: x_t ~ sum_k w_k N(alpha mu_k, (alpha^2 s_k^2 + sigma^2) I), with
  responsibilities r_k(x) and score sum_k r_k (alpha mu_k - x) / (alpha^2 s_k^2 + sigma^2);
* the empirical distribution of a data set (every s_k = 0): the exact denoiser is a softmax-weighted
  mean of the data points - an exact score at image dimension without any training.

Every problem exposes ``log_prob``, ``score`` and ``denoised`` at marginal coefficients (alpha, sigma)
given per sample, and :class:`ExactScoreModel` turns a problem plus an SDE into a score model.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ._tensor import as_time
from .parameterization import ScoreModel
from .sde import SDE

__all__ = ["Gaussian", "GaussianMixture", "EmpiricalDistribution", "ExactScoreModel", "builtin_problems",
           "load_problem", "ProblemError"]


class ProblemError(ValueError):
    """A problem definition (name or JSON file) that cannot be used."""


def _coef(v: Tensor | float, n: int) -> Tensor:
    v = torch.as_tensor(v, dtype=torch.float64)
    return v.expand(n) if v.ndim == 0 else v


class Gaussian:
    """N(mean, diag(std^2)) in d dimensions."""

    def __init__(self, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor | float):
        self.mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        self.std = torch.as_tensor(std, dtype=torch.float64).expand_as(self.mean).clone()
        if not (torch.isfinite(self.std) & (self.std >= 0)).all() or not torch.isfinite(self.mean).all():
            raise ProblemError("Gaussian std must be finite and >= 0, and the mean finite")
        self.shape = tuple(self.mean.shape)
        self.dim = self.mean.numel()

    def _var(self, alpha: Tensor, sigma: Tensor) -> Tensor:  # (B, d)
        return alpha[:, None] ** 2 * self.std**2 + sigma[:, None] ** 2

    def marginal_moments(self, alpha: Tensor | float, sigma: Tensor | float) -> tuple[Tensor, Tensor]:
        """Mean and per-coordinate variance of x_t (for scalar alpha, sigma)."""
        alpha, sigma = torch.as_tensor(alpha, dtype=torch.float64), torch.as_tensor(sigma, dtype=torch.float64)
        return alpha * self.mean, alpha**2 * self.std**2 + sigma**2

    def log_prob(self, x: Tensor, alpha: Tensor | float = 1.0, sigma: Tensor | float = 0.0) -> Tensor:
        xf = x.reshape(x.shape[0], -1).double()
        a, s = _coef(alpha, x.shape[0]), _coef(sigma, x.shape[0])
        var = self._var(a, s)
        return (-0.5 * ((xf - a[:, None] * self.mean) ** 2 / var + torch.log(2 * math.pi * var))).sum(-1)

    def score(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        xf = x.reshape(x.shape[0], -1).double()
        a, s = _coef(alpha, x.shape[0]), _coef(sigma, x.shape[0])
        return (-(xf - a[:, None] * self.mean) / self._var(a, s)).to(x.dtype).reshape(x.shape)

    def denoised(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        xf = x.reshape(x.shape[0], -1).double()
        a, s = _coef(alpha, x.shape[0]), _coef(sigma, x.shape[0])
        gain = a[:, None] * self.std**2 / self._var(a, s)
        return (self.mean + gain * (xf - a[:, None] * self.mean)).to(x.dtype).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.mean + self.std * z


class GaussianMixture:
    """Isotropic Gaussian mixture sum_k w_k N(mu_k, s_k^2 I) in any dimension (s_k = 0 allowed)."""

    def __init__(self, weights: Sequence[float] | Tensor, means: Sequence[Sequence[float]] | Tensor,
                 stds: Sequence[float] | Tensor | float, shape: tuple[int, ...] | None = None):
        w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        mu = torch.as_tensor(means, dtype=torch.float64)
        mu = mu.reshape(mu.shape[0], -1) if mu.ndim != 1 else mu[:, None]
        s = torch.as_tensor(stds, dtype=torch.float64)
        s = s.expand(w.shape[0]).clone() if s.ndim == 0 else s.reshape(-1)
        k = w.shape[0]
        if k == 0 or mu.shape[0] != k or s.shape[0] != k:
            raise ProblemError(f"a mixture needs as many weights, means and stds; got {k}, {mu.shape[0]}, {s.shape[0]}")
        if (w < 0).any() or not math.isclose(float(w.sum()), 1.0, rel_tol=0, abs_tol=1e-6):
            raise ProblemError(f"mixture weights must be >= 0 and sum to 1 (sum is {float(w.sum()):.6g})")
        if not (torch.isfinite(s) & (s >= 0)).all() or not torch.isfinite(mu).all():
            raise ProblemError("mixture stds must be finite and >= 0, and means finite")
        if mu.shape[1] == 0:
            raise ProblemError("mixture means need at least one coordinate (the dimension is 0)")
        if float(s.max()) > MAX_MAGNITUDE or float(mu.abs().max()) > MAX_MAGNITUDE:
            raise ProblemError(f"mixture means and stds must be at most {MAX_MAGNITUDE:g} in magnitude "
                               "(their squares must stay finite)")
        self.weights, self.means, self.stds = w / w.sum(), mu, s
        self.dim = mu.shape[1]
        self.shape = tuple(shape) if shape is not None else (self.dim,)
        if math.prod(self.shape) != self.dim:
            raise ProblemError(f"shape {self.shape} does not hold {self.dim} values")
        self._mu_sq = (mu**2).sum(-1)

    @property
    def num_components(self) -> int:
        return self.weights.shape[0]

    def _log_joint(self, xf: Tensor, a: Tensor, s: Tensor) -> Tensor:
        """log w_k + log N(x; a mu_k, v_k I), shape (B, K)."""
        var = a[:, None] ** 2 * self.stds**2 + s[:, None] ** 2  # (B, K)
        if (var <= 0).any():
            raise ValueError("the mixture's marginal has zero variance here (s_k = 0 at sigma = 0)")
        sq = (xf**2).sum(-1, keepdim=True) - 2 * a[:, None] * (xf @ self.means.T) + a[:, None] ** 2 * self._mu_sq
        sq = sq.clamp_min(0)
        return torch.log(self.weights) - 0.5 * sq / var - 0.5 * self.dim * torch.log(2 * math.pi * var)

    def _prep(self, x: Tensor, alpha, sigma):
        xf = x.reshape(x.shape[0], -1).double()
        return xf, _coef(alpha, x.shape[0]).to(xf.device), _coef(sigma, x.shape[0]).to(xf.device)

    def log_prob(self, x: Tensor, alpha: Tensor | float = 1.0, sigma: Tensor | float = 0.0) -> Tensor:
        """log p_t(x) per sample, with x_t = alpha x_0 + sigma n."""
        return torch.logsumexp(self._log_joint(*self._prep(x, alpha, sigma)), -1)

    def responsibilities(self, x: Tensor, alpha: Tensor | float = 1.0, sigma: Tensor | float = 0.0) -> Tensor:
        """p_t(k | x), shape (B, K)."""
        return torch.softmax(self._log_joint(*self._prep(x, alpha, sigma)), -1)

    def score(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        xf, a, s = self._prep(x, alpha, sigma)
        r = torch.softmax(self._log_joint(xf, a, s), -1)
        var = a[:, None] ** 2 * self.stds**2 + s[:, None] ** 2
        rv = r / var  # (B, K)
        out = a[:, None] * (rv @ self.means) - rv.sum(-1, keepdim=True) * xf
        return out.to(x.dtype).reshape(x.shape)

    def denoised(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """E[x_0 | x_t = x] = sum_k r_k (mu_k + a s_k^2 / v_k (x - a mu_k))."""
        xf, a, s = self._prep(x, alpha, sigma)
        r = torch.softmax(self._log_joint(xf, a, s), -1)
        var = a[:, None] ** 2 * self.stds**2 + s[:, None] ** 2
        gain = a[:, None] * self.stds**2 / var  # (B, K)
        out = (r * (1 - a[:, None] * gain)) @ self.means + (r * gain).sum(-1, keepdim=True) * xf
        return out.to(x.dtype).reshape(x.shape)

    def condition(self, values: Tensor, mask: Tensor, noise_std: float = 0.0) -> GaussianMixture:
        """The law of the coordinates where ``mask`` is 0 given ``values`` where it is 1, in closed form.

        Components are isotropic, so the unknown coordinates of component k stay N(mu_kb, s_k^2 I) and only
        the weights change: w_k' proportional to w_k N(values_a; mu_ka, s_k^2 I). With ``noise_std`` the
        observation is y = x_a + noise_std n (Bayes with A Sigma_k A^T + sigma_y^2 I): w_k' proportional to
        w_k N(y; mu_ka, (s_k^2 + noise_std^2) I), the unknown coordinates' components unchanged.
        """
        m = torch.as_tensor(mask, dtype=torch.bool).reshape(-1)
        v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        if m.shape[0] != self.dim or v.shape[0] != self.dim:
            raise ValueError(f"values and mask need {self.dim} entries")
        if not bool(m.any()) or bool(m.all()):
            raise ValueError("the mask must mark some coordinates known and some unknown")
        if bool((self.stds == 0).any()):
            raise ValueError("conditioning needs components of positive std")
        if not (math.isfinite(float(noise_std)) and float(noise_std) >= 0):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        da = int(m.sum())
        var = self.stds**2 + float(noise_std) ** 2
        sq = ((v[m][None, :] - self.means[:, m]) ** 2).sum(-1)
        logw = torch.log(self.weights) - 0.5 * sq / var - 0.5 * da * torch.log(var)
        return GaussianMixture(torch.softmax(logw, 0), self.means[:, ~m], self.stds)

    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = (self.means[k] + self.stds[k, None] * z).reshape((n,) + self.shape)
        return (x, k) if return_labels else x

    @classmethod
    def from_json(cls, path: str | Path) -> GaussianMixture:
        """Read ``{"weights": [...], "means": [[...], ...], "stds": [...]}``."""
        path = Path(path)
        if not path.exists():
            raise ProblemError(f"mixture file not found: {path}")
        if not path.is_file():
            raise ProblemError(f"mixture file {path} is not a file")
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ProblemError(f"mixture file {path} cannot be read: {e.strerror or e}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ProblemError(f"mixture file {path} is not valid JSON: {e}") from None
        except RecursionError:
            raise ProblemError(f"mixture file {path} is nested too deeply") from None
        if not isinstance(spec, dict):
            raise ProblemError(f"mixture file {path} must hold a JSON object with weights, means, stds")
        missing = [k for k in ("weights", "means", "stds") if k not in spec]
        unknown = sorted(set(spec) - {"weights", "means", "stds"})
        if missing or unknown:
            raise ProblemError(f"mixture file {path}: " + "; ".join(
                ([f"missing key(s) {', '.join(missing)}"] if missing else [])
                + ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])))
        for key in ("weights", "means", "stds"):
            bad = _non_number(spec[key], depth=2 if key == "means" else 1)
            if bad is not None:
                raise ProblemError(f"mixture file {path}: {key} must hold numbers (lists of numbers for means), "
                                   f"found {bad}")
        try:
            means = torch.as_tensor(spec["means"], dtype=torch.float64)
            weights = torch.as_tensor(spec["weights"], dtype=torch.float64)
            stds = torch.as_tensor(spec["stds"], dtype=torch.float64)
        except (TypeError, ValueError) as e:
            raise ProblemError(f"mixture file {path}: weights, means and stds must be numbers ({e})") from None
        if means.ndim != 2:
            raise ProblemError(f"mixture file {path}: means must be a list of equal-length lists of numbers")
        if weights.ndim != 1 or stds.ndim != 1:
            raise ProblemError(f"mixture file {path}: weights and stds must be lists of numbers")
        try:
            return cls(weights, means, stds)
        except ProblemError as e:
            raise ProblemError(f"mixture file {path}: {e}") from None


class EmpiricalDistribution(GaussianMixture):
    """The empirical distribution of a data set: equal weights, zero width (exact score at any dimension)."""

    def __init__(self, points: Tensor):
        points = torch.as_tensor(points, dtype=torch.float64)
        n = points.shape[0]
        super().__init__(torch.full((n,), 1.0 / n, dtype=torch.float64), points.reshape(n, -1), 0.0,
                         shape=tuple(points.shape[1:]))

    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        k = torch.randint(self.num_components, (n,), generator=generator)
        x = self.means[k].reshape((n,) + self.shape)
        return (x, k) if return_labels else x


class ExactScoreModel(ScoreModel):
    """A closed-form problem over an SDE as a score model; each call counts as one NFE (in :class:`ScoreModel`)."""

    def __init__(self, problem: Gaussian | GaussianMixture, sde: SDE):
        super().__init__(sde, "score")
        self.problem = problem

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = self.sde.marginal(t)
        return self.problem.score(x, alpha, sigma)

    def predict_for(self, x: Tensor, t: Tensor, kind: str) -> tuple[Tensor, str]:
        # the closed-form denoiser for data requests, exact where converting the score would lose digits
        if kind == "data":
            alpha, sigma = self.sde.marginal(t)
            return self.problem.denoised(x, alpha, sigma), "data"
        return self.predict(x, t), "score"

    def log_prob(self, x: Tensor, t: Tensor | float) -> Tensor:
        """log p_t(x) in closed form (not counted as an NFE)."""
        alpha, sigma = self.sde.marginal(as_time(t, x))
        return self.problem.log_prob(x, alpha, sigma)


def _ring(k: int, radius: float, std: float, weights: Sequence[float]) -> GaussianMixture:
    ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], -1)
    return GaussianMixture(weights, means, std)


def _gmm64() -> GaussianMixture:
    g = torch.Generator().manual_seed(64)
    means = torch.randn(4, 64, generator=g, dtype=torch.float64) * 0.5
    return GaussianMixture([0.4, 0.3, 0.2, 0.1], means, [0.1, 0.1, 0.2, 0.2])


def builtin_problems() -> dict[str, tuple[str, object]]:
    """Named built-in problems: name -> (description, factory)."""
    return {
        "gaussian": ("2-D Gaussian N((0.5, -0.25), diag(0.3^2, 0.1^2))",
                     lambda: Gaussian([0.5, -0.25], [0.3, 0.1])),
        "gmm8": ("sharp 8-mode 2-D ring (radius 1, std 0.05), weights alternating 1/6 and 1/12",
                 lambda: _ring(8, 1.0, 0.05, [1 / 6, 1 / 12] * 4)),
        "gmm2": ("two 1-D-separated modes in 2-D, weights 0.8 / 0.2, std 0.1",
                 lambda: GaussianMixture([0.8, 0.2], [[-0.6, 0.0], [0.6, 0.0]], [0.1, 0.1])),
        "gmm64": ("4-mode mixture in 64 dimensions (weights 0.4/0.3/0.2/0.1)", _gmm64),
    }


#: the largest |mean| or std of a mixture (squares and sums of squares stay far from float64 overflow)
MAX_MAGNITUDE = 1e100


def _non_number(value, depth: int) -> str | None:
    """None if ``value`` is a list (nested ``depth`` deep) of real numbers (no booleans); else what was found."""
    if depth == 0:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else repr(value)[:40]
    if not isinstance(value, list):
        return repr(value)[:40]
    for v in value:
        bad = _non_number(v, depth - 1)
        if bad is not None:
            return bad
    return None


def load_problem(name_or_path: str) -> Gaussian | GaussianMixture:
    """A built-in problem by name, or a mixture from a JSON file."""
    problems = builtin_problems()
    if name_or_path in problems:
        return problems[name_or_path][1]()
    if name_or_path.endswith(".json") or Path(name_or_path).exists():
        return GaussianMixture.from_json(name_or_path)
    raise ProblemError(f"unknown problem {name_or_path!r}: use one of {', '.join(problems)} or a .json mixture file")
