"""Frechet distance and KID against closed forms; the offline MNIST judge tells real digits from damaged ones."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from scoresde.metrics import (
    digit_report,
    frechet_distance,
    gaussian_stats,
    kernel_inception_distance,
    train_digit_classifier,
)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    # diagonal covariances: ||mu1 - mu2||^2 + sum (sqrt a - sqrt b)^2
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-10)
    # full, non-commuting covariances: the textbook tr(C1 + C2 - 2 sqrtm(C1 C2))
    m1, m2 = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = m1 @ m1.T + 0.1 * np.eye(6), m2 @ m2.T + 0.1 * np.eye(6)
    ref = np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance(mu1[:1].repeat(6), c1, mu1[:1].repeat(6), c2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu1, c1[:5, :5], mu1, c1[:5, :5]) == pytest.approx(0, abs=1e-9)


def test_gaussian_stats_and_kid():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 3))
    mu, cov = gaussian_stats(x)
    assert np.abs(mu).max() < 0.06 and np.abs(cov - np.eye(3)).max() < 0.08
    same = kernel_inception_distance(rng.normal(size=(1000, 3)), rng.normal(size=(1000, 3)), subsets=20)
    shifted = kernel_inception_distance(rng.normal(size=(1000, 3)) + 0.5, rng.normal(size=(1000, 3)), subsets=20)
    assert abs(same[0]) < 3 * same[1] / np.sqrt(20) + 1e-3  # unbiased: zero mean for equal laws
    assert shifted[0] > 10 * max(same[1], 1e-4)


def test_digit_judge_separates_real_from_damaged_digits():
    from scoresde.data import mnist5k

    torch.manual_seed(0)
    net = train_digit_classifier(epochs=3)  # the cached judge trains 8 epochs; 3 are enough to discriminate
    x, y = mnist5k("test")
    real = digit_report(x, net, y)
    noisy = digit_report((x + 0.3 * torch.randn_like(x)).clamp(0, 1), net, y)
    blank = digit_report(torch.zeros(50, 1, 28, 28), net)
    assert real.accuracy > 0.9
    assert real.class_tv < 0.1 and abs(sum(real.class_hist) - 1) < 1e-9
    assert real.digit_is > 5
    assert noisy.fd > 5 * real.fd and noisy.kid > real.kid + 5 * real.kid_std
    assert blank.class_tv > 0.8 and blank.digit_is < 1.5  # one class for every image
    with pytest.raises(ValueError, match="28, 28"):
        digit_report(torch.zeros(4, 1, 8, 8), net)


def test_kid_equals_the_kernel_formula_on_point_masses():
    """Two point masses a and b: every subset's unbiased MMD^2 is k(a, a) + k(b, b) - 2 k(a, b), exactly."""
    a, b = np.array([0.3, -1.0, 2.0]), np.array([1.0, 0.5, -0.5])
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    mean, std = kernel_inception_distance(np.tile(a, (50, 1)), np.tile(b, (40, 1)), subsets=5, subset_size=30)
    assert mean == pytest.approx(k(a, a) + k(b, b) - 2 * k(a, b), rel=1e-12) and std == pytest.approx(0, abs=1e-9)


def test_inception_score_limits():
    from scoresde.metrics import inception_score

    K = 10
    confident = np.full((1000, K), -50.0)
    confident[np.arange(1000), np.arange(1000) % K] = 50.0  # balanced one-hot predictions
    mean, std = inception_score(confident, splits=10)
    assert mean == pytest.approx(K, rel=1e-9) and std == pytest.approx(0, abs=1e-9)
    assert inception_score(np.random.default_rng(0).normal(size=(1, K)).repeat(500, 0), splits=5)[0] == \
        pytest.approx(1.0, abs=1e-12)
    # two classes, each image 90 % sure: IS = exp(KL) with p(y) = (1/2, 1/2)
    p = np.where(np.arange(400)[:, None] % 2 == np.arange(2)[None, :], 0.9, 0.1)
    want = math.exp(0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5))
    assert inception_score(np.log(p), splits=4)[0] == pytest.approx(want, rel=1e-12)


def test_precision_recall_known_values():
    from scoresde.metrics import knn_radii, precision_recall

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    assert precision_recall(x, x.copy()) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)
    # points on a line at 0, 1, ..., 9: the 3rd neighbour is 2 away, 3 at the two ends
    line = np.arange(10.0)[:, None]
    assert knn_radii(line, k=3).tolist() == [3, 2, 2, 2, 2, 2, 2, 2, 2, 3]
    # fake = half on the real line (0..4), half far away: precision 1/2; within the fake set the end point 4
    # has radius 3, so the fake manifold covers the real points 0..7: recall 8/10
    fake = np.concatenate([np.arange(5.0), 100 + np.arange(5.0)])[:, None]
    assert precision_recall(line, fake) == (0.5, pytest.approx(0.8))
