"""score_sde_pytorch checkpoints: names against the seed's own (derived lists), round trips per family, hand-checked
blocks, refusals with one line, and the ``scoresde import score-sde`` -> ``scoresde sample`` round trip.

Every checkpoint here is written by the test from random weights in the seed's format (``module.`` names,
an optimizer dict, step, EMA ``shadow_params``); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scoresde.cli import main
from scoresde.config import build_model, build_net, build_sde, load_config
from scoresde.interop import ScoreSDECheckpointError, load_score_sde_checkpoint, score_sde_config
from scoresde.interop.score_sde import _data_shape, score_sde_name_map, score_sde_sigmas, to_score_sde_state
from scoresde.nets.layers import AttnBlock, fir_kernel, upfirdn2d, upsample_2d, upsample_conv_2d
from scoresde.nets.ncsn import InstanceNormPlusPlus
from scoresde.workdir import model_from_workdir

ROOT = Path(__file__).resolve().parents[1]
NAMES = sorted((Path(__file__).parent / "data" / "score_sde_names").rglob("*.json"))

UNET = ["model.kwargs.nf=8", "model.kwargs.ch_mult=[1, 2]", "model.kwargs.num_res_blocks=1",
        "model.kwargs.attn_resolutions=[4]", "model.kwargs.image_size=8", "data.resolution=8"]
REFINE = ["model.kwargs.ngf=4", "data.resolution=8"]
FAMILIES = {  # name: (config, overrides)
    "ncsnpp_cont_fir_residual_fourier": ("ve/cifar10_ncsnpp_continuous", UNET),
    "ncsnpp_output_skip_input_skip_cat": ("ve/celebahq_256_ncsnpp_continuous",
                                          UNET + ["model.kwargs.progressive_combine=cat"]),
    "ncsnpp_ddpm_blocks_fused_up_conv": ("ve/cifar10_ncsnpp_continuous",
                                         UNET + ["model.kwargs.resblock_type=ddpm", "model.kwargs.progressive=residual"]),
    "ncsnpp_discrete_positional": ("ve/cifar10_ncsnpp", UNET),
    "ddpmpp_cont_subvp": ("subvp/cifar10_ddpmpp_continuous", UNET),
    "ddpm": ("vp/cifar10_ddpm", UNET),
    "ncsnv2": ("ve/cifar10_ncsnv2", REFINE),
    "ncsn": ("ve/cifar10_ncsn", REFINE),
}


def _config(name: str, sets: list[str]):
    return load_config(ROOT / "configs" / f"{name}.yaml", sets)


def _randomize(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every parameter, the zero-initialised convs too (a zero weight hides a wrong map)
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return net.eval()


def _write_seed_checkpoint(path: Path, name: str, sets: list[str]):
    """A score_sde-format checkpoint of random raw and EMA weights; returns (contract config, raw net, EMA net)."""
    cfg = score_sde_config(_config(name, sets))
    torch.manual_seed(0)
    net = _randomize(build_net(cfg.model, _data_shape(cfg, None)), 1)
    ema = _randomize(copy.deepcopy(net), 2)
    torch.save(to_score_sde_state(net, ema, step=12, sigmas=score_sde_sigmas(cfg).float()), path)
    return cfg, net, ema


def _inputs(cfg, n: int = 3):
    g = torch.Generator().manual_seed(5)
    shape = _data_shape(cfg, None)
    x = torch.randn(n, *shape, generator=g)
    sde = build_sde(cfg.sde)
    N = cfg.sde.N
    t = torch.tensor([N - 1, N // 2, 2], dtype=torch.float64) / (N - 1) * (1 - sde.t_end) + sde.t_end
    return x, t


# ---- the target: released checkpoints' names, from the seed's own code ----------------------------------
@pytest.mark.parametrize("path", NAMES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_name_map_matches_the_seed_checkpoint_names(path):
    """Our inverse map produces exactly the seed's state_dict (names, shapes, order) and shadow_params membership."""
    doc = json.loads(path.read_text())
    cfg = score_sde_config(load_config(ROOT / "configs" / f"{path.parent.name}/{path.stem}.yaml"))
    with torch.device("meta"):
        net = build_net(cfg.model, _data_shape(cfg, None))
    own = net.state_dict()
    entries = score_sde_name_map(net)
    ours = [[f"module.{e.seed}", list(e.seed_shape(own[e.ours])) if e.ours else [cfg.sde.N], e.ema] for e in entries]
    assert ours == doc["tensors"]
    assert sum(math.prod(s) for _, s, ema in doc["tensors"] if ema) == doc["trainable_parameters"]
    assert sum(p.numel() for p in net.parameters()) == doc["trainable_parameters"]


def test_the_ddpm_config_is_the_seeds_layout():
    doc = json.loads((Path(__file__).parent / "data/score_sde_names/vp/cifar10_ddpm.json").read_text())
    assert doc["trainable_parameters"] == 35_218_947  # the issue's 35.22 M, not Ho et al.'s 35.75 M
    cfg = load_config(ROOT / "configs/vp/cifar10_ddpm.yaml")
    with torch.device("meta"):
        net = build_net(cfg.model, (3, 32, 32))
    assert sum(p.numel() for p in net.parameters()) == doc["trainable_parameters"]


# ---- round trips per family ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_round_trip_per_family(tmp_path, family):
    """ours -> score_sde layout (module., optimizer, step, shadow_params) -> ours: the same function, EMA or raw."""
    name, sets = FAMILIES[family]
    path = tmp_path / "checkpoint_12.pth"
    cfg, net, ema = _write_seed_checkpoint(path, name, sets)
    state = torch.load(path, weights_only=True)
    assert all(k.startswith("module.") for k in state["model"]) and state["step"] == 12
    shadow = state["ema"]["shadow_params"]  # the trainable parameters (q, k, v apart: more tensors, same values)
    assert sum(t.numel() for t in shadow) == sum(p.numel() for p in net.parameters())
    x, t = _inputs(cfg)
    sde = build_sde(cfg.sde)
    for use_ema, ref_net in ((True, ema), (False, net)):
        model = load_score_sde_checkpoint(path, _config(name, sets), use_ema=use_ema)
        ref = build_model(cfg, ref_net, sde)
        with torch.no_grad():
            got, want = model.score(x, t), ref.score(x, t)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # and the two weight sets are really different functions
        assert not torch.allclose(build_model(cfg, net, sde).score(x, t), build_model(cfg, ema, sde).score(x, t))


def test_contract_of_the_seed_score_functions():
    """get_score_fn's time inputs and output kinds (models/utils.py), per SDE and training kind."""
    expect = {"ve/cifar10_ncsnpp_continuous": ("scaled_score", "sigma", "log", True),
              "ve/cifar10_ncsnpp": ("scaled_score", "reversed_index", "none", True),
              "vp/cifar10_ddpmpp_continuous": ("eps", "999t", "none", False),
              "subvp/cifar10_ddpmpp_continuous": ("eps", "999t", "none", False),
              "vp/cifar10_ddpm": ("eps", "ddpm_index", "none", False),
              "ve/cifar10_ncsnv2": ("scaled_score", "reversed_index", None, True),
              "ve/cifar10_ncsn": ("score", "reversed_index", None, True)}
    for name, (pred, time_input, c_transform, centered_input) in expect.items():
        m = score_sde_config(_config(name, [])).model
        assert (m.prediction, m.time_input, m.kwargs.get("c_transform"), m.kwargs["center_input"]) == \
            (pred, time_input, c_transform, centered_input), name
    # VE discrete labels count from sigma_max: t = 1 is label 0, t = 1 - 3/(N-1) is label 3
    cfg = score_sde_config(_config("ve/cifar10_ncsnv2", []))
    sde = build_sde(cfg.sde)
    from scoresde.registry import TIME_INPUTS

    t = torch.tensor([1.0, 1 - 3 / (cfg.sde.N - 1)], dtype=torch.float64)
    assert TIME_INPUTS["reversed_index"](t, sde).tolist() == [0.0, 3.0]
    # DDPM: label i exactly at the chain's level sqrt(1 - abar_i), fractional in between
    vp = build_sde(_config("vp/cifar10_ddpm", []).sde)
    _, std = vp.discrete().marginal(torch.tensor([0, 1, 500, 999]))
    t = vp.t_from_sigma_tilde(std / torch.sqrt(1 - std**2))
    torch.testing.assert_close(TIME_INPUTS["ddpm_index"](t, vp), torch.tensor([0.0, 1, 500, 999], dtype=torch.float64))


# ---- hand-checked blocks ---------------------------------------------------------------------------------
def _nin(x, W, b):
    """The seed's NIN layer: x (B, C, H, W) contracted with W (C, out) over channels, plus b."""
    return torch.einsum("bchw,co->bohw", x, W) + b[None, :, None, None]


def test_attention_block_from_seed_tensors_by_hand():
    """An AttnBlockpp filled from NIN_0..3 computes x + NIN_3(softmax(q k / sqrt C) v) (layerspp.AttnBlockpp)."""
    torch.manual_seed(0)
    C = 8
    blk = AttnBlock(C, skip_rescale=True).double().eval()
    g = torch.Generator().manual_seed(1)
    seed = {f"NIN_{i}.{n}": torch.randn(s, generator=g, dtype=torch.float64)
            for i in range(4) for n, s in (("W", (C, C)), ("b", (C,)))}
    seed.update({"GroupNorm_0.weight": torch.rand(C, generator=g, dtype=torch.float64) + 0.5,
                 "GroupNorm_0.bias": torch.randn(C, generator=g, dtype=torch.float64)})
    own = blk.state_dict()
    w = _walk_block(blk)
    for e in w:
        e.fill(own[e.ours], seed[e.seed])
    blk.load_state_dict(own)
    x = torch.randn(2, C, 3, 4, generator=g, dtype=torch.float64)
    h = F.group_norm(x, 2, seed["GroupNorm_0.weight"], seed["GroupNorm_0.bias"], eps=1e-6)
    q, k, v = (_nin(h, seed[f"NIN_{i}.W"], seed[f"NIN_{i}.b"]) for i in range(3))
    att = torch.softmax(torch.einsum("bchw,bcij->bhwij", q, k).reshape(2, 3, 4, 12) / math.sqrt(C), -1)
    out = torch.einsum("bhwk,bck->bchw", att, v.reshape(2, C, 12))
    want = (x + _nin(out, seed["NIN_3.W"], seed["NIN_3.b"])) / math.sqrt(2)
    with torch.no_grad():
        torch.testing.assert_close(blk(x), want, rtol=1e-10, atol=1e-10)


def _walk_block(blk):
    from scoresde.interop.score_sde import _Walk

    w = _Walk()
    w.attn("blk", "", blk)
    return [type(e)(e.seed.removeprefix("blk."), e.ours.removeprefix("."), e.ema, e.nin, e.part, e.chunks, e.dim,
                    e.squeeze) for e in w.entries]


def test_instance_norm_plus_plus_from_seed_tensors_by_hand():
    """InstanceNorm2dPlus: gamma (IN(x) + alpha (mu - mean mu) / sqrt(var mu + eps)) + beta, from alpha, gamma, beta."""
    from scoresde.interop.score_sde import _Walk

    C = 5
    norm = InstanceNormPlusPlus(C).double()
    g = torch.Generator().manual_seed(2)
    seed = {n: torch.randn(C, generator=g, dtype=torch.float64) for n in ("alpha", "gamma", "beta")}
    w = _Walk()
    w.norm("n", "table", norm)
    own = norm.state_dict()
    for e in w.entries:
        e.fill(own["table"], seed[e.seed.removeprefix("n.")])
    norm.load_state_dict(own)
    x = torch.randn(3, C, 4, 4, generator=g, dtype=torch.float64) * 2 + 1
    mu = x.mean((2, 3))
    z = (mu - mu.mean(1, keepdim=True)) / torch.sqrt(mu.var(1, keepdim=True) + 1e-5)
    inorm = (x - mu[..., None, None]) / torch.sqrt(x.var((2, 3), unbiased=False, keepdim=True) + 1e-5)
    want = seed["gamma"][:, None, None] * (inorm + z[..., None, None] * seed["alpha"][:, None, None]) \
        + seed["beta"][:, None, None]
    torch.testing.assert_close(norm(x), want, rtol=1e-10, atol=1e-10)


def test_fused_fir_up_conv_closed_form():
    """score_sde's fused up-conv = a valid conv over the *uncropped* FIR upsampling; the separate form agrees inside."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    fused = upsample_conv_2d(x, w)
    full = F.conv2d(upfirdn2d(x, 4 * fir_kernel((1, 3, 3, 1), dtype=torch.float64), up=2, pad=(3, 2)), w)
    torch.testing.assert_close(fused, full, rtol=1e-12, atol=1e-12)
    separate = F.conv2d(upsample_2d(x), w, padding=1)
    torch.testing.assert_close(fused[..., 1:-1, 1:-1], separate[..., 1:-1, 1:-1], rtol=1e-12, atol=1e-12)
    assert (fused - separate).abs().amax() > 0.1  # the borders differ: the reason for the fused form


# ---- refusals: one line each -----------------------------------------------------------------------------
@pytest.fixture
def small_ckpt(tmp_path):
    name, sets = FAMILIES["ncsnpp_cont_fir_residual_fourier"]
    path = tmp_path / "checkpoint_12.pth"
    _write_seed_checkpoint(path, name, sets)
    return path, name, sets


def _one_line_error(path, cfg, **kw) -> str:
    with pytest.raises(ScoreSDECheckpointError) as info:
        load_score_sde_checkpoint(path, cfg, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_untrusted_pickle_is_refused_with_one_line(small_ckpt):
    path, name, sets = small_ckpt
    state = torch.load(path, weights_only=True)
    state["args"] = argparse.Namespace(lr=1)  # a pickled Python object beyond tensors and plain values
    torch.save(state, path)
    assert "--trust-checkpoint" in _one_line_error(path, _config(name, sets))
    assert load_score_sde_checkpoint(path, _config(name, sets), trust=True) is not None


def test_missing_unexpected_misshaped_tensors_are_named(small_ckpt, tmp_path):
    path, name, sets = small_ckpt
    state = torch.load(path, weights_only=True)
    cases = {}
    s = copy.deepcopy(state)
    del s["model"]["module.all_modules.5.Conv_1.weight"]
    cases["missing module.all_modules.5.Conv_1.weight"] = s
    s = copy.deepcopy(state)
    s["model"]["module.all_modules.99.NIN_0.W"] = torch.zeros(2)
    cases["unexpected module.all_modules.99.NIN_0.W"] = s
    s = copy.deepcopy(state)
    s["model"]["module.all_modules.5.Conv_1.weight"] = torch.zeros(3, 3, 3, 3)
    cases["module.all_modules.5.Conv_1.weight: checkpoint (3, 3, 3, 3)"] = s
    s = copy.deepcopy(state)
    s["ema"]["shadow_params"] = s["ema"]["shadow_params"][:-1]
    cases["shadow_params"] = s
    s = copy.deepcopy(state)
    s["model"]["module.sigmas"] = s["model"]["module.sigmas"] * 2
    cases["noise levels run"] = s
    for needle, s in cases.items():
        p = tmp_path / "bad.pth"
        torch.save(s, p)
        assert needle in _one_line_error(p, _config(name, sets)), needle
    # the wrong config for the file: the first mis-fitting tensor is named
    assert "first:" in _one_line_error(path, _config("vp/cifar10_ddpmpp_continuous", UNET))
    s = copy.deepcopy(state)
    del s["ema"]
    torch.save(s, tmp_path / "noema.pth")
    assert "--no-ema" in _one_line_error(tmp_path / "noema.pth", _config(name, sets))
    assert load_score_sde_checkpoint(tmp_path / "noema.pth", _config(name, sets), use_ema=False) is not None


# ---- the command line ------------------------------------------------------------------------------------
def test_cli_import_then_sample(small_ckpt, tmp_path, capsys):
    path, name, sets = small_ckpt
    work = tmp_path / "w"
    argv = ["import", "score-sde", str(path), "--config", str(ROOT / "configs" / f"{name}.yaml"), "--workdir", str(work)]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    assert "scoresde sample --workdir" in capsys.readouterr().out
    model, cfg, shape, step = model_from_workdir(work, device="cpu")
    assert step == 12 and shape == (3, 8, 8)
    ref = load_score_sde_checkpoint(path, _config(name, sets))
    x, t = _inputs(score_sde_config(_config(name, sets)))
    with torch.no_grad():
        torch.testing.assert_close(model.score(x, t), ref.score(x, t), rtol=1e-6, atol=1e-6)
    out = tmp_path / "s.npz"
    assert main(["sample", "--workdir", str(work), "--num", "2", "--steps", "3", "--no-plot", "--no-progress",
                 "--out", str(out)]) == 0
    samples = np.load(out)["samples"]
    assert samples.shape[0] == 2 and np.isfinite(samples).all()
    # importing again into the same workdir is refused; a bad file is one line, exit 2
    capsys.readouterr()
    assert main(argv) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    assert main(["import", "score-sde", str(bad), "--config", str(ROOT / "configs" / f"{name}.yaml"),
                 "--workdir", str(tmp_path / "w2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a PyTorch checkpoint" in err
