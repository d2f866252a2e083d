"""Time grids: N steps give N + 1 float64 times from T down to eps, with the promised spacing."""
from __future__ import annotations

import pytest
import torch
from helpers import SDES

from scoresde.schedules import edm_rho, log_snr_uniform, quadratic_time, uniform_time
from scoresde.sde import VPSDE

F64 = torch.float64
GRIDS = {"uniform": uniform_time, "quadratic": quadratic_time, "log_snr": log_snr_uniform, "edm": edm_rho}


@pytest.fixture(params=list(SDES))
def sde(request):
    return SDES[request.param]()


@pytest.mark.parametrize("grid", list(GRIDS))
@pytest.mark.parametrize("steps", [1, 2, 10, 1000])
def test_grid_shape_order_and_ends(sde, grid, steps):
    t = GRIDS[grid](sde, steps)
    assert t.dtype == F64 and t.shape == (steps + 1,)
    assert float(t[0]) == sde.T and float(t[-1]) == sde.t_end
    assert (t[1:] < t[:-1]).all()


@pytest.mark.parametrize("grid", list(GRIDS))
def test_custom_eps(sde, grid):
    t = GRIDS[grid](sde, 20, t_end=0.05)
    assert float(t[0]) == 1.0 and float(t[-1]) == 0.05 and (t[1:] < t[:-1]).all()


def test_uniform_time(sde):
    t = uniform_time(sde, 8)
    torch.testing.assert_close(t, 1.0 - torch.arange(9, dtype=F64) * (1.0 - sde.t_end) / 8, rtol=0, atol=1e-15)


def test_quadratic_time(sde):
    t = quadratic_time(sde, 8)
    u = 1 - torch.arange(9, dtype=F64) / 8
    torch.testing.assert_close(t, sde.t_end + (1 - sde.t_end) * u**2, rtol=0, atol=1e-15)
    gaps = t[:-1] - t[1:]
    assert (gaps[1:] < gaps[:-1]).all()  # dense near the data end


def test_log_snr_uniform_is_uniform_in_log_snr(sde):
    t = log_snr_uniform(sde, 25)
    lam = sde.log_snr(t)
    want = torch.linspace(float(sde.log_snr(1.0)), float(sde.log_snr(sde.t_end)), 26, dtype=F64)
    torch.testing.assert_close(lam, want, rtol=1e-10, atol=1e-10)
    gaps = lam[1:] - lam[:-1]
    torch.testing.assert_close(gaps, gaps.mean().expand(25), rtol=1e-8, atol=1e-10)


def test_edm_rho_one_is_uniform_in_sigma_tilde(sde):
    t = edm_rho(sde, 16, rho=1.0)
    s = sde.sigma_tilde(t)
    want = torch.linspace(float(sde.sigma_tilde(1.0)), float(sde.sigma_tilde(sde.t_end)), 17, dtype=F64)
    torch.testing.assert_close(s, want, rtol=1e-10, atol=1e-12)


def test_edm_rho_seven_formula(sde):
    """sigma_i = (s_max^(1/rho) + i/N (s_min^(1/rho) - s_max^(1/rho)))^rho (Karras et al. eq. 5)."""
    N, rho = 12, 7.0
    s_max, s_min = float(sde.sigma_tilde(1.0)), float(sde.sigma_tilde(sde.t_end))
    i = torch.arange(N + 1, dtype=F64)
    want = (s_max ** (1 / rho) + i / N * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    torch.testing.assert_close(sde.sigma_tilde(edm_rho(sde, N)), want, rtol=1e-10, atol=1e-14)


def test_edm_rho_explicit_sigma_range():
    vp = VPSDE()
    s_lo, s_hi = 0.05, 20.0
    t = edm_rho(vp, 10, rho=7.0, sigma_min=s_lo, sigma_max=s_hi)
    s = vp.sigma_tilde(t)
    assert float(s[0]) == pytest.approx(s_hi, rel=1e-10) and float(s[-1]) == pytest.approx(s_lo, rel=1e-10)
    assert (t[1:] < t[:-1]).all() and 0 < float(t[-1]) < float(t[0]) < 1


@pytest.mark.parametrize("grid", list(GRIDS))
@pytest.mark.parametrize("steps", [0, -3])
def test_bad_steps_raise(sde, grid, steps):
    with pytest.raises(ValueError, match="steps"):
        GRIDS[grid](sde, steps)


@pytest.mark.parametrize("grid", list(GRIDS))
@pytest.mark.parametrize("eps", [-0.1, 1.0, 2.0])
def test_bad_end_time_raises(sde, grid, eps):
    with pytest.raises(ValueError, match="end time"):
        GRIDS[grid](sde, 10, t_end=eps)


@pytest.mark.parametrize("sde", [cls() for cls in SDES.values()], ids=list(SDES))
def test_log_snr_uniform_with_zero_end_time_is_finite_or_rejected(sde):
    """eps = 0 is accepted by the grid check ([0, T)); the grid must then be finite and decreasing,
    or the call must raise ValueError - never NaN times."""
    try:
        t = log_snr_uniform(sde, 4, t_end=0.0)
    except ValueError:
        return
    assert torch.isfinite(t).all(), t
    assert (t[1:] < t[:-1]).all(), t
