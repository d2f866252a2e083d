"""The command line: outputs agree with the library, bad input gives one line and exit code 2."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import scoresde as s
from scoresde.cli import main
from scoresde.samplers import ode_sample, pc_sample, sample

TOY_CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "toy_gmm.yaml")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_pc_matches_library_and_counts_nfe(tmp_path, capsys):
    out = tmp_path / "a.npz"
    code, stdout, _ = run(capsys, "sample", "--problem", "gmm8", "--sde", "ve", "--num", "50", "--seed", "4",
                          "--steps", "20", "--predictor", "euler_maruyama", "--corrector", "ald", "--n-corrector", "2",
                          "--out", str(out), "--no-progress")
    assert code == 0 and "NFE 60" in stdout
    data = np.load(out)
    assert data["samples"].shape == (50, 2) and int(data["nfe"]) == 20 * 3
    assert out.with_suffix(".png").stat().st_size > 1000
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VESDE())
    ref = sample(model, 50, 4, pc_sample, (2,), dtype=torch.float64, steps=20, predictor=s.samplers.euler_maruyama,
                 corrector=s.samplers.annealed_langevin, n_corrector=2, snr=0.16)
    np.testing.assert_array_equal(data["samples"], ref.samples.numpy())


def test_sample_json_mixture_with_ode(tmp_path, capsys):
    spec = {"weights": [0.25, 0.75], "means": [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], "stds": [0.2, 0.2]}
    (tmp_path / "m.json").write_text(json.dumps(spec))
    out = tmp_path / "o.npz"
    code, stdout, _ = run(capsys, "sample", "--problem", str(tmp_path / "m.json"), "--sde", "subvp", "--sampler", "ode",
                          "--rtol", "1e-6", "--atol", "1e-6", "--num", "2000", "--out", str(out), "--no-progress",
                          "--no-plot")
    assert code == 0
    x = np.load(out)["samples"]
    assert x.shape == (2000, 3)
    # the heavy mode (x0 > 0) holds 0.75 of the mass: within 4 binomial standard errors
    assert abs((x[:, 0] > 0).mean() - 0.75) < 4 * np.sqrt(0.75 * 0.25 / 2000)
    mix = s.GaussianMixture(spec["weights"], spec["means"], spec["stds"])
    ref = sample(s.ExactScoreModel(mix, s.SubVPSDE()), 2000, 0, ode_sample, (3,), batch_size=10000,
                 dtype=torch.float64, rtol=1e-6, atol=1e-6)
    assert int(np.load(out)["nfe"]) == ref.nfe


@pytest.mark.parametrize("argv,needle", [
    (["sample", "--problem", "nope", "--out", "x.npz"], "unknown problem"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--steps", "0"], "--steps: must lie in [1, 1e+06]"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--sde", "xx"], "invalid choice"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--rtol", "1e-3"], "--rtol does not apply"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--sampler", "ode", "--snr", "0.1"], "--snr does not apply"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--sampler", "ode", "--steps", "5"], "dopri5"),
    (["sample", "--problem", "gmm8", "--out", "x.txt"], "ending in .npz"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--sde", "vp", "--sigma-max", "3"], "does not apply"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--sde", "vp", "--beta-min", "30"], "beta_min < beta_max"),
    (["sample", "--out", "x.npz"], "exactly one of --problem"),
    (["sample", "--out", "x.npz", "--problem", "gmm8", "--workdir", "w"], "exactly one of --problem"),
    (["sample", "--out", "x.npz", "--workdir", "nowhere"], "no checkpoint"),
    (["train", "--workdir", "w", "--set", "training.nope=1"], "unknown key training.nope"),
    (["train", "--workdir", "w", "--set", "training.batch_size=-4"], "must be > 0"),
    (["train", "--workdir", "w", "--set", "sde.name=xx"], "sde.name must be one of"),
    (["train", "--workdir", "w", "--config", "missing.yaml"], "config file not found"),
    (["train", "--workdir", "w", "--set", "model.arch=mlp", "--set", "model.kwargs={bogus: 1}"], "unknown argument"),
    (["sample", "--problem", "MISSING.json", "--out", "x.npz"], "not found"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--sampler", "seeds3", "--snr", "0.1"], "--snr does not apply"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--sampler", "ggf", "--steps", "5"], "--steps does not apply"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--sampler", "seeds2", "--eta", "1.5"], "--eta: must lie in [0, 1]"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--sampler", "edm", "--eta", "0.5"], "--eta does not apply"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--sampler", "ode", "--no-final-mean"], "--final-mean/--no-final-mean"),
    (["sample", "--problem", "gmm8", "--out", "x.npz", "--sampler", "fast"], "invalid choice"),
])
def test_bad_arguments_give_one_line_and_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("content,needle", [
    ("{not json", "not valid JSON"),
    ('{"weights": [1.0], "means": [[0, 0]]}', "missing key(s) stds"),
    ('{"weights": [0.5, 0.6], "means": [[0], [1]], "stds": [1, 1]}', "sum to 1"),
    ('{"weights": [1.0], "means": [[0, 0]], "stds": [-1], "x": 1}', "unknown key"),
    ('[1, 2]', "JSON object"),
])
def test_malformed_json_mixture(content, needle, tmp_path, capsys):
    f = tmp_path / "m.json"
    f.write_text(content)
    code, _, err = run(capsys, "sample", "--problem", str(f), "--out", str(tmp_path / "o.npz"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sample", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for word in ["--predictor", "euler_maruyama", "ancestral_sampling", "--corrector", "langevin", "--snr",
                 "--method", "dopri5", "examples:", "weights"]:
        assert word in out


def test_train_then_sample_workdir(tmp_path, capsys):
    w = tmp_path / "run"
    code, out, err = run(capsys, "train", "--config", TOY_CONFIG, "--workdir", str(w), "--no-progress",
                         "--set", "training.n_iters=30", "--set", "training.snapshot_every=10",
                         "--set", "sampling.num=32", "--set", "sampling.steps=10")
    assert code == 0, err
    assert (w / "checkpoints" / "ckpt_30.pt").exists() and (w / "samples.png").exists()
    code, out, err = run(capsys, "train", "--config", TOY_CONFIG, "--workdir", str(w), "--no-progress",
                         "--set", "training.n_iters=40", "--set", "training.snapshot_every=10",
                         "--set", "sampling.num=32", "--set", "sampling.steps=10")
    assert code == 0 and "resuming from step 30" in out
    f = tmp_path / "s.npz"
    code, out, err = run(capsys, "sample", "--workdir", str(w), "--num", "20", "--steps", "15", "--out", str(f),
                         "--no-progress", "--predictor", "euler_maruyama", "--corrector", "none")
    assert code == 0, err
    data = np.load(f)
    assert data["samples"].shape == (20, 2) and int(data["nfe"]) == 15 and int(data["step"]) == 40


@pytest.mark.parametrize("argv,fn,kw,nfe", [
    (["--sampler", "seeds3", "--steps", "6"], "seeds_3", {"steps": 6}, 18),
    (["--sampler", "seeds1", "--steps", "8", "--eta", "0.5", "--grid", "time", "--denoise"], "seeds_1",
     {"steps": 8, "eta": 0.5, "grid": "time", "denoise": True}, 9),
    (["--sampler", "etd2", "--steps", "5", "--form", "noise"], "etd_erk_2", {"steps": 5, "prediction": "noise"},
     10),
    (["--sampler", "dpmpp2m", "--steps", "7"], "dpmpp_2m", {"steps": 7}, 7),
    (["--sampler", "ddim", "--steps", "7", "--eta", "1"], "ddim", {"steps": 7, "eta": 1.0}, 7),
    (["--sampler", "edm", "--steps", "5", "--s-churn", "10"], "edm_heun", {"steps": 5, "S_churn": 10.0},
     None),
    (["--sampler", "ggf", "--rtol", "0.1", "--noise-mode", "fresh"], "ggf_sample",
     {"rtol": 0.1, "noise_mode": "fresh"}, None),
])
def test_fast_samplers_from_the_cli_match_the_library(argv, fn, kw, nfe, tmp_path, capsys):
    out = tmp_path / "f.npz"
    code, stdout, err = run(capsys, "sample", "--problem", "gmm8", "--sde", "vp", "--num", "40", "--seed", "3",
                            "--batch-size", "16", "--out", str(out), "--no-progress", "--no-plot", *argv)
    assert code == 0, err
    data = np.load(out)
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    ref = sample(model, 40, 3, getattr(s.samplers, fn), (2,), dtype=torch.float64, batch_size=16, **kw)
    np.testing.assert_array_equal(data["samples"], ref.samples.numpy())
    assert int(data["nfe"]) == ref.nfe and f"NFE {ref.nfe}" in stdout
    if nfe is not None:
        assert ref.nfe == nfe
    if fn == "ggf_sample":  # per-sample step sizes: each sample's own count; nfe = the batched calls per sample
        per = data["nfe_per_sample"]
        np.testing.assert_array_equal(per, ref.nfe_per_sample.numpy())
        # a batched call serves at most batch-size samples, so the calls per sample are at least the mean NFE
        assert per.mean() <= ref.nfe and per.min() < per.max()
    assert "mode-weight TV" in stdout


def test_sample_workdir_with_another_sampler(tmp_path, capsys):
    w = tmp_path / "run"
    code, out, err = run(capsys, "train", "--config", TOY_CONFIG, "--workdir", str(w), "--no-progress",
                         "--set", "training.n_iters=10", "--set", "sampling.num=8", "--set", "sampling.sampler=seeds2",
                         "--set", "sampling.steps=4")
    assert code == 0, err
    f = tmp_path / "s.npz"
    # the config's sampler (seeds2, 4 steps) by default ...
    code, out, err = run(capsys, "sample", "--workdir", str(w), "--num", "8", "--out", str(f), "--no-progress")
    assert code == 0 and int(np.load(f)["nfe"]) == 8 and "seeds2 4 steps" in out, out + err
    # ... and any other sampler on the command line
    code, out, err = run(capsys, "sample", "--workdir", str(w), "--num", "8", "--out", str(f), "--no-progress",
                         "--sampler", "etd3", "--steps", "3")
    assert code == 0 and int(np.load(f)["nfe"]) == 9, err
    code, out, err = run(capsys, "sample", "--workdir", str(w), "--num", "8", "--out", str(f), "--no-progress",
                         "--sampler", "ggf", "--rtol", "0.2")
    data = np.load(f)
    assert code == 0 and np.isfinite(data["samples"]).all() and int(data["nfe"]) >= 3, err
