"""Forward SDEs of Song et al. (ICLR 2021): VE, VP, sub-VP, k-diffusion's sigma SDE, and the discrete
SMLD / DDPM chains.

Every SDE is written through its Gaussian marginal x_t = alpha_t x_0 + sigma_t n (n ~ N(0, I)),
forward dx = f(x, t) dt + g(t) dw with linear drift f(x, t) = a(t) x. Samplers only use the
methods of the base class :class:`SDE` (and of the mixins below); none of them asks which SDE it holds.

The continuous SDE knows nothing of a step count. Notions of score_sde_pytorch's N-step
discretisation live in two mixins: :class:`Discretized` (``N``, the step ``discretize`` of the
reverse-diffusion predictor, Song et al. eq. 47, and the Langevin corrector's ``corrector_alpha``;
VE, VP and sub-VP) and :class:`DiscreteForm` (a :class:`Discretized` SDE that is the limit of a
discrete chain, ``discrete()``: VE -> :class:`SMLDChain`, VP -> :class:`DDPMChain`; sub-VP has none).
VP and sub-VP share their beta schedule, alpha_t and drift through :class:`BetaSDE`.

Time arguments are per-sample float64 vectors (or scalars); coefficients are returned as float64
tensors of t's shape and broadcast against x with :func:`scoresde._tensor.like`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from ._tensor import like

__all__ = ["SDE", "Discretized", "DiscreteForm", "VESDE", "BetaSDE", "VPSDE", "SubVPSDE", "SigmaSDE", "DiscreteVPSDE",
           "SMLDChain", "DDPMChain", "euler_maruyama_discretization"]


def _t(t: Tensor | float) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


class SDE(ABC):
    """A linear forward SDE on [0, T] with Gaussian marginals N(alpha_t x_0, sigma_t^2 I)."""

    T: float = 1.0
    #: default end time of sampling (the paper's sampling epsilon)
    t_end: float = 1e-3
    #: standard deviation of the prior p_T = N(0, prior_std^2 I)
    prior_std: float = 1.0

    # ---- the four quantities that define an SDE -------------------------------------------
    @abstractmethod
    def log_alpha(self, t: Tensor) -> Tensor:
        """log alpha_t, the log of the signal scale of the marginal."""

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """sigma_t, the noise standard deviation of the marginal."""

    @abstractmethod
    def drift_coef(self, t: Tensor) -> Tensor:
        """a(t) in the linear drift f(x, t) = a(t) x."""

    @abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """g(t), the diffusion coefficient."""

    @abstractmethod
    def t_from_sigma_tilde(self, sigma_tilde: Tensor) -> Tensor:
        """Inverse of sigma_tilde(t) = sigma_t / alpha_t (k-diffusion's sigma)."""

    # ---- derived quantities -----------------------------------------------------------------
    def alpha(self, t: Tensor | float) -> Tensor:
        return torch.exp(self.log_alpha(_t(t)))

    def marginal(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """(alpha_t, sigma_t) of the marginal x_t | x_0 ~ N(alpha_t x_0, sigma_t^2 I)."""
        t = _t(t)
        return self.alpha(t), self.sigma(t)

    def sigma_tilde(self, t: Tensor | float) -> Tensor:
        """sigma_t / alpha_t: the noise level of the equivalent VE process (k-diffusion's sigma)."""
        t = _t(t)
        return self.sigma(t) / self.alpha(t)

    def log_snr(self, t: Tensor | float) -> Tensor:
        """lambda_t = log(alpha_t / sigma_t), half the log signal-to-noise ratio."""
        t = _t(t)
        return self.log_alpha(t) - torch.log(self.sigma(t))

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr`."""
        return self.t_from_sigma_tilde(torch.exp(-_t(lam)))

    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        """f(x, t)."""
        return like(self.drift_coef(_t(t)), x) * x

    def marginal_sample(self, x0: Tensor, t: Tensor | float, noise: Tensor) -> Tensor:
        """alpha_t x_0 + sigma_t n."""
        alpha, sigma = self.marginal(t)
        return like(alpha, x0) * x0 + like(sigma, x0) * noise

    def reverse_drift(self, x: Tensor, t: Tensor | float, score: Tensor) -> Tensor:
        """Drift of the reverse-time SDE, f - g^2 score (Song et al. eq. 6); time runs T -> t_end."""
        g2 = like(self.diffusion(_t(t)) ** 2, x)
        return self.drift(x, t) - g2 * score

    def probability_flow_drift(self, x: Tensor, t: Tensor | float, score: Tensor) -> Tensor:
        """Velocity of the probability-flow ODE, f - g^2 score / 2 (Song et al. eq. 13)."""
        g2 = like(self.diffusion(_t(t)) ** 2, x)
        return self.drift(x, t) - 0.5 * g2 * score

    def prior_sample(self, noise: Tensor) -> Tensor:
        """A draw from p_T given standard normal noise."""
        return self.prior_std * noise

    def prior_logp(self, z: Tensor) -> Tensor:
        """log p_T(z) per sample (nats)."""
        d = z[0].numel()
        s2 = self.prior_std**2
        sq = z.reshape(z.shape[0], -1).double().pow(2).sum(-1)
        return -0.5 * d * math.log(2 * math.pi * s2) - 0.5 * sq / s2

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


def euler_maruyama_discretization(sde: SDE, x: Tensor, t: Tensor | float,
                                  t_next: Tensor | float) -> tuple[Tensor, Tensor]:
    """(f_i, G_i) of the Euler-Maruyama step of ``sde`` over [t_next, t]: f_i = f(x, t) dt, G_i = g(t) sqrt(dt)."""
    t, t_next = _t(t), _t(t_next)
    dt = t - t_next
    return sde.drift(x, t) * like(dt, x), sde.diffusion(t) * torch.sqrt(dt)


class Discretized(ABC):
    """Mixin of an SDE run on score_sde_pytorch's N-step discretisation.

    ``N`` is the number of steps; ``discretize`` gives the step the reverse-diffusion predictor
    inverts (Song et al. eq. 47; Euler-Maruyama unless the SDE has a better one) and
    ``corrector_alpha`` the Langevin corrector's alpha_i (Song et al. Algorithm 5).
    """

    #: number of discretisation steps
    N: int

    def discretize(self, x: Tensor, t: Tensor | float, t_next: Tensor | float) -> tuple[Tensor, Tensor]:
        """(f_i, G_i) of the discretised forward step over [t_next, t]: x_t = x_next + f_i + G_i z.

        The default is Euler-Maruyama; VE and VP override it with the SMLD / DDPM steps.
        """
        return euler_maruyama_discretization(self, x, t, t_next)

    @abstractmethod
    def corrector_alpha(self, t: Tensor | float) -> Tensor:
        """alpha_i of the Langevin corrector's step size (1 for VE, 1 - beta_i for VP / sub-VP)."""


class DiscreteForm(Discretized):
    """Mixin of a :class:`Discretized` SDE that is the N -> infinity limit of a discrete chain."""

    @abstractmethod
    def discrete(self) -> SMLDChain | DDPMChain:
        """score_sde_pytorch's discrete form with N steps."""


class VESDE(SDE, DiscreteForm):
    """Variance-exploding SDE (SMLD): alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000, t_end: float = 1e-5):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VESDE needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max, self.N, self.t_end = float(sigma_min), float(sigma_max), int(N), float(t_end)
        self.prior_std = self.sigma_max

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def log_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_t(t))

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(_t(t) * self._log_ratio)

    def drift_coef(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_t(t))

    def diffusion(self, t: Tensor) -> Tensor:
        return self.sigma(t) * math.sqrt(2 * self._log_ratio)

    def t_from_sigma_tilde(self, sigma_tilde: Tensor) -> Tensor:
        return torch.log(_t(sigma_tilde) / self.sigma_min) / self._log_ratio

    def discretize(self, x, t, t_next):
        """SMLD step: f = 0, G = sqrt(sigma_t^2 - sigma_next^2)."""
        g = torch.sqrt(self.sigma(_t(t)) ** 2 - self.sigma(_t(t_next)) ** 2)
        return torch.zeros_like(x), g

    def corrector_alpha(self, t: Tensor | float) -> Tensor:
        return torch.ones_like(_t(t))

    def discrete(self) -> SMLDChain:
        """score_sde_pytorch's discrete form: N geometric noise levels from sigma_min to sigma_max."""
        return SMLDChain(self.sigma_min, self.sigma_max, self.N)


class BetaSDE(SDE, Discretized):
    """What VP and sub-VP share: beta(t) = beta_min + t (beta_max - beta_min), drift -beta(t) x / 2 and
    alpha_t = exp(-int_0^t beta / 2); each defines its own sigma_t and g(t).

    ``N`` discretises the beta schedule (beta_i = beta(t) / N, the Langevin corrector's alpha_i = 1 - beta_i).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000, t_end: float = 1e-3):
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"{type(self).__name__} needs 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max, self.N, self.t_end = float(beta_min), float(beta_max), int(N), float(t_end)

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + _t(t) * (self.beta_max - self.beta_min)

    def log_alpha(self, t: Tensor) -> Tensor:
        t = _t(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def drift_coef(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def _t_from_log_alpha(self, log_alpha: Tensor) -> Tensor:
        # L = -log alpha = t^2 (bmax - bmin) / 4 + t bmin / 2; the positive root, in a stable form
        L = -log_alpha
        db = self.beta_max - self.beta_min
        denom = 0.5 * self.beta_min + torch.sqrt(0.25 * self.beta_min**2 + db * L)
        return torch.where(L > 0, 2 * L / torch.where(L > 0, denom, 1.0), torch.zeros_like(L))

    def corrector_alpha(self, t: Tensor | float) -> Tensor:
        return 1 - self.beta(t) / self.N


class VPSDE(BetaSDE, DiscreteForm):
    """Variance-preserving SDE (DDPM): beta(t) = beta_min + t (beta_max - beta_min), sigma_t^2 = 1 - alpha_t^2."""

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.beta(t))

    def t_from_sigma_tilde(self, sigma_tilde: Tensor) -> Tensor:
        # sigma_tilde^2 = 1/alpha^2 - 1  ->  log alpha = -log1p(sigma_tilde^2) / 2
        return self._t_from_log_alpha(-0.5 * torch.log1p(_t(sigma_tilde) ** 2))

    def discretize(self, x, t, t_next):
        """DDPM step over [t_next, t]: f = (sqrt(1 - beta_i) - 1) x, G = sqrt(beta_i).

        beta_i = 1 - alpha_t^2 / alpha_next^2 is the exact VP transition between the two times
        (= beta(t) dt + O(dt^2), score_sde_pytorch's beta_i on its uniform grid), so beta_i < 1 on any grid.
        """
        log_ratio = self.log_alpha(_t(t)) - self.log_alpha(_t(t_next))
        beta_i = -torch.expm1(2 * log_ratio)
        return (like(torch.exp(log_ratio), x) - 1) * x, torch.sqrt(beta_i)

    def discrete(self) -> DDPMChain:
        """score_sde_pytorch's discrete form: DDPM with beta_i linear from beta_min/N to beta_max/N."""
        return DDPMChain(self.beta_min, self.beta_max, self.N)


class SubVPSDE(BetaSDE):
    """sub-VP SDE: VP drift, g^2 = beta(t) (1 - exp(-2 int_0^t beta)), sigma_t = 1 - alpha_t^2.

    It has no discrete chain (Song et al. 2021 give none): no ``discrete()``, and its
    reverse-diffusion step is Euler-Maruyama.
    """

    def sigma(self, t: Tensor) -> Tensor:
        return -torch.expm1(2 * self.log_alpha(t))

    def diffusion(self, t: Tensor) -> Tensor:
        # exp(-2 int_0^t beta) = alpha_t^4
        return torch.sqrt(self.beta(t) * -torch.expm1(4 * self.log_alpha(t)))

    def t_from_sigma_tilde(self, sigma_tilde: Tensor) -> Tensor:
        # sigma_tilde = (1 - alpha^2) / alpha = 2 sinh(-log alpha)  ->  log alpha = -asinh(sigma_tilde / 2)
        return self._t_from_log_alpha(-torch.asinh(_t(sigma_tilde) / 2))


class SigmaSDE(SDE):
    """The VE SDE indexed by its own noise level: t = sigma, alpha = 1, g(t)^2 = d sigma^2 / dt = 2 t.

    k-diffusion's view of a sampler: the times of a grid are its sigmas (T = sigma_max, t_end = sigma_min).
    """

    def __init__(self, sigma_max: float, sigma_min: float = 0.0):
        self.T, self.t_end, self.prior_std = float(sigma_max), float(sigma_min), float(sigma_max)

    def log_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(torch.as_tensor(t, dtype=torch.float64))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.as_tensor(t, dtype=torch.float64)

    def drift_coef(self, t: Tensor) -> Tensor:
        return torch.zeros_like(torch.as_tensor(t, dtype=torch.float64))

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(2 * torch.as_tensor(t, dtype=torch.float64))

    def t_from_sigma_tilde(self, sigma_tilde: Tensor) -> Tensor:
        return torch.as_tensor(sigma_tilde, dtype=torch.float64)


class DiscreteVPSDE(SDE, Discretized):
    """The VP SDE through a discrete-time DDPM schedule (Ho et al. 2020): any alphas_cumprod abar_0..abar_{N-1}.

    Step i of the chain, x_i = sqrt(abar_i) x_0 + sqrt(1 - abar_i) n, sits at t_i = (i + 1) / N; log alpha_t is
    the piecewise-linear interpolation in t of 0 (t = 0, the data) and log sqrt(abar_i) (t = (i + 1) / N), and
    sigma_t^2 = 1 - alpha_t^2. So the marginal at every t_i is the chain's exactly, and in between it is the VP SDE
    with the piecewise-constant beta(t) = -2 d log alpha_t / dt (f = -beta x / 2, g^2 = beta: variance preserving).
    A network trained on the chain's integer timesteps sees ``timestep(t) = N t - 1`` (exact at t_i, fractional
    in between; DPM-Solver's convention for discrete-time models). ``t_end`` defaults to 1 / N (timestep 0).
    """

    def __init__(self, alphas_cumprod: Tensor, t_end: float | None = None):
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).reshape(-1)
        if abar.numel() < 2 or not bool(((abar > 0) & (abar < 1)).all()) or not bool((abar[1:] < abar[:-1]).all()):
            raise ValueError("DiscreteVPSDE needs a strictly decreasing alphas_cumprod in (0, 1) of length >= 2 "
                             "(a zero-terminal-SNR schedule, abar_{N-1} = 0, has no Gaussian prior)")
        self.N = int(abar.numel())
        self.alphas_cumprod = abar
        #: log alpha at the nodes t = k / N, k = 0..N
        self._nodes = torch.cat([torch.zeros(1, dtype=torch.float64), 0.5 * torch.log(abar)])
        self.t_end = 1.0 / self.N if t_end is None else float(t_end)

    def _segment(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(k, u): t = (k + u) / N with k in 0..N-1 and u in [0, 1] (clamped to [0, T])."""
        s = _t(t).clamp(0.0, 1.0) * self.N
        k = torch.clamp(torch.floor(s), 0, self.N - 1)
        return k.long(), s - k

    def log_alpha(self, t: Tensor) -> Tensor:
        k, u = self._segment(t)
        nodes = self._nodes.to(k.device)
        return nodes[k] + u * (nodes[k + 1] - nodes[k])

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

    def beta(self, t: Tensor) -> Tensor:
        """beta(t) = -2 d log alpha / dt, constant on each segment [k / N, (k + 1) / N)."""
        k, _ = self._segment(t)
        nodes = self._nodes.to(k.device)
        return -2 * self.N * (nodes[k + 1] - nodes[k])

    def drift_coef(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.beta(t))

    def t_from_sigma_tilde(self, sigma_tilde: Tensor) -> Tensor:
        # log alpha = -log1p(sigma_tilde^2) / 2, then invert the decreasing piecewise-linear log alpha
        la = -0.5 * torch.log1p(_t(sigma_tilde) ** 2)
        nodes = self._nodes.to(la.device)
        neg = -nodes  # increasing
        flat = la.reshape(-1)
        k = torch.clamp(torch.searchsorted(neg, (-flat).contiguous(), right=True) - 1, 0, self.N - 1)
        u = (flat - nodes[k]) / (nodes[k + 1] - nodes[k])
        return torch.clamp((k + u.clamp(0.0, 1.0)) / self.N, 0.0, 1.0).reshape(la.shape)

    def timestep(self, t: Tensor | float) -> Tensor:
        """The network's timestep input N t - 1 (the integer step index i at t = (i + 1) / N)."""
        return _t(t) * self.N - 1

    def discretize(self, x, t, t_next):
        """DDPM step over [t_next, t]: f = (sqrt(1 - beta_i) - 1) x, G = sqrt(beta_i), beta_i = 1 - alpha_t^2 / alpha_next^2."""
        log_ratio = self.log_alpha(_t(t)) - self.log_alpha(_t(t_next))
        return (like(torch.exp(log_ratio), x) - 1) * x, torch.sqrt(-torch.expm1(2 * log_ratio))

    def corrector_alpha(self, t: Tensor | float) -> Tensor:
        """alpha_i = 1 - beta_i of the step at t (abar_i / abar_{i-1} on the chain)."""
        return torch.exp(-self.beta(t) / self.N)

    def __repr__(self) -> str:
        return f"DiscreteVPSDE(N={self.N}, abar_0={float(self.alphas_cumprod[0]):.6g}, " \
               f"abar_N-1={float(self.alphas_cumprod[-1]):.6g}, t_end={self.t_end:g})"


@dataclass(frozen=True)
class SMLDChain:
    """SMLD's discrete noise levels (Song & Ermon 2019): sigma_i geometric, i = 0..N-1.

    The forward chain x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z, x_0 = data + sigma_0 z,
    has marginal N(data, sigma_i^2 I); level i sits at t_i = i / (N - 1) of the continuous VE SDE.
    """

    sigma_min: float
    sigma_max: float
    N: int

    @property
    def sigmas(self) -> Tensor:
        return torch.exp(torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), self.N, dtype=torch.float64))

    def times(self) -> Tensor:
        return torch.linspace(0, 1, self.N, dtype=torch.float64)

    def marginal(self, i: Tensor | int) -> tuple[Tensor, Tensor]:
        s = self.sigmas[torch.as_tensor(i)]
        return torch.ones_like(s), s

    def step(self, x: Tensor, i: int, z: Tensor) -> Tensor:
        """Forward step from level i-1 to level i (i >= 1)."""
        s = self.sigmas
        return x + torch.sqrt(s[i] ** 2 - s[i - 1] ** 2).to(x.dtype) * z


@dataclass(frozen=True)
class DDPMChain:
    """DDPM's discrete chain (Ho et al. 2020): beta_i = beta_min/N + i (beta_max - beta_min)/(N(N-1)).

    x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z; the marginal after steps 0..i is
    N(sqrt(abar_i) x_0, (1 - abar_i) I) with abar_i = prod_{j<=i} (1 - beta_j). Step i sits at
    t = (i + 1) / N of the continuous VP SDE, to which it converges as N grows.
    """

    beta_min: float
    beta_max: float
    N: int

    def __post_init__(self):
        if not (0 <= self.beta_min < self.beta_max and self.beta_max / self.N < 1):
            raise ValueError(f"DDPM needs 0 <= beta_min < beta_max and beta_max / N < 1 (every beta_i < 1); "
                             f"got beta_min={self.beta_min}, beta_max={self.beta_max}, N={self.N}")

    @property
    def betas(self) -> Tensor:
        return torch.linspace(self.beta_min / self.N, self.beta_max / self.N, self.N, dtype=torch.float64)

    def times(self) -> Tensor:
        return torch.arange(1, self.N + 1, dtype=torch.float64) / self.N

    def marginal(self, i: Tensor | int) -> tuple[Tensor, Tensor]:
        log_abar = torch.cumsum(torch.log1p(-self.betas), 0)[torch.as_tensor(i)]
        return torch.exp(0.5 * log_abar), torch.sqrt(-torch.expm1(log_abar))

    def step(self, x: Tensor, i: int, z: Tensor) -> Tensor:
        """Forward step i (i = 0 maps the data to the first noisy level)."""
        b = self.betas[i]
        return torch.sqrt(1 - b).to(x.dtype) * x + torch.sqrt(b).to(x.dtype) * z
