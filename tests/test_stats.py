"""Statistics files (ours, the seed's pool_3, pytorch-fid's mu/sigma), FID against an independently written reference,
`scoresde stats` / `scoresde fid` end to end, and one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import linalg

from scoresde.metrics.frechet import frechet_distance, gaussian_stats
from scoresde.metrics.stats import Statistics, StatisticsError, load_statistics, save_statistics


def _reference_fid(f1: np.ndarray, f2: np.ndarray, eps: float = 1e-6) -> float:
    """The reference recipe (TTUR / pytorch-fid), written out here: sqrtm of the product, eps offset if singular."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n,d", [(400, 32), (300, 128)])
def test_fid_equals_the_reference_formula(n, d):
    rng = np.random.default_rng(d)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    f1 = np.maximum(rng.normal(size=(n, d)) @ mix, 0)  # ReLU-like, correlated features
    f2 = np.maximum(rng.normal(0.2, 1.1, size=(n + 50, d)) @ mix, 0)
    ours = frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))
    assert ours == pytest.approx(_reference_fid(f1, f2), rel=1e-3)
    assert ours > 0.1


def test_statistics_round_trip_and_seed_formats(tmp_path):
    rng = np.random.default_rng(0)
    f, logits = rng.normal(size=(50, 6)), rng.normal(size=(50, 4))
    st = Statistics.from_features(f, logits, "tiny")
    save_statistics(tmp_path / "ours.npz", st, raw=True)
    back = load_statistics(tmp_path / "ours.npz")
    np.testing.assert_array_equal(back.mu, st.mu)
    np.testing.assert_array_equal(back.sigma, st.sigma)
    assert back.n == 50 and back.feature_name == "tiny"
    np.testing.assert_array_equal(back.features, f.astype(np.float32))  # raw features stored as float32, as the seed
    np.testing.assert_array_equal(back.logits, logits.astype(np.float32))
    # the seed's file: raw pool_3 (+ logits) only -> mean and covariance computed on reading
    np.savez(tmp_path / "seed.npz", pool_3=f.astype(np.float32), logits=logits.astype(np.float32))
    seed = load_statistics(tmp_path / "seed.npz")
    mu, sigma = gaussian_stats(f.astype(np.float32))
    np.testing.assert_allclose(seed.mu, mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(seed.sigma, sigma, rtol=0, atol=1e-12)
    assert seed.feature_name is None and seed.n == 50 and seed.logits.shape == (50, 4)
    # our raw file is a seed file: its pool_3 gives the same statistics up to the float32 rounding
    np.testing.assert_allclose(back.mu, seed.mu, atol=1e-6)
    # pytorch-fid's: mu and sigma only
    np.savez(tmp_path / "pf.npz", mu=st.mu, sigma=st.sigma)
    pf = load_statistics(tmp_path / "pf.npz")
    assert pf.features is None and frechet_distance(pf.mu, pf.sigma, st.mu, st.sigma) == pytest.approx(0, abs=1e-9)
    np.savez(tmp_path / "bad.npz", x=f)
    with pytest.raises(StatisticsError, match="needs mu and sigma or pool_3"):
        load_statistics(tmp_path / "bad.npz")


def _tiny(device="cpu", batch_size=64):
    from scoresde.metrics.features import FeatureExtractor

    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 784, generator=g) / 28

    def fn(images):
        f = torch.tanh((images.float().flatten(1) / 255) @ w.T)
        return f, 3 * f[:, :5]

    return FeatureExtractor("tiny", 8, fn, True, "random test features", batch_size, device)


@pytest.fixture
def tiny(monkeypatch):
    from scoresde import registry

    monkeypatch.setitem(registry.FEATURES, "tiny", _tiny)


def run(capsys, *argv):
    from scoresde.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_and_fid_commands(tmp_path, capsys, tiny):
    from scoresde.data import get_dataset
    from scoresde.metrics import inception_score, kernel_inception_distance, precision_recall
    from scoresde.metrics.features import to_uint8

    out = tmp_path / "ref.npz"
    code, stdout, _ = run(capsys, "stats", "--data", "mnist5k:test", "--features", "tiny", "--raw", "--no-progress",
                          "--out", str(out))
    assert code == 0 and "500 images" in stdout
    test_images = to_uint8(get_dataset("mnist5k", split="test")[0])
    f_test, lg_test = _tiny()(test_images)
    z = np.load(out)
    np.testing.assert_array_equal(z["pool_3"], f_test.astype(np.float32))
    np.testing.assert_allclose(z["mu"], f_test.mean(0), rtol=0, atol=1e-12)
    # samples in data space ([-1, 1]): the first 300 training digits
    x = get_dataset("mnist5k", split="train")[0][:300]
    samples = tmp_path / "s.npz"
    np.savez(samples, samples=(2 * x - 1).numpy())
    code, stdout, _ = run(capsys, "fid", str(samples), str(out), "--features", "tiny", "--kid-subsets", "4")
    assert code == 0 and len(stdout.strip().splitlines()) == 1
    res = json.loads(stdout)
    f_s, lg_s = _tiny()(to_uint8(x))
    assert res["fid"] == pytest.approx(frechet_distance(*gaussian_stats(f_s), *gaussian_stats(z["pool_3"])), rel=1e-9)
    kid, kid_std = kernel_inception_distance(f_s, z["pool_3"].astype(np.float64), subsets=4, subset_size=300)
    assert res["kid"] == pytest.approx(kid, rel=1e-9) and res["kid_std"] == pytest.approx(kid_std, rel=1e-9)
    p, r = precision_recall(z["pool_3"].astype(np.float64), f_s)
    assert (res["precision"], res["recall"]) == (pytest.approx(p), pytest.approx(r))
    assert res["is_a"] == pytest.approx(inception_score(lg_s)[0], rel=1e-9) and "is_b" in res
    assert res["n_a"] == 300 and res["n_b"] == 500
    # a data spec on the right gives the same FID as its statistics file (up to the float32 storage of pool_3)
    code, stdout, _ = run(capsys, "fid", str(samples), "mnist5k:test", "--features", "tiny", "--kid-subsets", "4")
    assert json.loads(stdout)["fid"] == pytest.approx(res["fid"], rel=1e-5)
    # mean/covariance only (no --raw): FID, but no KID or precision / recall
    code, stdout, _ = run(capsys, "stats", "--data", "mnist5k:test", "--features", "tiny", "--no-progress",
                          "--out", str(tmp_path / "ms.npz"))
    code, stdout, _ = run(capsys, "fid", str(samples), str(tmp_path / "ms.npz"), "--features", "tiny")
    res2 = json.loads(stdout)
    assert res2["fid"] == pytest.approx(frechet_distance(*gaussian_stats(f_s), *gaussian_stats(f_test)), rel=1e-9)
    assert "kid" not in res2 and "precision" not in res2


@pytest.mark.parametrize("argv,needle", [
    (["fid", "no/such/file.npz", "mnist5k"], "is not a file, folder or data spec"),
    (["fid", "mnist5k:validation", "mnist5k"], "unknown split 'validation'"),
    (["fid", "gmm", "mnist5k", "--features", "tiny"], "not images"),
    (["stats", "--data", "mnist5k", "--out", "OUT/x.txt"], "must name a file ending in .npz"),
    (["stats", "--data", "mnist5k", "--features", "digits", "--preprocessing", "tf", "--out", "OUT/x.npz"],
     "apply to --features inception"),
    (["stats", "--data", "mnist5k", "--inception-weights", "OUT/none.pth", "--out", "OUT/x.npz"],
     "Inception weights not found"),
    (["eval", "--workdir", "OUT/nothing", "--ref", "mnist5k", "--features", "tiny"], "no checkpoint"),
])
def test_one_line_errors(tmp_path, capsys, tiny, argv, needle):
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert needle in err, err
