"""The lessons (scoresde lesson N --quick) run end to end and their measured claims hold on the quick run."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from scoresde import lessons, ncsnv2
from scoresde.cli import main


def test_list_and_bad_number(capsys):
    assert main(["lesson", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [int(line.split()[0]) for line in listed] == [x.number for x in lessons.available()]
    assert {1, 2, 3, 5} <= {x.number for x in lessons.available()}
    assert main(["lesson", "99"]) == 2
    err = capsys.readouterr().err
    assert "no lesson 99" in err and len(err.strip().splitlines()) == 1


def test_workdir_option_errors_are_one_line(tmp_path, capsys):
    assert main(["lesson", "1", "--quick", "--out", str(tmp_path / "o"), "--workdir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "scoresde lesson: lesson 1 takes no --workdir"
    assert main(["lesson", "5", "--quick", "--out", str(tmp_path / "o"), "--workdir", str(tmp_path / "none")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["lesson", "5", "--quick", "--out", str(tmp_path / "o"), "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint" in err and len(err.strip().splitlines()) == 1


def test_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("")
    assert main(["lesson", "1", "--quick", "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_lesson_1_plain_wrong_annealed_right(tmp_path):
    r = lessons.run(1, tmp_path, quick=True)
    assert (tmp_path / "01_langevin.png").stat().st_size > 0
    se = math.sqrt(0.8 * 0.2 / r["n"])
    assert r["plain"]["se"] == pytest.approx(se)
    assert r["plain"]["error"] > 5 * se          # plain Langevin keeps the start's 50 / 50 split
    assert r["annealed"]["error"] < 3 * se       # slow annealing: within Monte-Carlo error
    assert r["exact"]["error"] < 3 * se


def test_lesson_2_learned_score_close_and_fourier_features_fix_small_sigma(tmp_path):
    r = lessons.run(2, tmp_path, quick=True)
    assert (tmp_path / "02_score_fields.png").exists() and (tmp_path / "02_samples.png").exists()
    fourier = dict(zip(r["check_sigmas"], r["score_error"]["VE_ema"]))
    plain = dict(zip(r["check_sigmas"], r["score_error"]["VE plain_ema"]))
    # relative L2 error of the EMA network's score on x ~ p_sigma (quick run, measured: plain MLP 0.05 / 0.09 / 0.50 /
    # 0.70 at sigma 1 / 0.5 / 0.2 / 0.1; with Fourier features of x 0.10 / 0.13 / 0.18 / 0.32)
    assert plain[1.0] < 0.15 and plain[0.5] < 0.15 and fourier[1.0] < 0.2 and fourier[0.5] < 0.2
    assert fourier[0.2] < 0.6 * plain[0.2] and fourier[0.1] < 0.6 * plain[0.1]   # the spectral-bias fix
    assert all(e < 1.0 for e in [*fourier.values(), *plain.values()])    # better than the zero field everywhere
    assert r["score_error_curve"]["VE"][r["curve_sigmas"].index(0.5)] == pytest.approx(fourier[0.5])


def _ratio_ref(gamma: float, dim: int) -> float:
    c = math.sqrt(2 * dim) * (gamma - 1)
    return norm.cdf(c + 3 * gamma) - norm.cdf(c - 3 * gamma)


def test_lesson_3_values_follow_the_papers_formulas(tmp_path):
    r = lessons.run(3, tmp_path, quick=True)
    x = r["data"].reshape(r["n_data"], -1).double()
    brute = max(float((x[i] - x).norm(dim=1).max()) for i in range(len(x)))
    assert r["sigma_1"] == pytest.approx(brute, rel=1e-9)
    # gamma solves the overlap criterion = 0.5 (scipy's normal cdf), and L levels of ratio <= gamma span sigma_1 -> 0.01
    assert _ratio_ref(r["gamma"], r["dim"]) == pytest.approx(0.5, abs=1e-9)
    L = r["levels"]
    assert (r["sigma_1"] / 0.01) ** (1 / (L - 1)) <= r["gamma"] < (r["sigma_1"] / 0.01) ** (1 / (L - 2))
    # eps minimises |f(eps) - 1| (f written out again here) over a fine grid
    s2, g2, T = 1e-4, r["gamma"] ** 2, r["steps"]

    def f(e):
        stat = 2 * e / (s2 - s2 * (1 - e / s2) ** 2)
        return (1 - e / s2) ** (2 * T) * (g2 - stat) + stat

    grid = torch.logspace(-9, math.log10(s2 * 0.999), 20001, dtype=torch.float64).tolist()
    best = min(abs(f(e) - 1) for e in grid)
    assert abs(f(r["eps"]) - 1) <= best + 1e-9
    assert r["f_eps"] == pytest.approx(f(r["eps"]))
    # NCSNv2's settings reach more digits and a more even class mix than NCSN's
    v1, v2 = r["results"].values()
    assert v2["distinct"] > v1["distinct"] and v2["class_tv"] < v1["class_tv"]
    assert r["reach"]["NCSNv2"] > 10 * r["reach"]["NCSN"]


def test_ncsnv2_cifar10_numbers():
    """The rules give the paper's CIFAR-10 settings to within a few percent (232 levels, eps 6.2e-6 at T = 5)."""
    g = ncsnv2.geometric_ratio(3072)
    assert 220 <= ncsnv2.num_noise_levels(50, 0.01, g) <= 240
    assert ncsnv2.langevin_step_size(0.01, g, 5) == pytest.approx(6.2e-6, rel=0.06)


def test_lesson_5_reported_nfe_equals_counted_calls_and_the_formula(tmp_path):
    r = lessons.run(5, tmp_path, quick=True)
    assert (tmp_path / "05_quality_vs_nfe.png").exists()
    assert len(r["table"]) >= 10
    for row in r["table"].values():
        assert row["reported_calls"] == row["counted_calls"], row["sampler"]
        assert row["nfe"] == row["counted_calls"], row["sampler"]  # one batch: per-sample NFE = batched calls
    # the MNIST half (quick: lesson 5 trains lesson 4's 10-step network): each sampler reports the NFE of its formula
    # (EM: steps; PC: 2 per step; SEEDS-2: 2 per step + the final denoise; DPM-Solver++(2M): 1 per step + denoise),
    # the adaptive GGF what the model counted
    mnist = r["mnist"]
    assert (tmp_path / "05_mnist_fd_vs_nfe.png").exists() and len(mnist["table"]) == 5
    for row in mnist["table"].values():
        assert row["reported_calls"] == row["counted_calls"], row["sampler"]
        if row["expected_nfe"] is not None:
            assert row["nfe"] == row["expected_nfe"], row["sampler"]
    assert {row["nfe"] for row in mnist["table"].values() if row["expected_nfe"] is not None} == {20, 11, 6}


def test_lesson_4_subvp_variance_below_vp_and_finite_bits_per_dim(tmp_path):
    import importlib
    from pathlib import Path

    from scoresde.config import read_config_file

    r = lessons.run(4, tmp_path, quick=True)
    assert (tmp_path / "04_samples.png").exists() and (tmp_path / "04_compare.png").exists()
    # the variance claim, from the lesson's own SDE objects: sub-VP's sigma_t = 1 - alpha_t^2 < VP's sqrt(1 - alpha_t^2)
    vp, sub = r["sdes"]["VP continuous"], r["sdes"]["sub-VP"]
    alpha = torch.exp(vp.log_alpha(r["t"]))
    torch.testing.assert_close(torch.exp(sub.log_alpha(r["t"])), alpha)         # the same mean factor
    torch.testing.assert_close(r["std"]["VP"], torch.sqrt(1 - alpha**2))
    torch.testing.assert_close(r["std"]["sub-VP"], 1 - alpha**2)
    assert bool((r["std"]["sub-VP"] < r["std"]["VP"]).all())
    for name, row in r["rows"].items():
        assert math.isfinite(row["bpd"]) and row["bpd"] > 0, name
        assert row["nfe"] == 10, name              # the same budget: 10 ancestral / EM steps, 5 PC steps of 2 NFE
        assert math.isfinite(row["fd"]) and row["steps"] == 10, name
        assert (Path(row["workdir"]) / "checkpoints").is_dir(), name
    # each variant is the xdiffusion config's SDE, loss, prediction and sampler (the network and step counts are smaller)
    lesson4 = importlib.import_module("scoresde.lessons.04_mnist_vp_subvp")
    root = Path(__file__).resolve().parents[1] / "configs" / "mnist"
    for name, v in lesson4.VARIANTS.items():
        full = read_config_file(root / v["config"])
        cfg = r["configs"][name]
        assert {k: full["sde"][k] for k in ("name", "beta_min", "beta_max", "N")} == v["sde"], name
        assert (cfg.training.loss, cfg.model.prediction) == (full["training"]["loss"], full["model"]["prediction"]), name
        for key in ("predictor", "corrector", "snr", "n_corrector"):
            assert cfg.sampling.options.get(key) == full["sampling"].get(key), (name, key)
        assert cfg.sampling.sampler == full["sampling"]["sampler"]
