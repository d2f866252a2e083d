"""Every shipped YAML config loads, validates and builds its network and loss; the paper-size configs
give the parameter counts of the paper-size networks of scoresde.nets (and so the counts in the README)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scoresde.config import build_loss, build_net, build_sde, load_config
from scoresde.nets import count_parameters, paper_configs

CONFIGS = sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml"))
SHAPES = {"cifar10": (3, 32, 32), "mnist5k": (1, 28, 28), "digits": (1, 8, 8)}

# config file -> the paper network it mirrors (same constructor arguments up to the time embedding)
MIRRORS = {"vp/cifar10_ddpm.yaml": "ddpm_score_sde", "vp/cifar10_ddpmpp_continuous.yaml": "ddpmpp_cont",
           "vp/cifar10_ddpmpp.yaml": "ddpmpp_cont", "subvp/cifar10_ddpmpp_continuous.yaml": "ddpmpp_cont",
           "vp/cifar10_ddpmpp_deep_continuous.yaml": "ddpmpp_cont_deep",
           "subvp/cifar10_ddpmpp_deep_continuous.yaml": "ddpmpp_cont_deep",
           "ve/cifar10_ncsnpp_continuous.yaml": "ncsnpp_cont", "ve/cifar10_ncsnpp_deep_continuous.yaml": "ncsnpp_cont_deep",
           "ve/cifar10_ncsn.yaml": "ncsn", "ve/cifar10_ncsnv2.yaml": "ncsnv2"}


def _shape(cfg) -> tuple[int, ...]:
    d = cfg.data
    if d.dataset in SHAPES:
        return SHAPES[d.dataset]
    if d.dataset in ("celeba", "folder"):
        return (3, d.resolution, d.resolution)
    return (2,)  # the 2-D toys


def test_there_are_configs_for_every_seed_family():
    names = {str(p.relative_to(p.parents[1] if p.parent.name != "configs" else p.parent)) for p in CONFIGS}
    assert set(MIRRORS) <= names
    assert {"mnist/score_sde_vpsde_discrete.yaml", "mnist/score_sde_vpsde_continuous.yaml",
            "mnist/score_sde_subvpsde.yaml", "ve/celeba_ncsnpp.yaml", "ve/celebahq_256_ncsnpp_continuous.yaml",
            "mnist_cpu.yaml", "toy_gmm.yaml", "toy_checkerboard_ve.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1] if p.parent.name != "configs"
                                                                           else p.parent)))
def test_config_builds(path):
    cfg = load_config(path)
    sde = build_sde(cfg.sde)
    build_loss(cfg.training, cfg.sde.name)
    shape = _shape(cfg)
    with torch.device("meta"):  # no memory, no init cost: the structure, the count and the shapes are what we check
        net = build_net(cfg.model, shape)
        out = net(torch.empty(2, *shape), torch.empty(2))
    if cfg.training.loss == "classifier":  # a noise-conditional classifier: logits, one per class
        assert tuple(out.shape) == (2, cfg.model.kwargs["num_classes"])
    else:
        assert tuple(out.shape) == (2, *shape)  # the net(x, c) contract: an output shaped like the data
    n = count_parameters(net)
    rel = str(path.relative_to(path.parents[1] if path.parent.name != "configs" else path.parent))
    if rel in MIRRORS:
        cls, kw = paper_configs()[MIRRORS[rel]]
        with torch.device("meta"):
            ref = count_parameters(cls(**kw))
        # NCSN++ cont. uses Fourier features (no learned weights) where the discrete NCSN++ uses positional
        assert n == ref, (rel, n, ref)
    if cfg.model.arch == "ncsn":  # one conditional-norm row per noise level
        assert cfg.model.kwargs["num_classes"] == sde.N


def test_set_reads_exponent_floats_as_numbers():
    """`--set training.lr=3e-3` is the float 0.003 (PyYAML's YAML 1.1 would read it as a string); ints stay ints."""
    from scoresde.config import apply_overrides

    d = apply_overrides({}, ["training.lr=3e-3", "a.b=-2E-4", "a.c=1e5", "a.d=7", "a.e=x3e3"])
    assert d == {"training": {"lr": 0.003}, "a": {"b": -0.0002, "c": 100000.0, "d": 7, "e": "x3e3"}}
    assert isinstance(d["a"]["d"], int) and isinstance(d["training"]["lr"], float)
    cfg = load_config(Path(__file__).parent.parent / "configs" / "mnist_cpu.yaml", ["training.lr=3e-3"])
    assert cfg.training.lr == 0.003
