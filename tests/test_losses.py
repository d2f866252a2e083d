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
