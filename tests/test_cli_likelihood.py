"""`scoresde likelihood` and `scoresde encode`: outputs agree with the library; bad input is one line, exit 2."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import scoresde as s
from scoresde.cli import main
from scoresde.likelihood import bits_per_dim, log_likelihood, round_trip


def run(capsys, *argv):
    code = main([*list(argv), "--no-progress"] if argv and argv[0] in ("likelihood", "encode") else list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_likelihood_problem_draws_points_and_matches_library(tmp_path, capsys):
    out = tmp_path / "l.npz"
    code, stdout, _ = run(capsys, "likelihood", "--problem", "gmm2", "--sde", "subvp", "--num", "30", "--seed", "3",
                          "--out", str(out))
    assert code == 0, stdout
    data = np.load(out)
    assert data["logp"].shape == (30,) and str(data["divergence"]) == "exact"
    problem = s.load_problem("gmm2")
    x = problem.sample(30, generator=torch.Generator().manual_seed(3))
    model = s.ExactScoreModel(problem, s.SubVPSDE())
    ref = log_likelihood(model, x)
    np.testing.assert_allclose(data["logp"], ref.logp.numpy(), rtol=0, atol=1e-10)
    assert int(data["nfe"]) == ref.nfe and f"NFE {ref.nfe}" in stdout
    # and the closed form of the marginal at eps, within 1e-2 nats per dimension
    assert np.abs(data["logp"] - data["logp_exact"]).max() / 2 < 1e-2
    np.testing.assert_allclose(data["logp_exact"], model.log_prob(x, 1e-5).numpy())


def test_likelihood_problem_with_data_file_and_hutchinson(tmp_path, capsys):
    pts = s.load_problem("gmm8").sample(12, generator=torch.Generator().manual_seed(0)).numpy()
    np.save(tmp_path / "pts.npy", pts)
    out = tmp_path / "h.npz"
    code, stdout, _ = run(capsys, "likelihood", "--problem", "gmm8", "--sde", "ve", "--data", str(tmp_path / "pts.npy"),
                          "--divergence", "hutchinson", "--probe", "gaussian", "--probes", "2", "--seed", "9",
                          "--batch-size", "5", "--out", str(out))
    assert code == 0 and "hutchinson, 2 gaussian" in stdout
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VESDE())
    ref = log_likelihood(model, torch.from_numpy(pts), divergence="hutchinson", probe="gaussian", probes=2, seed=9,
                         batch_size=5)
    np.testing.assert_allclose(np.load(out)["logp"], ref.logp.numpy(), rtol=0, atol=1e-10)


def _tiny_image_workdir(path):
    from scoresde.config import load_config
    from scoresde.train import Trainer

    kwargs = "model.kwargs={nf: 8, ch_mult: [1], num_res_blocks: 1, attn_resolutions: [], image_size: 8, dropout: 0.0}"
    cfg = load_config(None, ["data.dataset=digits", "model.arch=unet", "training.batch_size=8", "training.n_iters=1",
                             kwargs])
    Trainer(cfg, path, progress=False).save()  # an untrained checkpoint: the numbers only need to match


def test_likelihood_workdir_prints_bits_per_dim(tmp_path, capsys):
    w = tmp_path / "w"
    _tiny_image_workdir(w)
    out = tmp_path / "bpd.npz"
    code, stdout, _ = run(capsys, "likelihood", "--workdir", str(w), "--num", "3", "--repeats", "2", "--seed", "1",
                          "--out", str(out))
    assert code == 0, stdout
    from scoresde.workdir import load_training_data, model_from_workdir

    model, cfg, _, _ = model_from_workdir(w)
    x01 = (load_training_data(cfg, split="test")[:3] + 1) / 2
    ref = bits_per_dim(model, x01, data_range="[-1,1]", repeats=2, seed=1, divergence="hutchinson")
    assert np.load(out)["bpd"].shape == (2, 3)
    np.testing.assert_allclose(np.load(out)["bpd"], ref.bpd.numpy(), rtol=1e-6)
    assert f"{ref.mean:.4f} +- {ref.stderr:.4f} bits/dim" in stdout and "3 images x 2 repeats" in stdout
    assert math.isfinite(ref.mean) and ref.mean > 0


def test_encode_problem_round_trip(tmp_path, capsys):
    out = tmp_path / "e.npz"
    code, stdout, _ = run(capsys, "encode", "--problem", "gmm8", "--sde", "ve", "--num", "20", "--rtol", "1e-7",
                          "--atol", "1e-7", "--out", str(out))
    assert code == 0 and "round-trip error" in stdout
    data = np.load(out)
    assert data["latents"].shape == (20, 2) and data["error"].max() <= 1e-3
    x = s.load_problem("gmm8").sample(20, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(data["reconstruction"], x.numpy(), atol=1e-3)
    ref = round_trip(s.ExactScoreModel(s.load_problem("gmm8"), s.VESDE()), x, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(data["latents"], ref.latent.numpy(), rtol=0, atol=1e-10)
    assert int(data["nfe_encode"]) == ref.nfe_encode and int(data["nfe_decode"]) == ref.nfe_decode


@pytest.mark.parametrize("argv,needle", [
    (["likelihood", "--problem", "gmm8", "--divergence", "exact", "--probes", "3"], "--probes applies to"),
    (["likelihood", "--problem", "gmm8", "--repeats", "2"], "--repeats applies to --workdir"),
    (["likelihood", "--problem", "gmm8", "--data", "missing.npy"], "--data file not found"),
    (["likelihood", "--problem", "gmm8", "--data", "bad.npy"], "the problem needs (N, 2)"),
    (["likelihood", "--problem", "gmm8", "--num", "3", "--eps", "2"], "--t-end must be < T"),
    (["likelihood", "--problem", "gmm8", "--out", "x.txt"], "ending in .npz"),
    (["likelihood", "--problem", "gmm8", "--workdir", "w"], "exactly one of --problem"),
    (["likelihood", "--workdir", "nowhere"], "no checkpoint"),
    (["likelihood", "--workdir", "nowhere", "--sde", "ve"], "--sde does not apply to --workdir"),
    (["likelihood", "--problem", "gmm8", "--split", "test"], "--split applies to --workdir"),
    (["likelihood", "--problem", "gmm8", "--probes", "0"], "must be > 0"),
    (["likelihood", "--problem", "gmm8", "--probe", "uniform"], "invalid choice"),
    (["encode", "--problem", "gmm8"], "--out"),
    (["encode", "--problem", "nope", "--out", "x.npz"], "unknown problem"),
])
def test_bad_arguments_give_one_line_and_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "bad.npy", np.zeros((4, 3)))
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err, err
