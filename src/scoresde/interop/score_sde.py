"""score_sde_pytorch checkpoints (Song et al. 2021, github.com/yang-song/score_sde_pytorch) as scoresde models.

A checkpoint of the seed's ``run_lib.train`` is one ``torch.save`` file ``checkpoint_N.pth`` holding
``model`` (the state_dict of its network wrapped in ``torch.nn.DataParallel``: names start with
``module.``), ``ema`` (``decay``, ``num_updates`` and ``shadow_params``: the EMA weights as a list in
``model.parameters()`` order, trainable parameters only), ``optimizer`` and ``step``.

The name map is derived from the architecture: :func:`score_sde_name_map` walks one of our networks
(:class:`~scoresde.nets.UNet` for DDPM / DDPM++ / NCSN++, :class:`~scoresde.nets.ncsn.RefineNet` for
NCSN / NCSNv2) in the order in which the seed's constructors register their modules
(``all_modules.<i>`` for the U-Nets, ``res<k>`` / ``refine<k>`` for the RefineNets) and pairs every seed
tensor with (a part of) one of ours. Where the layouts differ the map says how: the seed's ``NIN``
weights are (in, out) matrices where we keep 1x1 convolutions, its attention has separate q, k, v
``NIN`` layers where we have one ``qkv`` convolution, and its unconditional instance norm++ keeps
alpha, gamma, beta as three vectors where we keep one (1, 3C) row (gamma, alpha, beta).

The network contract (the seed's ``models/utils.py get_score_fn``) is :func:`score_sde_config`:

* VP / sub-VP: the net gets c = 999 t and predicts -std * score: ``eps``. Discrete DDPM (``ddpm`` loss):
  the net was trained with label i at the chain's level sqrt(1 - abar_i); it gets the fractional step
  whose level is sigma_t (``ddpm_index``), so label i meets exactly its own noise level.
* VE continuous: c = sigma_t; the net divides by sigma itself (``scale_by_sigma``): ``scaled_score``.
* VE discrete (SMLD: NCSN++ with positional embedding, NCSNv2, NCSN): c = round((T - t)(N - 1)), the level
  index counted from sigma_max (``reversed_index``); NCSN outputs the score, the others ``scaled_score``.
* data in [0, 1] (``data.centered = False``): the net maps x to 2x - 1 first (``center_input``).

Discrete SMLD models (VE) equal the seed's ``get_score_fn`` at its grid times t_i = 1 - i/(N - 1); between
them the seed divides by sigma_i of the rounded label where this model divides by sigma_t. The seed's
discrete DDPM score function feeds t (N - 1) but divides by sqrt(1 - abar_i) of step floor(t (N - 1)),
a level that belongs to the continuous time ~(i + 1)/N; here the label follows the noise level instead.
"""
from __future__ import annotations

import copy
import math
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import CheckpointError
from ..config import Config, ConfigError, build_model, build_net, build_sde, config_from_dict, config_to_dict
from ..nets.layers import AttnBlock, BigGANResBlock, DDPMResBlock
from ..nets.ncsn import ConvMeanPool, InstanceNormPlusPlus, RCUBlock, RefineBlock, RefineNet, ResidualBlock
from ..nets.unet import UNet
from ..parameterization import ScoreModel

__all__ = ["ScoreSDECheckpointError", "Entry", "ScoreSDECheckpoint", "score_sde_name_map", "score_sde_config",
           "read_score_sde_checkpoint", "load_score_sde_checkpoint", "to_score_sde_state", "score_sde_sigmas"]

PREFIX = "module."


class ScoreSDECheckpointError(CheckpointError):
    """A score_sde checkpoint that cannot be used with this config: one line naming the first problem."""


# ---- the name map -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One tensor of a score_sde checkpoint and where it lives in our network.

    ``ours`` is None for the seed's ``sigmas`` buffer (checked against the config, not loaded). Our
    tensor is ``chunks`` seed tensors concatenated along ``dim``; this entry is chunk ``part``. ``nin``:
    the seed's (in, out) NIN matrix is our (out, in, 1, 1) conv weight; ``squeeze``: the seed vector is
    our chunk without its leading axis of size 1. ``ema``: the tensor is in the seed's ``shadow_params``.
    """

    seed: str
    ours: str | None
    ema: bool = True
    nin: bool = False
    part: int = 0
    chunks: int = 1
    dim: int = 0
    squeeze: bool = False

    def piece(self, ours: Tensor) -> Tensor:
        """The view of our tensor that this entry fills."""
        v = ours.chunk(self.chunks, self.dim)[self.part] if self.chunks > 1 else ours
        return v[0] if self.squeeze else v

    def seed_shape(self, ours: Tensor) -> tuple[int, ...]:
        p = self.piece(ours)
        return (p.shape[1], p.shape[0]) if self.nin else tuple(p.shape)

    def to_seed(self, ours: Tensor) -> Tensor:
        """The seed's tensor from ours."""
        p = self.piece(ours)
        return (p[:, :, 0, 0].t() if self.nin else p).clone().contiguous()

    def fill(self, ours: Tensor, seed: Tensor) -> None:
        """Write the seed's tensor into (our part of) our tensor, in place."""
        v = seed.t()[:, :, None, None] if self.nin else seed
        with torch.no_grad():
            self.piece(ours).copy_(v.to(ours.dtype))


class _Walk:
    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.i = 0

    def next(self) -> str:
        """The next ``all_modules`` slot of the seed's U-Nets (parameter-free modules take one too)."""
        self.i += 1
        return f"all_modules.{self.i - 1}"

    def add(self, seed: str, ours: str | None, **kw: Any) -> None:
        self.entries.append(Entry(seed, ours, **kw))

    def params(self, seed: str, ours: str, module: nn.Module) -> None:
        for n in ("weight", "bias"):
            if getattr(module, n, None) is not None:
                self.add(f"{seed}.{n}", f"{ours}.{n}")

    def nin(self, seed: str, ours: str, **kw: Any) -> None:
        self.add(f"{seed}.W", f"{ours}.weight", nin=True, **kw)
        self.add(f"{seed}.b", f"{ours}.bias", **kw)

    # -- U-Net pieces (models/layers.py, layerspp.py)
    def resblock(self, seed: str, ours: str, blk: nn.Module) -> None:
        for s, o in (("GroupNorm_0", "norm0"), ("Conv_0", "conv0"), ("Dense_0", "dense"), ("GroupNorm_1", "norm1"),
                     ("Conv_1", "conv1")):
            self.params(f"{seed}.{s}", f"{ours}.{o}", getattr(blk, o))
        if blk.skip is None:
            return
        if isinstance(blk, DDPMResBlock) and blk.skip.kernel_size == (1, 1):
            self.nin(f"{seed}.NIN_0", f"{ours}.skip")
        else:
            self.params(f"{seed}.Conv_2", f"{ours}.skip", blk.skip)

    def attn(self, seed: str, ours: str, blk: AttnBlock) -> None:
        self.params(f"{seed}.GroupNorm_0", f"{ours}.norm", blk.norm)
        for k in range(3):  # q, k, v
            self.nin(f"{seed}.NIN_{k}", f"{ours}.qkv", part=k, chunks=3)
        self.nin(f"{seed}.NIN_3", f"{ours}.proj")

    def resample(self, seed: str, ours: str, module: nn.Module) -> None:
        if isinstance(module, BigGANResBlock):
            self.resblock(seed, ours, module)
        elif module.conv is not None:  # layerspp: Conv2d_0 for the FIR (fused) conv, Conv_0 otherwise
            self.params(f"{seed}.{'Conv2d_0' if module.fir else 'Conv_0'}", f"{ours}.conv", module.conv)

    # -- RefineNet pieces (models/layers.py, normalization.py)
    def norm(self, seed: str, ours: str, norm: InstanceNormPlusPlus) -> None:
        if norm.conditional:
            self.add(f"{seed}.embed.weight", f"{ours}.table")
        else:  # InstanceNorm2dPlus registers alpha, gamma, beta; our row is (gamma, alpha, beta)
            for name, part in (("alpha", 1), ("gamma", 0), ("beta", 2)):
                self.add(f"{seed}.{name}", f"{ours}.table", part=part, chunks=3, dim=1, squeeze=True)

    def conv(self, seed: str, ours: str, module: nn.Module) -> None:
        if isinstance(module, ConvMeanPool):
            self.params(f"{seed}.conv", f"{ours}.conv", module.conv)
        else:
            self.params(seed, ours, module)

    def residual(self, seed: str, ours: str, blk: ResidualBlock) -> None:
        self.conv(f"{seed}.conv1", f"{ours}.conv1", blk.conv1)
        self.norm(f"{seed}.normalize2", f"{ours}.norm2", blk.norm2)
        self.conv(f"{seed}.conv2", f"{ours}.conv2", blk.conv2)
        if blk.shortcut is not None:
            self.conv(f"{seed}.shortcut", f"{ours}.shortcut", blk.shortcut)
        self.norm(f"{seed}.normalize1", f"{ours}.norm1", blk.norm1)

    def rcu(self, seed: str, ours: str, rcu: RCUBlock) -> None:
        for k, conv in enumerate(rcu.convs):
            b, s = divmod(k, rcu.n_stages)
            if rcu.norms is not None:
                self.norm(f"{seed}.{b + 1}_{s + 1}_norm", f"{ours}.norms.{k}", rcu.norms[k])
            self.params(f"{seed}.{b + 1}_{s + 1}_conv", f"{ours}.convs.{k}", conv)

    def refine(self, seed: str, ours: str, ref: RefineBlock) -> None:
        for i, rcu in enumerate(ref.adapt):
            self.rcu(f"{seed}.adapt_convs.{i}", f"{ours}.adapt.{i}", rcu)
        self.rcu(f"{seed}.output_convs", f"{ours}.out", ref.out)
        for name in ("msf", "crp"):
            block = getattr(ref, name)
            if block is None:
                continue
            for k, conv in enumerate(block.convs):
                self.params(f"{seed}.{name}.convs.{k}", f"{ours}.{name}.convs.{k}", conv)
            for k, norm in enumerate(block.norms or ()):
                self.norm(f"{seed}.{name}.norms.{k}", f"{ours}.{name}.norms.{k}", norm)


def _unet_names(net: UNet) -> list[Entry]:
    w = _Walk()
    w.add("sigmas", None, ema=False)
    if net.embed.fourier is not None:  # GaussianFourierProjection.W: a parameter with requires_grad=False
        w.add(f"{w.next()}.W", "embed.fourier.w", ema=False)
    w.params(w.next(), "embed.dense0", net.embed.dense0)
    w.params(w.next(), "embed.dense1", net.embed.dense1)
    w.params(w.next(), "conv_in", net.conv_in)
    for i, level in enumerate(net.down):
        for j, (blk, att) in enumerate(zip(level.blocks, level.attns)):
            w.resblock(w.next(), f"down.{i}.blocks.{j}", blk)
            if isinstance(att, AttnBlock):
                w.attn(w.next(), f"down.{i}.attns.{j}", att)
        if hasattr(level, "resample"):
            w.resample(w.next(), f"down.{i}.resample", level.resample)
            if hasattr(level, "combine"):  # input_skip: Combine.Conv_0 (the pyramid's downsampling has no weights)
                w.params(f"{w.next()}.Conv_0", f"down.{i}.combine.conv", level.combine.conv)
            elif net.progressive_input == "residual":
                w.resample(w.next(), f"down.{i}.pyramid", level.pyramid)
    w.resblock(w.next(), "mid_block0", net.mid_block0)
    w.attn(w.next(), "mid_attn", net.mid_attn)
    w.resblock(w.next(), "mid_block1", net.mid_block1)
    for j, level in enumerate(net.up):
        for k, blk in enumerate(level.blocks):
            w.resblock(w.next(), f"up.{j}.blocks.{k}", blk)
        attns = [(k, a) for k, a in enumerate(level.attns) if isinstance(a, AttnBlock)]
        if len(attns) > 1:
            raise ScoreSDECheckpointError("this U-Net attends after every up-path block; score_sde's attend once per "
                                          "level (model.kwargs.attn_every_up_block: false)")
        for k, a in attns:
            w.attn(w.next(), f"up.{j}.attns.{k}", a)
        if hasattr(level, "pyramid_norm"):  # output_skip (every level) or residual (the top level)
            w.params(w.next(), f"up.{j}.pyramid_norm", level.pyramid_norm)
            w.params(w.next(), f"up.{j}.pyramid_conv", level.pyramid_conv)
        elif hasattr(level, "pyramid_up"):  # residual: the pyramid's upsampling conv
            w.resample(w.next(), f"up.{j}.pyramid_up", level.pyramid_up)
        if hasattr(level, "resample"):
            w.resample(w.next(), f"up.{j}.resample", level.resample)
    if net.progressive != "output_skip":
        w.params(w.next(), "norm_out", net.norm_out)
        w.params(w.next(), "conv_out", net.conv_out)
    return w.entries


def _refinenet_names(net: RefineNet) -> list[Entry]:
    w = _Walk()
    if not net.conditional:  # NCSNv2 registers its sigmas; NCSN does not
        w.add("sigmas", None, ema=False)
    w.params("begin_conv", "begin_conv", net.begin_conv)
    w.norm("normalizer", "norm_out", net.norm_out)
    w.params("end_conv", "end_conv", net.end_conv)
    for s, stage in enumerate(net.stages):
        for b, blk in enumerate(stage):
            w.residual(f"res{s + 1}.{b}", f"stages.{s}.{b}", blk)
    for r, ref in enumerate(net.refines):
        w.refine(f"refine{r + 1}", f"refines.{r}", ref)
    return w.entries


def score_sde_name_map(net: nn.Module) -> list[Entry]:
    """The tensors of a score_sde checkpoint of ``net``'s architecture, in the seed's state_dict order.

    Every tensor of ``net.state_dict()`` is covered (checked); the ``ema`` entries, in order, are the
    seed's ``shadow_params`` list.
    """
    if isinstance(net, UNet):
        entries = _unet_names(net)
    elif isinstance(net, RefineNet):
        entries = _refinenet_names(net)
    else:
        raise ScoreSDECheckpointError(f"score_sde has no network like {type(net).__name__} (U-Nets: DDPM, DDPM++, "
                                      "NCSN++; RefineNets: NCSN, NCSNv2)")
    own = net.state_dict()
    covered: dict[str, int] = {}
    for e in entries:
        if e.ours is not None:
            covered[e.ours] = covered.get(e.ours, 0) + e.piece(own[e.ours]).numel()
    wrong = [k for k, v in own.items() if covered.get(k, 0) != v.numel()]
    if wrong or len({e.seed for e in entries}) != len(entries):  # pragma: no cover - a bug in the map
        raise RuntimeError(f"score_sde name map does not cover {wrong[:1] or 'its entries uniquely'}")
    return entries


# ---- the contract ---------------------------------------------------------------------------------
def score_sde_config(cfg: Config) -> Config:
    """The config whose model computes score_sde's ``get_score_fn`` for a network trained with ``cfg``.

    Sets ``model.prediction``, ``model.time_input`` and the layout switches of ``model.kwargs``
    (``center_input`` for data in [0, 1]; U-Nets: one attention per up level, the fused FIR up-conv,
    ``c_transform`` log for Fourier features of sigma, none for positional embeddings of the label).
    The training loss tells continuous (``dsm``) from discrete (``smld``, ``ddpm``) training.
    """
    cfg = copy.deepcopy(cfg)
    m, kw = cfg.model, dict(cfg.model.kwargs)
    continuous, sde = cfg.training.loss == "dsm", cfg.sde.name
    kw["center_input"] = cfg.data.scale != "[-1,1]"
    if m.arch == "unet":
        kw.update(attn_every_up_block=False, fused_up_conv=True,
                  c_transform="log" if kw.get("embedding_type") == "fourier" else "none")
        if sde in ("vp", "subvp"):  # discrete DDPM: label i at level abar_i, wherever t is (ddpm_index)
            m.prediction, m.time_input = "eps", "ddpm_index" if not continuous and sde == "vp" else "999t"
        else:
            if not continuous and kw.get("embedding_type") == "fourier":
                raise ScoreSDECheckpointError("score_sde uses Fourier features only for continuous training "
                                              "(training.loss dsm)")
            m.prediction, m.time_input = "scaled_score", "sigma" if continuous else "reversed_index"
    elif m.arch in ("ncsn", "ncsnv2"):
        if sde != "ve":
            raise ScoreSDECheckpointError(f"score_sde's {m.arch.upper()} networks are SMLD (VE) models; the config "
                                          f"has sde.name {sde}")
        m.time_input = "reversed_index"
        m.prediction = "score" if m.arch == "ncsn" else "scaled_score"
        if m.arch == "ncsn":
            kw.update(num_classes=cfg.sde.N, conditioning="index")
    else:
        raise ScoreSDECheckpointError(f"score_sde has no {m.arch!r} network (model.arch must be unet, ncsn or ncsnv2)")
    m.kwargs = kw
    try:
        return config_from_dict(config_to_dict(cfg))
    except ConfigError as e:
        raise ScoreSDECheckpointError(str(e)) from None


def score_sde_sigmas(cfg: Config) -> Tensor:
    """The seed's ``sigmas`` buffer: N geometric levels sigma_max -> sigma_min (``models/utils.get_sigmas``)."""
    s = cfg.sde
    return torch.exp(torch.linspace(math.log(s.sigma_max), math.log(s.sigma_min), s.N, dtype=torch.float64))


def _data_shape(cfg: Config, data_shape: Sequence[int] | None) -> tuple[int, ...]:
    if data_shape is not None:
        return tuple(int(s) for s in data_shape)
    size = cfg.data.resolution or cfg.model.kwargs.get("image_size") or 32
    return (cfg.data.channels or 3, int(size), int(size))


# ---- reading --------------------------------------------------------------------------------------
@dataclass
class ScoreSDECheckpoint:
    """A score_sde checkpoint mapped onto our network: the contract config, the net (chosen weights loaded)."""

    config: Config
    data_shape: tuple[int, ...]
    net: nn.Module
    model_weights: dict[str, Tensor]
    ema_weights: dict[str, Tensor] | None
    step: int


def _read(path: Path, trust: bool) -> Any:
    if not path.exists():
        raise ScoreSDECheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise ScoreSDECheckpointError(f"checkpoint {path} is not a file")
    if not trust and not zipfile.is_zipfile(path):
        raise ScoreSDECheckpointError(f"{path} is not a PyTorch checkpoint (corrupt, or another kind of file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as e:  # torch raises several types for corrupt / unsafe files
        text = str(e)
        if not trust and ("Weights only load failed" in text or "Unsupported global" in text):
            raise ScoreSDECheckpointError(f"{path} holds Python objects beyond tensors and plain values; pass "
                                          "--trust-checkpoint (trust=True) only if you trust where the file came "
                                          "from") from None
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise ScoreSDECheckpointError(f"cannot read checkpoint {path}: {first}") from None


def _tensors(d: Any) -> bool:
    return isinstance(d, dict) and bool(d) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in d.items())


def _strip(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    if all(k.startswith(PREFIX) for k in sd):
        return {k[len(PREFIX):]: v for k, v in sd.items()}
    return dict(sd)


def _check_names(entries: list[Entry], sd: dict[str, Tensor], own: dict[str, Tensor], path: Path, arch: str) -> None:
    names = {e.seed for e in entries}
    missing = [e.seed for e in entries if e.seed not in sd]
    unexpected = [k for k in sd if k not in names]
    shaped = []
    for e in entries:
        if e.seed in sd and e.ours is not None and tuple(sd[e.seed].shape) != e.seed_shape(own[e.ours]):
            shaped.append(f"{PREFIX}{e.seed}: checkpoint {tuple(sd[e.seed].shape)} vs config {e.seed_shape(own[e.ours])}")
    if missing or unexpected or shaped:
        first = (f"missing {PREFIX}{missing[0]}" if missing else f"unexpected {PREFIX}{unexpected[0]}" if unexpected
                 else shaped[0])
        raise ScoreSDECheckpointError(f"{path} does not fit the config's {arch} ({len(missing)} missing, "
                                      f"{len(unexpected)} unexpected, {len(shaped)} mis-shaped tensors; first: {first})")


def _check_sigmas(sd: dict[str, Tensor], cfg: Config, path: Path) -> None:
    sig = sd.get("sigmas")
    if sig is None:
        return
    if sig.ndim != 1 or sig.shape[0] != cfg.sde.N:
        raise ScoreSDECheckpointError(f"{path}: its {PREFIX}sigmas has {tuple(sig.shape)} levels, the config's "
                                      f"sde.N is {cfg.sde.N}")
    if cfg.sde.name == "ve":
        ref = score_sde_sigmas(cfg)
        if not torch.allclose(sig.double(), ref, rtol=1e-4, atol=0):
            raise ScoreSDECheckpointError(
                f"{path}: its noise levels run {sig[0].item():g} -> {sig[-1].item():g}, the config's sde "
                f"{cfg.sde.sigma_max:g} -> {cfg.sde.sigma_min:g} (sde.sigma_max / sde.sigma_min)")


def read_score_sde_checkpoint(path: str | Path, config: Config, use_ema: bool = True, trust: bool = False,
                              data_shape: Sequence[int] | None = None) -> ScoreSDECheckpoint:
    """Read a score_sde_pytorch checkpoint (Song et al. 2021) onto our network of ``config`` (its contract form).

    Read with ``torch.load(weights_only=True)`` unless ``trust``; every problem is a
    :class:`ScoreSDECheckpointError` with one line naming the first missing / unexpected / mis-shaped tensor.
    The net carries the EMA weights (``use_ema``) or the raw ones; both are returned in our names.
    """
    path = Path(path)
    cfg = score_sde_config(config)
    shape = _data_shape(cfg, data_shape)
    state = _read(path, trust)
    if _tensors(state):  # a bare state_dict
        state = {"model": state}
    if not isinstance(state, dict) or not _tensors(state.get("model")):
        raise ScoreSDECheckpointError(f"{path} is not a score_sde checkpoint (no 'model' dict of tensors)")
    try:
        net = build_net(cfg.model, shape)
    except ConfigError as e:
        raise ScoreSDECheckpointError(str(e)) from None
    entries = score_sde_name_map(net)
    sd = _strip(state["model"])
    own = net.state_dict()
    _check_names(entries, sd, own, path, cfg.model.arch)
    _check_sigmas(sd, cfg, path)
    weights = {k: v.detach().clone() for k, v in own.items()}
    for e in entries:
        if e.ours is not None:
            e.fill(weights[e.ours], sd[e.seed])
    ema_weights = None
    ema = state.get("ema")
    if ema is not None:
        shadow = ema.get("shadow_params") if isinstance(ema, dict) else None
        trainable = [e for e in entries if e.ema]
        if not isinstance(shadow, (list, tuple)) or not all(torch.is_tensor(t) for t in shadow):
            raise ScoreSDECheckpointError(f"{path}: its 'ema' entry has no 'shadow_params' list of tensors")
        if len(shadow) != len(trainable):
            raise ScoreSDECheckpointError(f"{path}: its EMA has {len(shadow)} shadow_params, the network "
                                          f"{len(trainable)} trainable parameters")
        ema_weights = {k: v.clone() for k, v in weights.items()}
        for i, (e, t) in enumerate(zip(trainable, shadow)):
            if tuple(t.shape) != e.seed_shape(own[e.ours]):
                raise ScoreSDECheckpointError(f"{path}: shadow_params[{i}] ({PREFIX}{e.seed}) is {tuple(t.shape)}, "
                                              f"the network's {e.seed_shape(own[e.ours])}")
            e.fill(ema_weights[e.ours], t)
    if use_ema and ema_weights is None:
        raise ScoreSDECheckpointError(f"{path} has no 'ema' entry: load its raw weights with --no-ema (use_ema=False)")
    net.load_state_dict(ema_weights if use_ema else weights)
    net.eval()
    step = state.get("step", 0)
    step = int(step) if isinstance(step, (int, float)) or torch.is_tensor(step) and step.numel() == 1 else 0
    return ScoreSDECheckpoint(cfg, shape, net, weights, ema_weights, max(step, 0))


def load_score_sde_checkpoint(path: str | Path, config: Config, use_ema: bool = True, trust: bool = False,
                              data_shape: Sequence[int] | None = None) -> ScoreModel:
    """A score_sde_pytorch checkpoint (Song et al. 2021) as a ScoreModel computing its ``get_score_fn``."""
    ck = read_score_sde_checkpoint(path, config, use_ema=use_ema, trust=trust, data_shape=data_shape)
    return build_model(ck.config, ck.net, build_sde(ck.config.sde))


# ---- writing (the inverse map: tests, and handing our weights to score_sde code) --------------------
def to_score_sde_state(net: nn.Module, ema_net: nn.Module | None = None, step: int = 0,
                       sigmas: Tensor | None = None) -> dict[str, Any]:
    """Our network's weights as a score_sde checkpoint (``module.`` names, Adam optimizer dict, EMA shadow_params).

    ``ema_net``: the EMA weights (default: ``net``'s); ``sigmas``: the seed's ``sigmas`` buffer, i.e.
    :func:`score_sde_sigmas` of the config (without it an empty tensor is written, which the loader refuses).
    """
    entries = score_sde_name_map(net)
    own = net.state_dict()
    ema_own = (ema_net or net).state_dict()
    model: dict[str, Tensor] = {}
    for e in entries:
        if e.ours is None:
            model[PREFIX + e.seed] = (sigmas if sigmas is not None else torch.zeros(0, dtype=torch.float64)).clone()
        else:
            model[PREFIX + e.seed] = e.to_seed(own[e.ours])
    shadow = [e.to_seed(ema_own[e.ours]) for e in entries if e.ema]
    n = len(shadow)
    optimizer = {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                                                "amsgrad": False, "params": list(range(n))}]}
    return {"optimizer": optimizer, "model": model, "ema": {"decay": 0.999, "num_updates": step,
                                                            "shadow_params": shadow}, "step": step}
