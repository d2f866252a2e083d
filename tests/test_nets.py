"""Image score networks: the net(x, c) contract, conditioning, no cross-sample leakage,
gradient coverage, and FIR resampling truths. Everything runs at tiny widths."""
from __future__ import annotations

import math

import pytest
import torch

from scoresde.nets import (
    NCSN,
    NCSNv2,
    UNet,
    build_paper_net,
    count_parameters,
    downsample_2d,
    fir_kernel,
    paper_configs,
    upfirdn2d,
    upsample_2d,
)
from scoresde.parameterization import NetworkModel, discrete_index, noise_level, scaled_time
from scoresde.sde import VESDE, VPSDE

_PP = dict(resblock_type="biggan", skip_rescale=True, attn_every_up_block=False)
_FOURIER = dict(embedding_type="fourier", c_transform="log")

# name -> (class, tiny kwargs, three distinct time inputs c)
ARCHS: dict[str, tuple[type, dict, list[float]]] = {
    "ddpm": (UNet, dict(nf=16, ch_mult=(1, 2), num_res_blocks=1), [0.0, 250.0, 999.0]),
    "ddpmpp": (UNet, dict(nf=16, ch_mult=(1, 2), num_res_blocks=1, **_PP), [0.0, 250.0, 999.0]),
    "ncsnpp": (UNet, dict(nf=16, ch_mult=(1, 2), num_res_blocks=1, fir=True, progressive_input="residual",
                          **_PP, **_FOURIER), [0.01, 1.0, 50.0]),
    # four levels: 28x28 inputs are padded to 32 inside
    "ncsnpp_output_skip": (UNet, dict(nf=8, ch_mult=(1, 2, 2, 2), num_res_blocks=1, fir=True, progressive="output_skip",
                                      progressive_input="input_skip", progressive_combine="cat", **_PP, **_FOURIER),
                           [0.01, 1.0, 50.0]),
    "ncsnpp_residual_ddpmblocks": (UNet, dict(nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, fir=True, skip_rescale=True,
                                              progressive="residual", progressive_input="residual"),
                                   [0.0, 250.0, 999.0]),
    "ncsn": (NCSN, dict(ngf=8, num_classes=10), [0.0, 3.0, 7.5]),
    "ncsn_log_sigma": (NCSN, dict(ngf=8, num_classes=10, conditioning="log_sigma", sigma_min=0.01, sigma_max=1.0),
                       [0.01, 0.1, 0.7]),
    "ncsnv2": (NCSNv2, dict(ngf=8), [0.01, 1.0, 50.0]),
}


def _make(name: str, channels: int, size: int, **extra) -> torch.nn.Module:
    cls, kwargs, _ = ARCHS[name]
    kwargs = dict(kwargs, **extra)
    if cls is UNet:
        m = 2 ** (len(kwargs["ch_mult"]) - 1)
        padded = math.ceil(size / m) * m
        kwargs.update(image_size=size, attn_resolutions=(padded // 2,))  # attention on the second level
    torch.manual_seed(0)
    return cls(in_channels=channels, **kwargs)


def _c(name: str) -> torch.Tensor:
    return torch.tensor(ARCHS[name][2])


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32])
def test_shape_and_every_parameter_gets_a_gradient(name, channels, size):
    net = _make(name, channels, size)
    x = torch.randn(3, channels, size, size)
    y = net(x, _c(name))
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient (DDP would fail): {missing}"
    zero = [n for n, p in net.named_parameters() if not p.grad.abs().sum() > 0]
    assert not zero, f"parameters with an all-zero gradient: {zero}"


@pytest.mark.parametrize("name", list(ARCHS))
def test_conditioning_and_no_cross_sample_leakage(name):
    extra = dict(init_scale=1.0) if ARCHS[name][0] is UNet else {}
    net = _make(name, 3, 32, **extra).eval()
    torch.manual_seed(1)
    x = torch.randn(3, 3, 32, 32)
    c = _c(name)
    with torch.no_grad():
        y = net(x, c)
        scale = y.abs().max()
        for i in range(3):  # each sample alone gives the same output as inside the batch
            torch.testing.assert_close(net(x[i:i + 1], c[i:i + 1]), y[i:i + 1], atol=1e-5 * scale, rtol=1e-5)
        y_same_c = net(x, c[:1].expand(3))  # same x, all samples at c[0]
    changed = (y_same_c[1:] - y[1:]).abs().amax((1, 2, 3)) / scale
    if name == "ncsnv2":  # NCSNv2 is unconditional: c is ignored (it divides by sigma outside)
        assert changed.max() < 1e-6
    else:
        assert changed.min() > 1e-3, "the output must depend on c"
    torch.testing.assert_close(y_same_c[:1], y[:1], atol=1e-5 * scale, rtol=1e-5)


def test_ncsn_conditioning_interpolates_the_table():
    net = _make("ncsn", 1, 28).eval()
    x = torch.randn(1, 1, 28, 28).expand(3, -1, -1, -1)
    with torch.no_grad():
        a, b, mid = net(x, torch.tensor([2.0, 3.0, 2.5])).unbind(0)
        assert (a - b).abs().max() > 1e-4
        lo, hi = net(x[:2], torch.tensor([-5.0, 99.0]))  # clamped to the first / last row
        torch.testing.assert_close(lo, net(x[:1], torch.tensor([0.0]))[0])
        torch.testing.assert_close(hi, net(x[:1], torch.tensor([9.0]))[0])
    # log_sigma: sigma_min is row 0, sigma_max the last row
    ls = _make("ncsn_log_sigma", 1, 28).eval()
    ls.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ls(x[:2], torch.tensor([0.01, 1.0])), net(x[:2], torch.tensor([0.0, 9.0])))


def test_dropout_is_active_in_train_mode_only():
    net = _make("ddpmpp", 1, 28, dropout=0.5, init_scale=1.0)
    x, c = torch.randn(2, 1, 28, 28), torch.tensor([1.0, 2.0])
    assert not torch.equal(net(x, c), net(x, c))
    net.eval()
    assert torch.equal(net(x, c), net(x, c))


def test_nets_plug_into_the_model_contract():
    x = torch.randn(2, 1, 28, 28)
    vp = NetworkModel(_make("ddpmpp", 1, 28), VPSDE(), "eps", scaled_time(999.0))
    assert vp.score(x, torch.tensor([0.3, 0.9])).shape == x.shape
    ve = NetworkModel(_make("ncsnpp", 1, 28), VESDE(), "scaled_score", noise_level)
    assert ve.score(x, 0.5).shape == x.shape
    vei = NetworkModel(_make("ncsn", 1, 28), VESDE(N=10), "score", discrete_index)
    assert torch.isfinite(vei.score(x, torch.tensor([0.0, 1.0]))).all()


def test_invalid_switches_raise():
    for bad in (dict(resblock_type="x"), dict(progressive="x"), dict(progressive_input="x"),
                dict(progressive_combine="x"), dict(embedding_type="x"), dict(c_transform="x")):
        with pytest.raises(ValueError):
            UNet(in_channels=1, nf=8, ch_mult=(1, 2), num_res_blocks=1, **bad)
    with pytest.raises(ValueError):
        NCSN(in_channels=1, ngf=8, conditioning="x")


# ---- paper configurations (meta device: no memory, no time) ------------------------------------
def test_paper_configs_build_and_are_self_consistent():
    counts = {}
    for name in paper_configs():
        with torch.device("meta"):
            counts[name] = count_parameters(build_paper_net(name))
    assert set(counts) >= {"ddpm", "ddpmpp_cont", "ddpmpp_cont_deep", "ncsnpp_cont", "ncsnpp_cont_deep", "ncsn",
                           "ncsnv2"}
    assert counts["ddpmpp_cont_deep"] > counts["ddpmpp_cont"] > counts["ddpm"]
    assert counts["ncsnpp_cont_deep"] > counts["ncsnpp_cont"] > counts["ddpmpp_cont"]  # + input-pyramid convs
    # the deep variants double num_res_blocks: the same increment for DDPM++ and NCSN++
    assert counts["ddpmpp_cont_deep"] - counts["ddpmpp_cont"] == counts["ncsnpp_cont_deep"] - counts["ncsnpp_cont"]
    assert counts["ncsn"] > counts["ncsnv2"]  # conditional norm tables and norms in the refine blocks
    with torch.device("meta"):
        assert count_parameters(build_paper_net("ddpm", in_channels=1)) < counts["ddpm"]


# ---- FIR resampling ----------------------------------------------------------------------------
def _naive_upfirdn_1d(z: torch.Tensor, k: torch.Tensor, up: int, down: int, p0: int, p1: int) -> torch.Tensor:
    u = torch.zeros(*z.shape[:-1], z.shape[-1] * up)
    u[..., ::up] = z
    u = torch.nn.functional.pad(u, (p0, p1))
    n = u.shape[-1] - len(k) + 1
    out = torch.stack([sum(u[..., i + j] * k[len(k) - 1 - j] for j in range(len(k))) for i in range(n)], -1)
    return out[..., ::down]


def test_fir_kernel_sums_to_one_and_is_separable():
    k = fir_kernel((1, 3, 3, 1))
    assert k.shape == (4, 4)
    torch.testing.assert_close(k.sum(), torch.tensor(1.0))
    torch.testing.assert_close(k, torch.outer(k.sum(1), k.sum(0)))
    torch.testing.assert_close(k.sum(1), torch.tensor([1.0, 3, 3, 1]) / 8)


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (2, 2)), (2, 2, (0, 1))])
def test_upfirdn2d_matches_its_definition(up, down, pad):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6)
    k = torch.tensor([1.0, 2.0, 5.0, 1.0])  # asymmetric: checks the flip (true convolution)
    ref = _naive_upfirdn_1d(x, k, up, down, *pad)
    ref = _naive_upfirdn_1d(ref.transpose(-1, -2), k, up, down, *pad).transpose(-1, -2)
    torch.testing.assert_close(upfirdn2d(x, torch.outer(k, k), up, down, pad), ref, atol=1e-4, rtol=1e-5)


def test_fir_resampling_of_constants_and_sizes():
    x = torch.full((2, 3, 16, 16), 2.5)
    d, u = downsample_2d(x), upsample_2d(x)
    assert d.shape == (2, 3, 8, 8) and u.shape == (2, 3, 32, 32)
    # zero-padded borders (as in the papers): constants are preserved away from the border
    torch.testing.assert_close(d[..., 1:-1, 1:-1], torch.full_like(d[..., 1:-1, 1:-1], 2.5))
    torch.testing.assert_close(u[..., 1:-1, 1:-1], torch.full_like(u[..., 1:-1, 1:-1], 2.5))
    assert downsample_2d(torch.zeros(1, 1, 28, 28)).shape == (1, 1, 14, 14)


def test_fir_up_then_down_recovers_smooth_images():
    i = torch.arange(32.0)
    ramp = (0.3 * i[:, None] - 0.2 * i[None, :] + 1.0)[None, None]
    torch.testing.assert_close(downsample_2d(upsample_2d(ramp))[..., 2:-2, 2:-2], ramp[..., 2:-2, 2:-2])  # exact for linear
    smooth = (torch.sin(2 * math.pi * i / 32)[:, None] * torch.cos(2 * math.pi * i / 32)[None, :])[None, None]
    err = (downsample_2d(upsample_2d(smooth)) - smooth)[..., 2:-2, 2:-2].abs().max()
    assert err < 0.03  # O(h^2) for a smooth image


def test_mlp_fourier_features_are_the_formula_and_fixed():
    """MLP(fourier_features=m): input [x, sin(2 pi x B), cos(2 pi x B)], B ~ N(0, scale^2) fixed by fourier_seed."""
    from scoresde.nets import MLP

    plain = MLP(2, width=8, depth=1)
    ff = MLP(2, width=8, depth=1, fourier_features=5, fourier_scale=0.3)
    assert set(plain.state_dict()) == set(ff.state_dict()) - {"x_freqs"}  # m = 0: the old parameters, old checkpoints
    b = torch.randn(2, 5, generator=torch.Generator().manual_seed(0)) * 0.3
    assert torch.equal(ff.x_freqs, b) and torch.equal(MLP(2, 8, 1, fourier_features=5, fourier_scale=0.3).x_freqs, b)
    x = torch.randn(7, 2, dtype=torch.float64)
    a = 2 * math.pi * x @ b.double()
    torch.testing.assert_close(ff.double().features(x), torch.cat([x, a.sin(), a.cos()], -1))
    assert ff.inp.in_features == 12 and ff(x, torch.zeros(7)).shape == (7, 2)
