"""Class-conditional sampling: classifier guidance and classifier-free guidance as score models.

Classifier guidance (Song et al. 2021, eq. 48 / App. I; with a scale w as Dhariwal & Nichol 2021):

    s(x, t | y) = s(x, t) + w grad_x log p_t(y | x)

where p_t(y | x) is a noise-conditional classifier of x_t *in the space the SDE puts it in*: under VP,
x_t = alpha_t x_0 + sigma_t n, so the classifier is handed (x_t, t) and reads the noise level from t -
never VP's sigma_t as if it were a VE sigma (score_sde_pytorch's controllable-generation code does that).
Classifier-free guidance (Ho & Salimans 2022) mixes a conditional and an unconditional denoiser:
D = D_u + w (D_c - D_u). At w = 1 both give the conditional model exactly; CFG at w = 0 is unconditional.

Both wrappers are :class:`~scoresde.parameterization.ScoreModel` s, so every sampler of the registry runs
on them unchanged. A guided call is one NFE of the score model (the classifier's forward and backward
pass is extra work, not an NFE); a CFG call evaluates two denoisers and counts as two NFE.

For an exact-score Gaussian mixture the exact classifier is built in: p_t(y = k | x) is the component
responsibility r_k(x, t), and grad log r_k = s_k - s (component k's score minus the mixture's), so
guidance at w = 1 is exactly component k's score.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ._tensor import as_time, like
from .exact import GaussianMixture
from .parameterization import ScoreModel, convert
from .sde import SDE

__all__ = ["Classifier", "MixtureClassifier", "ClassifierGuidedModel", "ClassifierFreeGuidedModel",
           "LabelConditionedModel", "mixture_component_model"]


class Classifier(Protocol):
    """A noise-conditional classifier: grad_x log p_t(y | x_t) at per-sample times t."""

    def grad_log_prob(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor: ...


class MixtureClassifier:
    """The exact classifier of a Gaussian mixture under an SDE: p_t(k | x) = r_k(x, t), the responsibilities."""

    def __init__(self, problem: GaussianMixture, sde: SDE):
        self.problem, self.sde = problem, sde

    def log_prob(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """log r_y(x, t) per sample."""
        alpha, sigma = self.sde.marginal(as_time(t, x))
        r = self.problem.responsibilities(x, alpha, sigma)
        return torch.log(r.gather(1, _labels(y, x).reshape(-1, 1)).squeeze(1))

    def grad_log_prob(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """grad_x log r_y = s_y - s: the score of component y minus the mixture's (closed form)."""
        alpha, sigma = self.sde.marginal(as_time(t, x))
        p = self.problem
        xf = x.reshape(x.shape[0], -1).double()
        a, s = like(alpha, xf), like(sigma, xf)
        k = _labels(y, x)
        var = a**2 * p.stds[k, None] ** 2 + s**2
        own = -(xf - a * p.means[k]) / var
        return (own - p.score(x, alpha, sigma).reshape(xf.shape).double()).to(x.dtype).reshape(x.shape)


def _labels(y: Tensor | int, x: Tensor) -> Tensor:
    y = torch.as_tensor(y, dtype=torch.long, device=x.device)
    return y.expand(x.shape[0]) if y.ndim == 0 else y


class ClassifierGuidedModel(ScoreModel):
    """score + w grad log p_t(y | x): classifier guidance (Song et al. 2021 eq. 48; Dhariwal & Nichol 2021)."""

    def __init__(self, model: ScoreModel, classifier: Classifier, y: Tensor | int, w: float = 1.0):
        super().__init__(model.sde, "score")
        self.model, self.classifier, self.y, self.w = model, classifier, y, float(w)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        raw, kind = self.model.predict_for(x, t, "score")
        alpha, sigma = self.sde.marginal(t)
        score = convert(raw, x, like(alpha, x), like(sigma, x), kind, "score")
        if self.w == 0:
            return score
        return score + self.w * self.classifier.grad_log_prob(x, t, self.y)


class ClassifierFreeGuidedModel(ScoreModel):
    """D_u + w (D_c - D_u): classifier-free guidance (Ho & Salimans 2022) over two score models; 2 NFE a call."""

    evaluations_per_call = 2

    def __init__(self, unconditional: ScoreModel, conditional: ScoreModel, w: float = 1.0):
        if unconditional.sde is not conditional.sde:
            raise ValueError("classifier-free guidance needs both models over the same SDE object")
        super().__init__(unconditional.sde, "data")
        self.unconditional, self.conditional, self.w = unconditional, conditional, float(w)

    def _denoised(self, model: ScoreModel, x: Tensor, t: Tensor) -> Tensor:
        raw, kind = model.predict_for(x, t, "data")
        alpha, sigma = self.sde.marginal(t)
        return convert(raw, x, like(alpha, x), like(sigma, x), kind, "data")

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        d_c = self._denoised(self.conditional, x, t)
        if self.w == 1:
            return d_c
        d_u = self._denoised(self.unconditional, x, t)
        return d_u + self.w * (d_c - d_u)


class LabelConditionedModel(ScoreModel):
    """A label-conditional network (``net(x, c, y)``, e.g. a U-Net with ``num_classes``) at fixed labels y.

    y = None (or the network's null label) is the unconditional model of classifier-free guidance
    (Ho & Salimans 2022); the null label is index ``num_classes``.
    """

    def __init__(self, model, y: Tensor | int | None):
        super().__init__(model.sde, model.prediction)
        self.model, self.y = model, y

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        m = self.model
        c = m.time_input(t, self.sde).to(dtype=x.dtype if x.is_floating_point() else torch.float32)
        return m.net(x, c, y=None if self.y is None else _labels(self.y, x))


def mixture_component_model(problem: GaussianMixture, k: int, sde: SDE) -> ScoreModel:
    """The exact score model of component k alone (the conditional model of a mixture given y = k)."""
    from .exact import ExactScoreModel

    if not 0 <= int(k) < problem.num_components:
        raise ValueError(f"class {k} is not a component of this mixture (0..{problem.num_components - 1})")
    comp = GaussianMixture([1.0], problem.means[k:k + 1], problem.stds[k:k + 1], shape=problem.shape)
    return ExactScoreModel(comp, sde)
