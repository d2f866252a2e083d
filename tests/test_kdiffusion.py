"""k-diffusion entry points: same samples as the scoresde solvers on the same grid and noise."""
from __future__ import annotations

import pytest
import torch

import scoresde as s
from scoresde.brownian import NoiseSource
from scoresde.parameterization import to_denoiser
from scoresde.samplers import ddim, dpmpp_2m, edm_heun, etd_erk, make_grid, seeds
from scoresde.samplers import kdiffusion as kd

F64 = torch.float64

CASES = {
    "seeds_1": (kd.sample_seeds_1, lambda m, x, n, g: seeds(m, x, n, order=1, grid=g), {}),
    "seeds_2": (kd.sample_seeds_2, lambda m, x, n, g: seeds(m, x, n, order=2, grid=g, eta=0.6, s_noise=0.9),
                {"eta": 0.6, "s_noise": 0.9}),
    "seeds_3": (kd.sample_seeds_3, lambda m, x, n, g: seeds(m, x, n, order=3, grid=g), {}),
    "etd_erk_1": (kd.sample_etd_erk_1, lambda m, x, n, g: etd_erk(m, x, order=1, grid=g), None),
    "etd_erk_2": (kd.sample_etd_erk_2, lambda m, x, n, g: etd_erk(m, x, order=2, grid=g), None),
    "etd_erk_3": (kd.sample_etd_erk_3, lambda m, x, n, g: etd_erk(m, x, order=3, grid=g), None),
    "dpmpp_2m": (kd.sample_dpmpp_2m, lambda m, x, n, g: dpmpp_2m(m, x, grid=g), None),
    "ddim": (kd.sample_ddim, lambda m, x, n, g: ddim(m, x, n, grid=g, eta=0.5), {"eta": 0.5}),
    "edm_heun": (kd.sample_edm_heun, lambda m, x, n, g: edm_heun(m, x, n, grid=g, S_churn=4.0, S_tmin=0.05, S_tmax=20),
                 {"s_churn": 4.0, "s_tmin": 0.05, "s_tmax": 20}),
}


@pytest.mark.parametrize("sde_cls", [s.VESDE, s.VPSDE, s.SubVPSDE])
@pytest.mark.parametrize("name", list(CASES))
def test_kdiffusion_entry_point_matches_scoresde(name, sde_cls):
    """With the exact denoiser D(x, sigma) = to_denoiser(model) and sigmas = sigma~(grid), the k-diffusion call on
    x_T / alpha_T returns the scoresde samples / alpha_eps (the solvers are invariant under x = alpha y)."""
    kfun, sfun, kw = CASES[name]
    model = s.ExactScoreModel(s.load_problem("gmm8"), sde_cls())
    sde = model.sde
    g = make_grid(sde, 6, "logsnr")
    n1, n2 = NoiseSource(4, (2,), 5, dtype=F64), NoiseSource(4, (2,), 5, dtype=F64)
    x = sde.prior_sample(n1.draw())
    n2.draw()
    ref = sfun(model, x, n1, g).samples
    calls = {"n": 0}
    den = to_denoiser(model)

    def D(y, sigma, scale=1.0):
        calls["n"] += 1
        assert scale == 2.0  # extra_args reach the model
        return den(y, sigma)

    sigmas = sde.sigma_tilde(g)
    extra = {} if kw is None else dict(kw, noise_sampler=lambda a, b: n2.draw())
    out = kfun(D, x / sde.alpha(g[0]), sigmas, extra_args={"scale": 2.0}, **extra)
    torch.testing.assert_close(out * sde.alpha(g[-1]), ref, rtol=1e-9, atol=1e-9)
    assert n2.count == n1.count


@pytest.mark.parametrize("name,per_step", [("seeds_2", 2), ("etd_erk_3", 3), ("dpmpp_2m", 1), ("edm_heun", 2),
                                           ("ddim", 1)])
def test_final_step_to_zero_is_the_denoiser(name, per_step):
    """A schedule ending in sigma = 0: the last step returns D(x, sigma_{N-1}) and costs one NFE."""
    kfun = CASES[name][0]
    prob = s.load_problem("gmm8")
    model = s.ExactScoreModel(prob, s.VESDE())
    den = to_denoiser(model)
    calls = {"n": 0}

    def D(y, sigma):
        calls["n"] += 1
        return den(y, sigma)

    sigmas = torch.tensor([20.0, 5.0, 1.0, 0.2, 0.0], dtype=F64)
    x = 20.0 * torch.randn(7, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    kw = {} if name in ("etd_erk_3", "dpmpp_2m") else {"noise_sampler": lambda a, b: torch.randn(7, 2, generator=gen,
                                                                                                 dtype=F64)}
    full = kfun(D, x, sigmas, **kw)
    assert calls["n"] == 3 * per_step + 1
    gen.manual_seed(1)
    seen = {}
    part = kfun(D, x, sigmas[:-1], callback=lambda info: seen.update(info), **kw)
    torch.testing.assert_close(full, den(part, 0.2), rtol=1e-12, atol=1e-12)
    assert seen["i"] == 2 and float(seen["sigma"]) == pytest.approx(1.0)
    # the samples sit on the ring's modes: D at sigma = 0.2 of a radius-1 ring
    assert ((full.norm(dim=-1) - 1).abs() < 0.3).all()


@pytest.mark.parametrize("name", list(CASES))
def test_disable_maps_to_the_progress_bar(name, capsys):
    """k-diffusion's ``disable``: False shows the bar on stderr, True hides it, None shows it on a terminal only
    (pytest's stderr is not one); the callback gets the contract's keys, EDM's sigma_hat its churned level."""
    kfun, _, kw = CASES[name]
    den = to_denoiser(s.ExactScoreModel(s.load_problem("gmm8"), s.VESDE()))
    sigmas = torch.tensor([20.0, 5.0, 1.0, 0.2], dtype=F64)
    x = 20.0 * torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    extra = {k: v for k, v in (kw or {}).items() if k != "s_tmin"}
    seen = []
    kfun(den, x, sigmas, disable=False, callback=seen.append, **extra)
    assert capsys.readouterr().err
    for disable in (True, None):
        kfun(den, x, sigmas, disable=disable, **extra)
        assert not capsys.readouterr().err
    assert [set(st) for st in seen] == [{"i", "x", "t", "sigma", "sigma_hat", "denoised"}] * 3
    churn = min(extra.get("s_churn", 0.0) / 3, 2**0.5 - 1)
    for st in seen:
        g = churn if float(st["sigma"]) <= extra.get("s_tmax", 0.0) else 0.0
        assert float(st["sigma_hat"]) == pytest.approx(float(st["sigma"]) * (1 + g), rel=1e-12)


def test_bad_sigmas_is_one_clear_error():
    with pytest.raises(ValueError, match="decreasing"):
        kd.sample_seeds_1(lambda x, s: x, torch.zeros(2, 2), torch.tensor([1.0, 2.0]))
