"""One configurable score U-Net covering DDPM (Ho et al. 2020) and DDPM++ / NCSN++ (Song et al. 2021, App. H).

Switches (constructor keywords, all plain values):

* ``resblock_type``: ``"ddpm"`` (Ho et al. residual blocks, separate Up/Downsample layers) or
  ``"biggan"`` (BigGAN-type blocks that resample themselves).
* ``fir`` / ``fir_kernel``: FIR ([1, 3, 3, 1]) resampling instead of nearest / average-pool / plain strided conv.
  ``fused_up_conv`` (default true): an FIR upsampling followed by a conv is score_sde's fused op
  (:func:`~scoresde.nets.layers.upsample_conv_2d`); false: upsample, then a zero-padded 3x3 conv.
* ``center_input``: map x to 2x - 1 first (score_sde's networks for data in [0, 1], ``data.centered = False``).
* ``resamp_with_conv``: a 3x3 conv in the DDPM-type Up/Downsample layers.
* ``progressive``: ``"none" | "output_skip" | "residual"`` (output-side image pyramid).
* ``progressive_input``: ``"none" | "input_skip" | "residual"`` (input-side image pyramid);
  ``progressive_combine``: ``"sum" | "cat"`` for ``input_skip``.
* ``skip_rescale``: divide every residual sum by sqrt(2).
* ``embedding_type``: ``"positional"`` (sinusoidal, Ho et al.) or ``"fourier"`` (Gaussian Fourier
  features, scale ``fourier_scale``); ``c_transform="log"`` embeds log(c) (NCSN++ is fed sigma).
* ``attn_resolutions`` (feature-map sizes, relative to ``image_size``), ``attn_every_up_block``
  (DDPM: attention after every up-path block; DDPM++/NCSN++: once per up-path level),
  ``ch_mult``, ``num_res_blocks``, ``dropout``, ``init_scale`` (0 = zero-initialised last convs),
  ``max_groups`` (GroupNorm groups = min(max_groups, C // 4)).

Spatial sizes: inputs whose height/width are not multiples of 2^(len(ch_mult) - 1) are padded
(``pad_mode``, default zeros, symmetric) up to the next multiple and the output is cropped back,
so e.g. 28x28 MNIST works with any depth (28 -> 32 for four levels; 28 stays 28 for up to three).
``image_size`` only decides which levels get attention: level i has resolution
ceil(image_size / 2^(L-1)) * 2^(L-1) / 2^i.

The network returns raw values; a VE model that "scales by sigma" uses the prediction kind
``scaled_score`` in :class:`scoresde.parameterization.NetworkModel` instead of dividing here.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (
    SQRT2,
    AttnBlock,
    BigGANResBlock,
    Combine,
    DDPMResBlock,
    Downsample,
    TimeEmbedding,
    Upsample,
    conv3x3,
    group_norm,
)

__all__ = ["UNet", "UNET_PAPER_CONFIGS", "ddpm_cifar10", "ddpmpp_cifar10", "ddpmpp_deep_cifar10",
           "ncsnpp_cifar10", "ncsnpp_deep_cifar10"]


class UNet(nn.Module):
    """Score U-Net of DDPM (Ho et al. 2020) and DDPM++ / NCSN++ (Song et al. 2021): ``net(x, c) -> like x``."""

    def __init__(self, in_channels: int = 3, out_channels: int | None = None, nf: int = 128,
                 ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 2, attn_resolutions: Sequence[int] = (16,),
                 image_size: int = 32, dropout: float = 0.1, resblock_type: str = "ddpm", resamp_with_conv: bool = True,
                 fir: bool = False, fir_kernel: Sequence[float] = (1, 3, 3, 1), skip_rescale: bool = False,
                 progressive: str = "none", progressive_input: str = "none", progressive_combine: str = "sum",
                 embedding_type: str = "positional", fourier_scale: float = 16.0, c_transform: str = "none",
                 attn_every_up_block: bool = True, init_scale: float = 0.0, max_groups: int = 32,
                 pad_mode: str = "constant", fused_up_conv: bool = True, center_input: bool = False,
                 num_classes: int | None = None):
        super().__init__()
        checks = {"resblock_type": (resblock_type, ("ddpm", "biggan")),
                  "progressive": (progressive, ("none", "output_skip", "residual")),
                  "progressive_input": (progressive_input, ("none", "input_skip", "residual")),
                  "progressive_combine": (progressive_combine, ("sum", "cat"))}
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")
        out_channels = out_channels or in_channels
        ch_mult = tuple(ch_mult)
        L = len(ch_mult)
        self.in_channels, self.out_channels, self.num_levels = in_channels, out_channels, L
        self.resblock_type, self.progressive, self.progressive_input = resblock_type, progressive, progressive_input
        self.skip_rescale, self.attn_every_up_block, self.pad_mode = skip_rescale, attn_every_up_block, pad_mode
        self.multiple = 2 ** (L - 1)
        self.center_input = center_input
        biggan = resblock_type == "biggan"
        temb_dim = 4 * nf
        self.embed = TimeEmbedding(nf, temb_dim, embedding_type, fourier_scale, c_transform)
        # classifier-free guidance (Ho & Salimans 2022): a label embedding, index num_classes = the null label
        self.num_classes = num_classes
        self.label_embed = nn.Embedding(num_classes + 1, temb_dim) if num_classes else None

        def block(cin: int, cout: int, up: bool = False, down: bool = False) -> nn.Module:
            if biggan:
                return BigGANResBlock(cin, cout, temb_dim, up=up, down=down, fir=fir, fir_kernel=fir_kernel,
                                      dropout=dropout, skip_rescale=skip_rescale, init_scale=init_scale,
                                      max_groups=max_groups)
            return DDPMResBlock(cin, cout, temb_dim, dropout=dropout, skip_rescale=skip_rescale,
                                init_scale=init_scale, max_groups=max_groups)

        def attn(ch: int) -> nn.Module:
            return AttnBlock(ch, skip_rescale=skip_rescale, init_scale=init_scale, max_groups=max_groups)

        res = math.ceil(image_size / self.multiple) * self.multiple
        resolutions = [res // 2**i for i in range(L)]
        attn_resolutions = set(attn_resolutions)

        # ---- down path
        self.conv_in = conv3x3(in_channels, nf)
        chans, ch, pyr_ch = [nf], nf, in_channels
        self.down = nn.ModuleList()
        for i, mult in enumerate(ch_mult):
            level = nn.Module()
            level.blocks, level.attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                level.blocks.append(block(ch, nf * mult))
                ch = nf * mult
                level.attns.append(attn(ch) if resolutions[i] in attn_resolutions else nn.Identity())
                chans.append(ch)
            if i != L - 1:
                level.resample = (block(ch, ch, down=True) if biggan
                                  else Downsample(ch, with_conv=resamp_with_conv, fir=fir, fir_kernel=fir_kernel))
                if progressive_input == "input_skip":
                    level.pyramid = Downsample(pyr_ch, with_conv=False, fir=fir, fir_kernel=fir_kernel)
                    level.combine = Combine(pyr_ch, ch, progressive_combine)
                    ch = 2 * ch if progressive_combine == "cat" else ch
                elif progressive_input == "residual":
                    level.pyramid = Downsample(pyr_ch, ch, with_conv=True, fir=fir, fir_kernel=fir_kernel)
                    pyr_ch = ch
                chans.append(ch)
            self.down.append(level)

        # ---- middle
        self.mid_block0, self.mid_attn, self.mid_block1 = block(ch, ch), attn(ch), block(ch, ch)

        # ---- up path
        self.up = nn.ModuleList()
        pyr_ch = None
        for i in reversed(range(L)):
            level = nn.Module()
            level.blocks, level.attns = nn.ModuleList(), nn.ModuleList()
            use_attn = resolutions[i] in attn_resolutions
            for _ in range(num_res_blocks + 1):
                level.blocks.append(block(ch + chans.pop(), nf * ch_mult[i]))
                ch = nf * ch_mult[i]
                if attn_every_up_block:
                    level.attns.append(attn(ch) if use_attn else nn.Identity())
            if not attn_every_up_block:
                level.attns.append(attn(ch) if use_attn else nn.Identity())
            if progressive == "output_skip":
                if i != L - 1:
                    level.pyramid_up = Upsample(pyr_ch, with_conv=False, fir=fir, fir_kernel=fir_kernel)
                level.pyramid_norm = group_norm(ch, max_groups)
                level.pyramid_conv = conv3x3(ch, out_channels, init_scale=init_scale)
                pyr_ch = out_channels
            elif progressive == "residual" and L > 1:
                if i == L - 1:
                    level.pyramid_norm = group_norm(ch, max_groups)
                    level.pyramid_conv = conv3x3(ch, ch)
                else:
                    level.pyramid_up = Upsample(pyr_ch, ch, with_conv=True, fir=fir, fir_kernel=fir_kernel,
                                                fused=fused_up_conv)
                pyr_ch = ch
            if i != 0:
                level.resample = (block(ch, ch, up=True) if biggan
                                  else Upsample(ch, with_conv=resamp_with_conv, fir=fir, fir_kernel=fir_kernel,
                                                fused=fused_up_conv))
            self.up.append(level)
        assert not chans

        if progressive != "output_skip":
            self.norm_out = group_norm(ch, max_groups)
            self.conv_out = conv3x3(ch, out_channels, init_scale=init_scale)

    def _resample(self, module: nn.Module, h: Tensor, temb: Tensor) -> Tensor:
        return module(h, temb) if self.resblock_type == "biggan" else module(h)

    def forward(self, x: Tensor, c: Tensor, y: Tensor | None = None) -> Tensor:
        """x: (B, C, H, W); c: (B,) time / noise input; y: (B,) labels (num_classes: null; None: all null)."""
        if self.center_input:
            x = 2 * x - 1.0
        H, W = x.shape[-2:]
        ph, pw = (-H) % self.multiple, (-W) % self.multiple
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=self.pad_mode)
        temb = self.embed(c)
        if self.label_embed is not None:
            y = torch.full((x.shape[0],), self.num_classes, device=x.device) if y is None else y.to(x.device).long()
            temb = temb + self.label_embed(y)
        elif y is not None:
            raise ValueError("labels given to a U-Net without a label embedding (construct it with num_classes)")
        L = self.num_levels

        hs = [self.conv_in(x)]
        pyramid = x
        for i, level in enumerate(self.down):
            for blk, att in zip(level.blocks, level.attns):
                hs.append(att(blk(hs[-1], temb)))
            if i != L - 1:
                h = self._resample(level.resample, hs[-1], temb)
                if self.progressive_input == "input_skip":
                    pyramid = level.pyramid(pyramid)
                    h = level.combine(pyramid, h)
                elif self.progressive_input == "residual":
                    pyramid = level.pyramid(pyramid)
                    h = (pyramid + h) / SQRT2 if self.skip_rescale else pyramid + h
                    pyramid = h
                hs.append(h)

        h = self.mid_block1(self.mid_attn(self.mid_block0(hs[-1], temb)), temb)

        pyramid = None
        for j, level in enumerate(self.up):
            i = L - 1 - j
            for k, blk in enumerate(level.blocks):
                h = blk(torch.cat([h, hs.pop()], 1), temb)
                if self.attn_every_up_block:
                    h = level.attns[k](h)
            if not self.attn_every_up_block:
                h = level.attns[0](h)
            if self.progressive == "output_skip":
                p = level.pyramid_conv(F.silu(level.pyramid_norm(h)))
                pyramid = p if i == L - 1 else level.pyramid_up(pyramid) + p
            elif self.progressive == "residual" and L > 1:
                if i == L - 1:
                    pyramid = level.pyramid_conv(F.silu(level.pyramid_norm(h)))
                else:
                    pyramid = level.pyramid_up(pyramid)
                    h = (pyramid + h) / SQRT2 if self.skip_rescale else pyramid + h
                    pyramid = h
            if i != 0:
                h = self._resample(level.resample, h, temb)
        assert not hs

        out = pyramid if self.progressive == "output_skip" else self.conv_out(F.silu(self.norm_out(h)))
        if ph or pw:
            out = out[..., ph // 2:ph // 2 + H, pw // 2:pw // 2 + W]
        return out


# ---- the CIFAR-10 settings of the papers ----------------------------------------------------------
_DDPM = dict(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), image_size=32, dropout=0.1,
             resblock_type="ddpm", resamp_with_conv=True, fir=False, skip_rescale=False, embedding_type="positional",
             attn_every_up_block=True, init_scale=0.0)
_DDPMPP = dict(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), image_size=32, dropout=0.1,
               resblock_type="biggan", resamp_with_conv=True, fir=False, skip_rescale=True, progressive="none",
               progressive_input="none", embedding_type="positional", attn_every_up_block=False, init_scale=0.0)
_NCSNPP = dict(_DDPMPP, fir=True, fir_kernel=(1, 3, 3, 1), progressive_input="residual", progressive_combine="sum",
               embedding_type="fourier", fourier_scale=16.0, c_transform="log")

#: Constructor kwargs of the CIFAR-10 models (time input: DDPM / DDPM++ take c = 999 t (VP), NCSN++ takes c = sigma).
UNET_PAPER_CONFIGS: dict[str, dict[str, Any]] = {
    "ddpm": _DDPM,                                            # Ho et al. 2020, 35.7M
    # score_sde_pytorch's port of DDPM attends once per up-path level (not after every block): 35.2M
    "ddpm_score_sde": dict(_DDPM, attn_every_up_block=False),
    "ddpmpp_cont": _DDPMPP,                                   # Song et al. 2021, DDPM++ cont. (VP / sub-VP)
    "ddpmpp_cont_deep": dict(_DDPMPP, num_res_blocks=8),      # DDPM++ cont. deep
    "ncsnpp_cont": _NCSNPP,                                   # NCSN++ cont. (VE)
    "ncsnpp_cont_deep": dict(_NCSNPP, num_res_blocks=8),      # NCSN++ cont. deep
}


def _build(name: str, overrides: dict[str, Any]) -> UNet:
    return UNet(**{**UNET_PAPER_CONFIGS[name], **overrides})


def ddpm_cifar10(**overrides: Any) -> UNet:
    """DDPM U-Net of Ho et al. 2020 at the CIFAR-10 size (keyword overrides allowed)."""
    return _build("ddpm", overrides)


def ddpmpp_cifar10(**overrides: Any) -> UNet:
    """DDPM++ cont. of Song et al. 2021 at the CIFAR-10 size."""
    return _build("ddpmpp_cont", overrides)


def ddpmpp_deep_cifar10(**overrides: Any) -> UNet:
    """DDPM++ cont. deep of Song et al. 2021 at the CIFAR-10 size."""
    return _build("ddpmpp_cont_deep", overrides)


def ncsnpp_cifar10(**overrides: Any) -> UNet:
    """NCSN++ cont. of Song et al. 2021 at the CIFAR-10 size."""
    return _build("ncsnpp_cont", overrides)


def ncsnpp_deep_cifar10(**overrides: Any) -> UNet:
    """NCSN++ cont. deep of Song et al. 2021 at the CIFAR-10 size."""
    return _build("ncsnpp_cont_deep", overrides)
