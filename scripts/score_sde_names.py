"""Derive the parameter names of score_sde_pytorch checkpoints from the seed's own model code (not run in CI).

For every config of ``configs/`` that mirrors a score_sde_pytorch config, build the seed's network from
its config file, wrap it in ``torch.nn.DataParallel`` as its ``run_lib.train`` does, and write
``tests/data/score_sde_names/<family>/<config>.json``: the state_dict names in order with their shapes
and whether each one is in the EMA ``shadow_params`` list (trainable parameters, in ``model.parameters()``
order). ``tests/test_interop_score_sde.py`` checks our inverse name map against these lists, so a released
checkpoint loads with zero missing / unexpected tensors.

With ``--compare`` it also builds small-width versions of each family with random weights, writes them
as a score_sde checkpoint, loads that with :func:`scoresde.interop.load_score_sde_checkpoint` and
prints the largest difference between the seed network's output (its ``get_score_fn``) and ours.

Usage (needs a checkout of github.com/yang-song/score_sde_pytorch and ``pip install ml_collections``)::

    PYTHONPATH=src python scripts/score_sde_names.py --seed-repo /path/to/score_sde_pytorch [--compare]

Shims (applied to the seed in memory, none change a parameter name or a forward pass):

* ``op/`` compiles CUDA kernels at import: ``torch.utils.cpp_extension.load`` is stubbed (on CPU the
  seed itself uses its pure-PyTorch ``upfirdn2d_native``).
* ``up_or_down_sampling.upsample_conv_2d`` (the fused FIR up-conv) writes ``w[..., ::-1, ::-1]``, which
  torch refuses (negative step): the same flip with ``torch.flip``. (So the seed's PyTorch code cannot
  run an NCSN++ with an FIR upsampling conv at all; no released config has one.)
* ``ncsn_conv3x3(bias=False)`` scales ``conv.bias`` which is None: the scaling skips a missing bias.
* ``ncsn_conv3x3(dilation=d)`` pads by 1, so the dilated stages shrink the feature maps and the
  residual sums fail; NCSN / NCSNv2's own ``dilated_conv3x3`` pads by d: padding d for d > 1.
* NCSNv2 / NCSN read ``config.data.channels`` (unset in its configs): set to ``data.num_channels``.
* NCSN (v1)'s ``ConditionalResidualBlock`` defaults to ``dilation=None`` and then compares it with 1:
  the default becomes 1 (what the comparison means).
* NCSN (v1) passes the unconditional ``InstanceNorm2dPlus`` where it needs the conditional one: its
  ``get_normalization`` returns ``ConditionalInstanceNorm2dPlus``, the layout its code was written for.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "score_sde_names"

#: our config -> the seed's config module
MIRRORS = {
    "ve/cifar10_ncsnpp_continuous": "configs.ve.cifar10_ncsnpp_continuous",
    "ve/cifar10_ncsnpp_deep_continuous": "configs.ve.cifar10_ncsnpp_deep_continuous",
    "ve/cifar10_ncsnpp": "configs.ve.cifar10_ncsnpp",
    "ve/celeba_ncsnpp": "configs.ve.celeba_ncsnpp",
    "ve/celebahq_256_ncsnpp_continuous": "configs.ve.celebahq_256_ncsnpp_continuous",
    "ve/cifar10_ncsnv2": "configs.ve.ncsnv2.cifar10",
    "ve/cifar10_ncsn": "configs.ve.ncsn.cifar10",
    "vp/cifar10_ddpm": "configs.vp.ddpm.cifar10",
    "vp/cifar10_ddpmpp": "configs.vp.cifar10_ddpmpp",
    "vp/cifar10_ddpmpp_continuous": "configs.vp.cifar10_ddpmpp_continuous",
    "vp/cifar10_ddpmpp_deep_continuous": "configs.vp.cifar10_ddpmpp_deep_continuous",
    "subvp/cifar10_ddpmpp_continuous": "configs.subvp.cifar10_ddpmpp_continuous",
    "subvp/cifar10_ddpmpp_deep_continuous": "configs.subvp.cifar10_ddpmpp_deep_continuous",
}


def import_seed(repo: Path):
    """Import the seed's models package with the shims of the module docstring."""
    import torch.utils.cpp_extension as cpp

    cpp.load = lambda *a, **k: types.SimpleNamespace()  # op/ compiles CUDA at import; CPU never calls it
    sys.path.insert(0, str(repo))
    layers = importlib.import_module("models.layers")
    orig = layers.ncsn_conv3x3

    def ncsn_conv3x3(in_planes, out_planes, stride=1, bias=True, dilation=1, init_scale=1., padding=1):
        padding = dilation if dilation > 1 and padding == 1 else padding  # NCSN's dilated_conv3x3: 'same' size
        if bias:
            return orig(in_planes, out_planes, stride, bias, dilation, init_scale, padding)
        conv = torch.nn.Conv2d(in_planes, out_planes, stride=stride, bias=False, dilation=dilation,
                               padding=padding, kernel_size=3)
        conv.weight.data *= 1e-10 if init_scale == 0 else init_scale
        return conv

    layers.ncsn_conv3x3 = ncsn_conv3x3
    updown = importlib.import_module("models.up_or_down_sampling")
    updown.upsample_conv_2d = _fixed_upsample_conv_2d(updown)
    init = layers.ConditionalResidualBlock.__init__  # its default dilation=None fails `dilation > 1`
    init.__defaults__ = init.__defaults__[:-1] + (1,)
    ncsnv2 = importlib.import_module("models.ncsnv2")
    ncsnv2.conv3x3 = ncsn_conv3x3
    normalization = importlib.import_module("models.normalization")
    orig_norm = normalization.get_normalization

    def get_normalization(config, conditional=False):
        if config.model.name == "ncsn":  # its blocks call norm(channels, num_classes) and norm(x, y)
            return normalization.ConditionalInstanceNorm2dPlus
        return orig_norm(config, conditional=conditional)

    ncsnv2.get_normalization = get_normalization
    for name in ("models.ddpm", "models.ncsnpp"):
        importlib.import_module(name)
    return importlib.import_module("models.utils")


def _fixed_upsample_conv_2d(updown):
    """The seed's fused FIR up-conv with ``torch.flip`` where it writes ``w[..., ::-1, ::-1]`` (torch refuses it)."""
    import torch.nn.functional as F

    def upsample_conv_2d(x, w, k=None, factor=2, gain=1):
        k = updown._setup_kernel(k if k is not None else [1] * factor) * (gain * (factor ** 2))
        convH, convW, inC = w.shape[2], w.shape[3], w.shape[1]
        p = (k.shape[0] - factor) - (convW - 1)
        output_padding = (0, 0)  # ((H - 1) f + convH) - (H - 1) f - convH, as the seed computes it
        num_groups = x.shape[1] // inC
        w = torch.reshape(w, (num_groups, -1, inC, convH, convW))
        w = torch.flip(w, [3, 4]).permute(0, 2, 1, 3, 4)
        w = torch.reshape(w, (num_groups * inC, -1, convH, convW))
        x = F.conv_transpose2d(x, w, stride=[factor, factor], output_padding=output_padding, padding=0)
        return updown.upfirdn2d(x, torch.tensor(k, device=x.device), pad=((p + 1) // 2 + factor - 1, p // 2 + 1))

    return upsample_conv_2d


def seed_config(module: str):
    cfg = importlib.import_module(module).get_config()
    cfg.device = torch.device("cpu")
    cfg.data.channels = cfg.data.num_channels
    return cfg


def build_seed(utils, cfg) -> torch.nn.Module:
    net = utils.get_model(cfg.model.name)(cfg)
    return torch.nn.DataParallel(net)


def names_of(model: torch.nn.Module) -> list[list]:
    """[name, shape, in shadow_params] of every state_dict tensor, in state_dict order."""
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    params = dict(model.named_parameters())
    return [[name, list(t.shape), name in params and id(params[name]) in trainable]
            for name, t in model.state_dict(keep_vars=True).items()]


def write_names(utils) -> None:
    for ours, module in MIRRORS.items():
        cfg = seed_config(module)
        torch.manual_seed(0)
        model = build_seed(utils, cfg)
        entries = names_of(model)
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        path = OUT / f"{ours}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        head = {"seed_config": module.replace(".", "/") + ".py", "model": cfg.model.name,
                "trainable_parameters": n, "columns": ["name", "shape", "in_shadow_params"]}
        lines = ",\n".join(json.dumps(e) for e in entries)
        path.write_text(json.dumps(head)[:-1] + ', "tensors": [\n' + lines + "\n]}\n")
        print(f"{ours}: {len(entries)} tensors, {n / 1e6:.2f} M trainable parameters -> {path.relative_to(ROOT)}")


# ---- forward comparison at small width ------------------------------------------------------------
def small(cfg, **model):
    for k, v in model.items():
        setattr(cfg.model, k, v)
    return cfg


def compare(utils) -> None:
    """Seed network (its get_score_fn, EMA weights) vs our loaded model, same checkpoint, same inputs."""
    from scoresde.config import load_config
    from scoresde.interop.score_sde import load_score_sde_checkpoint

    sde_lib = importlib.import_module("sde_lib")
    unet = dict(nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,))
    cases = {  # title: (our config, seed config, model overrides (seed names), image size)
        "NCSN++ cont. (VE; FIR, residual input pyramid, Fourier)": (
            "ve/cifar10_ncsnpp_continuous", "configs.ve.cifar10_ncsnpp_continuous", unet, 16),
        "NCSN++ cont. (VE; output_skip, input_skip cat)": (
            "ve/celebahq_256_ncsnpp_continuous", "configs.ve.celebahq_256_ncsnpp_continuous",
            dict(unet, progressive_combine="cat"), 16),
        "NCSN++ cont. (VE; residual output pyramid: fused FIR up-conv)": (
            "ve/cifar10_ncsnpp_continuous", "configs.ve.cifar10_ncsnpp_continuous", dict(unet, progressive="residual"), 16),
        "NCSN++ (VE discrete, positional)": ("ve/cifar10_ncsnpp", "configs.ve.cifar10_ncsnpp", unet, 16),
        "DDPM++ cont. (VP)": ("vp/cifar10_ddpmpp_continuous", "configs.vp.cifar10_ddpmpp_continuous", unet, 16),
        "DDPM++ cont. (sub-VP)": ("subvp/cifar10_ddpmpp_continuous", "configs.subvp.cifar10_ddpmpp_continuous", unet, 16),
        "DDPM (VP discrete)": ("vp/cifar10_ddpm", "configs.vp.ddpm.cifar10",
                               dict(nf=128, ch_mult=(1, 1), num_res_blocks=1, attn_resolutions=(4,)), 8),
        "NCSNv2 (VE discrete)": ("ve/cifar10_ncsnv2", "configs.ve.ncsnv2.cifar10", dict(nf=8), 16),
        "NCSN (VE discrete)": ("ve/cifar10_ncsn", "configs.ve.ncsn.cifar10", dict(nf=8), 16),
    }
    tmp = Path(tempfile.mkdtemp(prefix="score_sde_compare_"))
    for title, (ours, module, over, size) in cases.items():
        scfg = seed_config(module)
        for k, v in over.items():
            setattr(scfg.model, k, v)
        scfg.data.image_size = size
        torch.manual_seed(1)
        model = build_seed(utils, scfg).eval()
        with torch.no_grad():  # random weights everywhere (the zero-initialised convs too)
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        ema_params = [p.detach().clone() + 0.01 * torch.randn_like(p) for p in model.parameters() if p.requires_grad]
        path = tmp / f"{ours.replace('/', '_')}.pth"
        torch.save({"optimizer": {}, "model": model.state_dict(), "step": 7,
                    "ema": {"decay": 0.999, "num_updates": 7, "shadow_params": ema_params}}, path)
        refinenet = "ncsn" in scfg.model.name and scfg.model.name != "ncsnpp"
        sets = [f"model.kwargs.{'ngf' if refinenet and k == 'nf' else k}={json.dumps(v)}" for k, v in over.items()]
        sets += [] if refinenet else [f"model.kwargs.image_size={size}"]
        mine = load_score_sde_checkpoint(path, load_config(ROOT / "configs" / f"{ours}.yaml", sets),
                                         data_shape=(3, size, size))
        params = [p for p in model.parameters() if p.requires_grad]
        for s, p in zip(ema_params, params):
            p.data.copy_(s)
        sde = _seed_sde(sde_lib, scfg)
        continuous = scfg.training.continuous
        score_fn = utils.get_score_fn(sde, model, train=False, continuous=continuous)
        g = torch.Generator().manual_seed(2)
        x = torch.randn(4, 3, size, size, generator=g)
        if continuous or isinstance(sde, sde_lib.subVPSDE):
            t = torch.tensor([0.9, 0.5, 0.1, 1e-3])  # float32 times, as the seed's samplers pass them
            with torch.no_grad():
                ref, got = score_fn(x, t), mine.score(x, t.double())
        elif isinstance(sde, sde_lib.VPSDE):  # DDPM: label i at its level sqrt(1 - abar_i); ours at the t of that level
            i = torch.tensor([999, 500, 3, 0])
            std = sde.sqrt_1m_alphas_cumprod[i]
            with torch.no_grad():
                ref = -model(x, i.float()) / std[:, None, None, None]
                s64 = std.double()
                got = mine.score(x, mine.sde.t_from_sigma_tilde(s64 / torch.sqrt(1 - s64**2)))
        else:  # discrete SMLD models: on the seed's own grid, t_i = 1 - i / (N - 1)
            N = sde.N
            t = torch.tensor([N - 1, N // 2, 3, 1], dtype=torch.float64) / (N - 1)
            with torch.no_grad():
                ref, got = score_fn(x, t.float()), mine.score(x, t)
        diff = (ref - got).abs().flatten(1).max(1).values
        rel = diff / ref.abs().flatten(1).max(1).values
        print(f"{title:62s} max |score diff| {diff.max().item():.2e}  relative, per time: "
              + " ".join(f"{r:.1e}" for r in rel.tolist()))


def _seed_sde(sde_lib, cfg):
    if cfg.training.sde.lower() == "vpsde":
        return sde_lib.VPSDE(beta_min=cfg.model.beta_min, beta_max=cfg.model.beta_max, N=cfg.model.num_scales)
    if cfg.training.sde.lower() == "subvpsde":
        return sde_lib.subVPSDE(beta_min=cfg.model.beta_min, beta_max=cfg.model.beta_max, N=cfg.model.num_scales)
    return sde_lib.VESDE(sigma_min=cfg.model.sigma_min, sigma_max=cfg.model.sigma_max, N=cfg.model.num_scales)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed-repo", type=Path, required=True, help="checkout of yang-song/score_sde_pytorch")
    ap.add_argument("--compare", action="store_true", help="also compare forward passes at small width")
    ap.add_argument("--no-names", action="store_true", help="do not rewrite the name lists")
    args = ap.parse_args()
    utils = import_seed(args.seed_repo.resolve())
    if not args.no_names:
        write_names(utils)
    if args.compare:
        compare(utils)


if __name__ == "__main__":
    main()
