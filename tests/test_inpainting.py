"""Inpainting against the closed-form conditional of a Gaussian mixture: known values kept exactly, the
replacement method's bias is real, RePaint resampling shrinks it, and the exact conditional is what it says."""
from __future__ import annotations

import math

import pytest
import torch

import scoresde as s
from scoresde.inpainting import inpaint
from scoresde.quality import mixture_report
from scoresde.samplers import sample, seeds

F64 = torch.float64
MIX = s.GaussianMixture([0.5, 0.5], [[-1.0, -1.0], [1.0, 1.0]], [0.3, 0.3])
KNOWN = torch.tensor([0.1, 0.0], dtype=F64)  # x[0] = 0.1 is known: the conditional favours the (1, 1) mode
MASK = torch.tensor([1.0, 0.0])


def test_conditional_of_a_mixture_in_closed_form():
    cond = MIX.condition(KNOWN, MASK)
    log_ratio = ((0.1 + 1) ** 2 - (0.1 - 1) ** 2) / (2 * 0.09)
    assert float(cond.weights[1]) == pytest.approx(1 / (1 + math.exp(-log_ratio)), rel=1e-12)
    assert cond.means.tolist() == [[-1.0], [1.0]] and cond.dim == 1
    with pytest.raises(ValueError, match="known and some unknown"):
        MIX.condition(KNOWN, torch.ones(2))


def _heavy_share(x: torch.Tensor) -> float:
    return float((x[:, 1] > 0).double().mean())


def test_replacement_bias_is_real_and_repaint_shrinks_it():
    sde = s.VPSDE()
    model = s.ExactScoreModel(MIX, sde)
    n = 2000
    known = torch.tensor([0.3, 0.0], dtype=F64)
    truth = float(MIX.condition(known, MASK).weights[1])  # 0.9987
    rep = sample(model, n, 0, inpaint, (2,), dtype=F64, known=known, mask=MASK, base="seeds1", steps=100)
    assert torch.equal(rep.samples[:, 0], known[0].expand(n))  # the known values, exactly
    assert rep.nfe == 100
    fixed = sample(model, n, 0, inpaint, (2,), dtype=F64, known=known, mask=MASK, base="seeds1", steps=100,
                   method="repaint", jump=1, resample=5)
    assert fixed.nfe == 500
    bias_rep, bias_fixed = abs(_heavy_share(rep.samples) - truth), abs(_heavy_share(fixed.samples) - truth)
    assert bias_rep > 0.2  # replacement is not the conditional (measured 0.72 vs 0.999 with 4000 samples)
    assert bias_fixed < 0.6 * bias_rep  # resampling moves towards it (measured 0.89)
    # a sampler driven by the exact conditional score (in the unknown coordinate) matches the closed form
    cond = MIX.condition(KNOWN, MASK)
    exact = sample(s.ExactScoreModel(cond, sde), 4000, 0, seeds, (1,), dtype=F64, order=2, steps=50).samples
    report = mixture_report(cond, exact)
    assert report.tv < 3 * report.tv_noise


@pytest.mark.parametrize("base", ["pc", "seeds2", "ddim", "edm", "etd2"])
def test_every_grid_sampler_inpaints_and_keeps_the_known_part(base):
    model = s.ExactScoreModel(MIX, s.VESDE())
    res = sample(model, 64, 1, inpaint, (2,), dtype=F64, known=KNOWN, mask=MASK, base=base, steps=20)
    assert torch.equal(res.samples[:, 0], KNOWN[0].expand(64)) and torch.isfinite(res.samples).all()
    # batch-size invariance (per-sample noise): the same fills in batches of 7
    again = sample(model, 64, 1, inpaint, (2,), dtype=F64, known=KNOWN, mask=MASK, base=base, steps=20,
                   batch_size=7)
    if base != "pc":  # pc's Langevin corrector averages norms over the batch (documented)
        torch.testing.assert_close(again.samples, res.samples, rtol=0, atol=1e-12)


def test_bad_arguments():
    model = s.ExactScoreModel(MIX, s.VPSDE())
    x = torch.zeros(4, 2, dtype=F64)
    from scoresde.brownian import NoiseSource

    noise = NoiseSource(0, (2,), 4, dtype=F64)
    for kw, match in [({"base": "ode"}, "steps on a grid"), ({"method": "x"}, "method"),
                      ({"jump": 3}, "apply to method repaint"), ({"steps": 0}, ">= 1")]:
        with pytest.raises(ValueError, match=match):
            inpaint(model, x, noise, known=KNOWN, mask=MASK, **kw)


def test_cli_inpaint(tmp_path, capsys):
    import json

    import numpy as np

    from scoresde.cli import main

    (tmp_path / "two.json").write_text(json.dumps({"weights": [0.5, 0.5], "means": [[-1, -1], [1, 1]],
                                                   "stds": [0.3, 0.3]}))
    np.save(tmp_path / "pts.npy", np.array([[0.1, 0.0], [0.3, 9.0], [-0.2, 5.0]]))
    np.save(tmp_path / "mask.npy", np.array([1, 0]))
    np.save(tmp_path / "bad.npy", np.array([1, 2]))
    out = tmp_path / "o.npz"
    base = ["inpaint", "--problem", str(tmp_path / "two.json"), "--data", str(tmp_path / "pts.npy"), "--out", str(out)]
    assert main(base + ["--mask", str(tmp_path / "mask.npy"), "--steps", "20"]) == 0
    z = np.load(out)
    assert z["samples"].shape == (3, 2) and z["samples"][:, 0].tolist() == [0.1, 0.3, -0.2]
    torch.testing.assert_close(torch.from_numpy(z["conditional_weights"][0]),
                               MIX.condition(KNOWN, MASK).weights, rtol=1e-12, atol=0)
    # the same row, alone: per-row seeds make it the same fill
    np.save(tmp_path / "one.npy", np.array([[0.1, 0.0]]))
    one = tmp_path / "one.npz"
    assert main(["inpaint", "--problem", str(tmp_path / "two.json"), "--data", str(tmp_path / "one.npy"),
                 "--mask", str(tmp_path / "mask.npy"), "--steps", "20", "--out", str(one)]) == 0
    assert np.load(one)["samples"][0].tolist() == z["samples"][0].tolist()
    capsys.readouterr()
    for extra, needle in [(["--mask", str(tmp_path / "bad.npy")], "only 0"), (["--mask", str(tmp_path / "nope.npy")],
                          "not found"), (["--mask", str(tmp_path / "mask.npy"), "--jump", "2"], "--method repaint"),
                          (["--mask", str(tmp_path / "mask.npy"), "--sampler", "ggf"], "invalid choice")]:
        out.unlink(missing_ok=True)
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and not out.exists()


def test_exact_observation_likelihood_is_bayes_rule():
    """log p_t(y | x_t) = log p_0(x0_a = y) + log p_t(x_t | x0_a = y) - log p_t(x_t), in closed form."""
    from scoresde.inpainting import MixtureObservation

    mix = s.GaussianMixture([0.5, 0.3, 0.2], [[-1.0, -1.0, 0.5], [1.0, 1.0, 0.0], [0.2, -0.5, -1.0]], [0.3, 0.5, 0.4])
    known, mask = torch.tensor([0.1, 0.0, -0.4], dtype=F64), torch.tensor([1.0, 0.0, 1.0])
    for sde in (s.VPSDE(), s.VESDE(), s.SubVPSDE()):
        g = torch.Generator().manual_seed(0)
        x, t = torch.randn(32, 3, generator=g, dtype=F64), torch.rand(32, generator=g, dtype=F64) * 0.9 + 0.05
        alpha, sigma = sde.marginal(t)
        m = mask.bool()
        prior_y = torch.logsumexp(torch.log(mix.weights) + torch.stack([
            torch.distributions.Normal(mix.means[k, m], mix.stds[k]).log_prob(known[m]).sum() for k in range(3)]), 0)
        given_y = (torch.distributions.Normal(alpha[:, None] * known[m], sigma[:, None]).log_prob(x[:, m]).sum(1)
                   + mix.condition(known, mask).log_prob(x[:, ~m], alpha, sigma))
        expected = prior_y + given_y - mix.log_prob(x, alpha, sigma)
        obs = MixtureObservation(mix, sde, known, mask)
        torch.testing.assert_close(obs.log_prob(x, t), expected, rtol=1e-10, atol=1e-10)


def test_exact_guidance_and_dps_against_the_conditional():
    sde = s.VPSDE()
    model = s.ExactScoreModel(MIX, sde)
    n = 1500
    known = torch.tensor([0.3, 0.0], dtype=F64)
    truth = float(MIX.condition(known, MASK).weights[1])  # 0.9987
    se = math.sqrt(truth * (1 - truth) / n)
    exact = sample(model, n, 0, inpaint, (2,), dtype=F64, known=known, mask=MASK, base="seeds2", steps=40,
                   method="exact")
    assert exact.nfe == 80 and torch.equal(exact.samples[:, 0], known[0].expand(n))
    assert abs(_heavy_share(exact.samples) - truth) < 4 * max(se, 1 / n)  # the conditional score: no bias
    rep = sample(model, n, 0, inpaint, (2,), dtype=F64, known=known, mask=MASK, base="seeds1", steps=100)
    dps = sample(model, n, 0, inpaint, (2,), dtype=F64, known=known, mask=MASK, base="seeds1", steps=100,
                 method="dps", zeta=0.1)
    assert dps.nfe == 200 and torch.equal(dps.samples[:, 0], known[0].expand(n))
    # DPS pulls towards the conditional (measured 0.857 vs replacement 0.72, truth 0.999) but stays biased
    bias_rep, bias_dps = truth - _heavy_share(rep.samples), truth - _heavy_share(dps.samples)
    assert bias_dps < 0.7 * bias_rep and bias_dps > 10 * se


def test_dps_direction_on_a_gaussian_in_closed_form():
    """For Gaussian data D is affine, D(x) = mu + c (x - alpha mu), so grad ||A(y - D)|| = -c A(y - D)/||A(y - D)||."""
    from scoresde.inpainting import dps_direction

    g = s.Gaussian([0.5, -0.2, 1.0], 0.7)
    sde = s.VPSDE()
    model = s.ExactScoreModel(g, sde)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    t = torch.full((5,), 0.4, dtype=F64)
    known, mask = torch.tensor([1.0, 0.0, -1.0], dtype=F64), torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    alpha, sigma = (float(v) for v in sde.marginal(torch.tensor(0.4, dtype=F64)))
    c = alpha * 0.49 / (alpha**2 * 0.49 + sigma**2)
    r = mask * (known - model.denoised(x, t))
    expected = -2 * c * r / r.norm(dim=1, keepdim=True)
    torch.testing.assert_close(dps_direction(model, x, t, known, mask), expected, rtol=1e-10, atol=1e-12)


def test_cli_inpaint_dps_and_exact(tmp_path, capsys):
    import numpy as np

    from scoresde.brownian import NoiseSource
    from scoresde.cli import main

    np.save(tmp_path / "pts.npy", np.array([[0.1, 0.0], [0.3, 9.0]]))
    np.save(tmp_path / "mask.npy", np.array([1, 0]))
    base = ["inpaint", "--problem", "gmm2", "--data", str(tmp_path / "pts.npy"), "--mask", str(tmp_path / "mask.npy"),
            "--steps", "10"]
    out = tmp_path / "dps.npz"
    assert main(base + ["--method", "dps", "--zeta", "0.5", "--out", str(out)]) == 0
    got = np.load(out)["samples"]
    # row 1 equals the library call with the per-sample seed (0, 1)
    problem = s.exact.load_problem("gmm2")
    model = s.ExactScoreModel(problem, s.VPSDE())
    noise = NoiseSource(0, (2,), [1], dtype=F64)
    ref = inpaint(model, model.sde.prior_sample(noise.draw()), noise, known=torch.tensor([[0.3, 9.0]], dtype=F64),
                  mask=torch.tensor([[1.0, 0.0]], dtype=F64), steps=10, method="dps", zeta=0.5)
    assert got[1].tolist() == ref.samples[0].tolist() and got[:, 0].tolist() == [0.1, 0.3]
    assert main(base + ["--method", "exact", "--out", str(tmp_path / "ex.npz")]) == 0
    capsys.readouterr()
    for extra, needle in [(["--zeta", "1"], "--method dps"), (["--method", "dps", "--zeta", "-1"], ">= 0"),
                          (["--method", "dps", "--resample", "3"], "--method repaint")]:
        assert main(base + extra + ["--out", str(tmp_path / "bad.npz")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[-1] and not (tmp_path / "bad.npz").exists()
