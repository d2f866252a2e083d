"""An offline judge for MNIST samples: a small CNN trained on the bundled digits.

No Inception network can be downloaded here, so sample quality on MNIST is measured with a classifier
the project trains itself on the 4,500 training digits of ``mnist5k`` (the 500 held-out digits are
never seen): two 3x3 conv layers (32, 64 channels) with max-pooling, a 128-unit hidden layer, 10
logits; Adam (lr 1e-3), batch 128, 8 epochs, seed 0, about 30 s on one CPU core. Its 128-d hidden layer
is the feature space:

* ``fd`` - the Frechet distance between the features of the samples and of the 4,500 training digits
  (the "FID" recipe with this network in place of Inception);
* ``kid`` - the kernel (MMD) distance in the same space (features divided by their RMS over the training
  digits), unbiased, so comparable across sample sizes;
* ``class_hist`` - the fraction of samples the classifier assigns to each digit (real data: 0.1 each),
  with ``class_tv`` its total-variation distance from uniform and ``confidence`` the mean max-probability;
* ``digit_is`` - exp E KL(p(y|x) || p(y)) (the Inception-score recipe; at most 10).

The Frechet distance is biased upwards at small N, so compare samples only with real digits at the same
N: :func:`digit_report` on the held-out digits gives that floor.
The weights are cached (weights-only) in ``$SCORESDE_CACHE`` or ``~/.cache/scoresde``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .frechet import frechet_distance, gaussian_stats, kernel_inception_distance

__all__ = ["DigitClassifier", "DigitReport", "digit_report", "load_digit_classifier", "train_digit_classifier"]

_VERSION = 1


class DigitClassifier(nn.Module):
    """conv(32) - pool - conv(64) - pool - fc(128) - fc(10) on 28x28 digits in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(64 * 5 * 5, 128)
        self.fc2 = nn.Linear(128, 10)

    def features(self, x: Tensor) -> Tensor:
        """The 128-d hidden layer (after ReLU)."""
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc1(h.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.features(x))


def _cache_dir() -> Path:
    return Path(os.environ.get("SCORESDE_CACHE", Path.home() / ".cache" / "scoresde"))


def train_digit_classifier(epochs: int = 8, seed: int = 0, progress: bool = False) -> DigitClassifier:
    """Train the judge on the 4,500 training digits of mnist5k (deterministic for a given seed)."""
    from tqdm.auto import tqdm

    from ..data import mnist5k

    x, y = mnist5k("train")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = DigitClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = x.shape[0]
    with tqdm(total=epochs * ((n + 127) // 128), disable=not progress, desc="digit classifier", leave=False) as bar:
        for _ in range(epochs):
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, 128):
                idx = perm[i:i + 128]
                # small random shifts (+-2 px) so the judge does not key on exact positions
                shift = torch.randint(-2, 3, (2,), generator=g).tolist()
                xb = torch.roll(x[idx], shifts=shift, dims=(2, 3))
                loss = F.cross_entropy(net(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.update()
    return net.eval()


def load_digit_classifier(cache: str | Path | None = None, progress: bool = True) -> DigitClassifier:
    """The cached judge, trained (and cached atomically) on first use."""
    path = Path(cache) if cache is not None else _cache_dir() / f"digit_classifier_v{_VERSION}.pt"
    net = DigitClassifier()
    if path.is_file():
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return net.eval()
        except Exception:  # a stale or corrupt cache: retrain
            pass
    net = train_digit_classifier(progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, path)
    return net


@dataclass
class DigitReport:
    """Quality of a set of 28x28 digits as seen by the judge (see the module docstring)."""

    n: int
    fd: float
    kid: float
    kid_std: float
    class_hist: list[float]
    class_tv: float
    confidence: float
    digit_is: float
    accuracy: float | None = None  # when labels were given (real digits)
    extra: dict = field(default_factory=dict)

    def summary(self) -> str:
        hist = " ".join(f"{h:.2f}" for h in self.class_hist)
        acc = f", accuracy {self.accuracy:.3f}" if self.accuracy is not None else ""
        return (f"N={self.n}: FD {self.fd:.2f}, KID {self.kid * 1e3:.2f}e-3 +- {self.kid_std * 1e3:.2f}e-3, "
                f"digit IS {self.digit_is:.2f}, class TV {self.class_tv:.3f}, confidence {self.confidence:.3f}"
                f"{acc}; class histogram [{hist}]")


@torch.no_grad()
def _features(net: DigitClassifier, x: Tensor, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    feats, probs = [], []
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch].float().cpu()
        f = net.features(xb)
        feats.append(f.double().numpy())
        probs.append(F.softmax(net.fc2(f), dim=1).double().numpy())
    return np.concatenate(feats), np.concatenate(probs)


_REF: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _reference(net: DigitClassifier) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    key = id(net)
    if key not in _REF:
        from ..data import mnist5k

        f, _ = _features(net, mnist5k("train")[0])
        _REF.clear()
        _REF[key] = (*gaussian_stats(f), f)
    return _REF[key]


def digit_report(images: Tensor, net: DigitClassifier | None = None, labels: Tensor | None = None) -> DigitReport:
    """Judge (N, 1, 28, 28) digits in [0, 1] against the training digits of mnist5k."""
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"the MNIST judge takes (N, 1, 28, 28) images in [0, 1], got {tuple(images.shape)}")
    if images.shape[0] < 2:
        raise ValueError("the MNIST judge needs at least 2 images")
    net = net or load_digit_classifier()
    mu_r, cov_r, f_r = _reference(net)
    f, p = _features(net, images.clamp(0, 1))
    fd = frechet_distance(*gaussian_stats(f), mu_r, cov_r)
    # KID's cubic kernel expects features of unit scale (as Inception's are): divide by the reference RMS
    rms = float(np.sqrt((f_r**2).mean()))
    kid, kid_std = kernel_inception_distance(f / rms, f_r / rms, subset_size=min(500, len(f)))
    pred = p.argmax(1)
    hist = np.bincount(pred, minlength=10) / len(pred)
    py = p.mean(0)
    digit_is = float(np.exp(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(py + 1e-12)), axis=1))))
    acc = float((pred == labels.cpu().numpy()).mean()) if labels is not None else None
    return DigitReport(n=len(f), fd=fd, kid=kid, kid_std=kid_std, class_hist=[float(h) for h in hist],
                       class_tv=float(0.5 * np.abs(hist - 0.1).sum()), confidence=float(p.max(1).mean()),
                       digit_is=digit_is, accuracy=acc)
