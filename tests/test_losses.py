"""Each loss's minimiser is the true score: a small MLP trained briefly on Gaussian data learns it."""
from __future__ import annotations

import pytest
import torch

import scoresde as s
from scoresde.losses import ddpm_loss, draw, dsm_loss, smld_loss
from scoresde.nets import MLP
from scoresde.parameterization import NetworkModel, noise_level, scaled_time

F64 = torch.float64
PROB = s.Gaussian([1.0, -0.5], [0.5, 0.2])


def _train(model, loss_fn, steps=400, **kw):
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.net.parameters(), lr=2e-3)
    losses = []
    for _ in range(steps):
        x0 = PROB.sample(256, generator=g)
        loss = loss_fn(model, x0, *draw(x0, g), **kw)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _eps_error(model, ts):
    """E||eps_hat - eps_true||^2 / E||eps_true||^2 over x_t ~ p_t at the given times."""
    g = torch.Generator().manual_seed(1)
    exact = s.ExactScoreModel(PROB, model.sde)
    num = den = 0.0
    with torch.no_grad():
        for t in ts:
            x0 = PROB.sample(2000, generator=g)
            xt = model.sde.marginal_sample(x0, t, torch.randn(x0.shape, generator=g, dtype=F64))
            tt = torch.full((2000,), t, dtype=F64)
            e_true = exact.eps(xt, tt)
            num += float(((model.eps(xt, tt) - e_true) ** 2).sum())
            den += float((e_true**2).sum())
    return num / den


@pytest.mark.parametrize("case", ["dsm_vp", "dsm_ve", "dsm_subvp_lw", "smld", "ddpm"])
def test_loss_minimiser_is_the_true_score(case):
    torch.manual_seed(0)
    if case in ("dsm_vp", "ddpm"):
        sde, pred, tin = s.VPSDE(), "eps", scaled_time(999)
    elif case == "dsm_subvp_lw":
        sde, pred, tin = s.SubVPSDE(), "eps", scaled_time(999)
    else:
        sde, pred, tin = s.VESDE(sigma_max=5.0), "scaled_score", noise_level
    net = MLP(2, width=64, depth=2, c_scale=1.0 if tin is not noise_level else 100.0).double()
    model = NetworkModel(net, sde, pred, tin)
    fn, kw = {"dsm_vp": (dsm_loss, {}), "dsm_ve": (dsm_loss, {}), "dsm_subvp_lw": (dsm_loss, {"likelihood_weighting": True}),
              "smld": (smld_loss, {}), "ddpm": (ddpm_loss, {})}[case]
    before = _eps_error(model, [0.05, 0.2, 0.5, 0.9])
    losses = _train(model, fn, **kw)
    after = _eps_error(model, [0.05, 0.2, 0.5, 0.9])
    assert sum(losses[-50:]) < sum(losses[:50])  # the loss goes down
    assert after < 0.05 and after < 0.2 * before, (before, after)


@pytest.mark.parametrize("loss", [smld_loss, ddpm_loss])
def test_discrete_losses_need_a_discrete_form(loss):
    """sub-VP has no discrete chain: the discrete losses say so (no AttributeError)."""
    model = NetworkModel(MLP(2, width=8, depth=1).double(), s.SubVPSDE(), "eps", scaled_time(999))
    x0 = PROB.sample(4)
    with pytest.raises(TypeError, match="discrete form"):
        loss(model, x0, *draw(x0, torch.Generator().manual_seed(0)))


class _Recorder(s.ScoreModel):
    """A model whose eps prediction is a fixed function of (x, t); it records the times it was asked about."""

    def __init__(self, sde):
        super().__init__(sde, "eps")
        self.times = None

    def predict(self, x, t):
        self.times = t
        return 0.3 * x + t.view(-1, 1)


@pytest.mark.parametrize("sde", [s.VPSDE(), s.VESDE(sigma_min=0.01, sigma_max=50.0), s.SubVPSDE()],
                         ids=["vp", "ve", "subvp"])
def test_lognormal_time_sampling_hits_the_requested_noise_levels(sde):
    """u = Phi(z) gives t with sigma~(t) = exp(p_mean + p_std z) inside the SDE's range, t_min / T outside it."""
    z = torch.tensor([-9.0, -1.0, 0.0, 0.5, 1.5, 7.0], dtype=F64)
    u = 0.5 * (1 + torch.erf(z / 2**0.5))
    model = _Recorder(sde)
    x0 = torch.zeros(len(z), 2, dtype=F64)
    dsm_loss(model, x0, u, torch.zeros_like(x0), t_sampling="lognormal", p_mean=-0.4, p_std=1.3, t_min=1e-3)
    t = model.times
    want = torch.exp(-0.4 + 1.3 * z)
    lo, hi = sde.sigma_tilde(torch.tensor(1e-3, dtype=F64)), sde.sigma_tilde(torch.tensor(sde.T, dtype=F64))
    inside = (want > lo) & (want < hi)
    assert inside[1:5].all() and not inside[0] and not inside[-1]
    torch.testing.assert_close(sde.sigma_tilde(t[inside]), want[inside], rtol=1e-9, atol=0)
    assert t[0] == 1e-3 and t[-1] == sde.T


def test_sigma_data_weighting_is_edms_weighting_of_the_denoiser_error():
    """sum over the batch of lambda(sigma~) ||D(x_t) - x0||^2 / d, lambda = (sigma~^2 + sd^2) / (sigma~ sd)^2 (EDM eq. 8)."""
    sde, sd = s.VPSDE(), 0.5
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(7, 3, generator=g, dtype=F64)
    u, noise = draw(x0, g)
    model = _Recorder(sde)
    got = dsm_loss(model, x0, u, noise, sigma_data=sd, t_min=1e-3)
    t = model.times
    xt = sde.marginal_sample(x0, t, noise)
    alpha, sigma = sde.marginal(t)
    d_hat = (xt - sigma[:, None] * model.eps(xt, t)) / alpha[:, None]
    st = sigma / alpha
    lam = (st**2 + sd**2) / (st * sd) ** 2
    want = (lam * ((d_hat - x0) ** 2).mean(-1)).mean()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
