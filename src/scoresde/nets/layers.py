"""Building blocks for the image score networks (DDPM / DDPM++ / NCSN++ U-Nets, NCSN RefineNets).

Everything here is plain PyTorch (no custom CUDA ops). FIR resampling follows the "upfirdn" recipe
(upsample by zero insertion, pad, FIR filter, downsample by striding) with the separable
[1, 3, 3, 1] kernel used by NCSN++ (Song et al. 2021, after StyleGAN2 / Zhang 2019); borders are
zero-padded, as in those papers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embeddings import GaussianFourierProjection, sinusoidal_embedding

__all__ = [
    "count_parameters", "variance_scaling_init", "conv1x1", "conv3x3", "group_norm",
    "fir_kernel", "upfirdn2d", "upsample_2d", "downsample_2d", "upsample_conv_2d",
    "Upsample", "Downsample", "DDPMResBlock", "BigGANResBlock", "AttnBlock", "Combine", "TimeEmbedding",
]

SQRT2 = math.sqrt(2.0)


def count_parameters(net: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a module; works on the meta device too."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


# ---- initialisation -----------------------------------------------------------------------------
def variance_scaling_init(weight: Tensor, scale: float = 1.0) -> Tensor:
    """In-place 'fan_avg' uniform variance-scaling init (the DDPM / NCSN++ default); scale 0 -> 1e-10."""
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0][0].numel() if weight.ndim > 2 else 1
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    limit = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
    with torch.no_grad():
        return weight.uniform_(-limit, limit)


def _init(module: nn.Conv2d | nn.Linear, scale: float = 1.0) -> nn.Module:
    variance_scaling_init(module.weight, scale)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def conv1x1(cin: int, cout: int, bias: bool = True, init_scale: float = 1.0) -> nn.Conv2d:
    """1x1 convolution (DDPM's 'NIN') with variance-scaling init."""
    return _init(nn.Conv2d(cin, cout, 1, bias=bias), init_scale)


def conv3x3(cin: int, cout: int, stride: int = 1, bias: bool = True, dilation: int = 1, padding: int | None = None,
            init_scale: float = 1.0) -> nn.Conv2d:
    """3x3 convolution ('same' padding by default) with variance-scaling init."""
    padding = dilation if padding is None else padding
    return _init(nn.Conv2d(cin, cout, 3, stride=stride, padding=padding, dilation=dilation, bias=bias), init_scale)


def _groups(channels: int, max_groups: int) -> int:
    g = max(1, min(max_groups, channels // 4))
    while channels % g:
        g -= 1
    return g


def group_norm(channels: int, max_groups: int = 32, eps: float = 1e-6) -> nn.GroupNorm:
    """GroupNorm with min(max_groups, channels // 4) groups (rounded down to a divisor of channels)."""
    return nn.GroupNorm(_groups(channels, max_groups), channels, eps=eps)


# ---- FIR resampling (upfirdn2d in pure PyTorch) -------------------------------------------------
def fir_kernel(k: Sequence[float] = (1, 3, 3, 1), device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """Separable 2-D FIR kernel outer(k, k) normalised to sum 1 (a 1-D k gives a separable kernel)."""
    k = torch.as_tensor(k, dtype=dtype, device=device)
    if k.ndim == 1:
        k = k[:, None] * k[None, :]
    return k / k.sum()


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample by zero insertion, pad (pad0 before, pad1 after; negative crops), FIR-filter, downsample.

    x: (B, C, H, W); kernel: (kh, kw), applied as a true convolution (flipped) to every channel.
    Output size per axis: (H * up + pad0 + pad1 - kh) // down + 1.
    """
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    out = x.reshape(b * c, 1, h, w)
    if up > 1:
        out = out.reshape(b * c, 1, h, 1, w, 1)
        out = F.pad(out, (0, up - 1, 0, 0, 0, up - 1))
        out = out.reshape(b * c, 1, h * up, w * up)
    p0, p1 = pad
    out = F.pad(out, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    hh, ww = out.shape[-2:]
    out = out[..., max(-p0, 0):hh - max(-p1, 0), max(-p0, 0):ww - max(-p1, 0)]
    weight = torch.flip(kernel, (0, 1)).to(dtype=out.dtype, device=out.device)[None, None]
    out = F.conv2d(out, weight, stride=down)
    return out.reshape(b, c, out.shape[-2], out.shape[-1])


def upsample_2d(x: Tensor, k: Sequence[float] | Tensor = (1, 3, 3, 1), factor: int = 2) -> Tensor:
    """FIR upsampling by an integer factor: (H, W) -> (factor H, factor W); constants stay constant (interior)."""
    kernel = fir_kernel(k, x.device, x.dtype) if not torch.is_tensor(k) or k.ndim == 1 else k / k.sum()
    kernel = kernel * factor**2
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: Tensor, k: Sequence[float] | Tensor = (1, 3, 3, 1), factor: int = 2) -> Tensor:
    """FIR (anti-aliased) downsampling by an integer factor: (H, W) -> (H // factor, W // factor) for even sizes."""
    kernel = fir_kernel(k, x.device, x.dtype) if not torch.is_tensor(k) or k.ndim == 1 else k / k.sum()
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d(x: Tensor, weight: Tensor, k: Sequence[float] | Tensor = (1, 3, 3, 1), factor: int = 2) -> Tensor:
    """FIR upsampling and a 'same' KxK convolution as one linear map (StyleGAN2's fused op, as in NCSN++).

    The zero-inserted input is convolved with the conv kernel over its full extent (a transposed
    convolution with stride ``factor``), then FIR-filtered and cropped to (factor H, factor W). Unlike
    ``conv(upsample_2d(x))`` no intermediate result is cropped, so the two differ at the borders only.
    """
    kernel = fir_kernel(k, x.device, x.dtype) if not torch.is_tensor(k) or k.ndim == 1 else k / k.sum()
    kernel = kernel * factor**2
    kw = weight.shape[-1]
    p = (kernel.shape[0] - factor) - (kw - 1)
    # conv_transpose2d takes (in, out, kh, kw) and applies the kernel unflipped: flip it for a true convolution
    w = torch.flip(weight, (2, 3)).transpose(0, 1)
    out = F.conv_transpose2d(x, w, stride=factor)
    return upfirdn2d(out, kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


class Upsample(nn.Module):
    """2x upsampling (Ho et al. 2020; Song et al. 2021): nearest or FIR, optionally followed by a 3x3 conv.

    FIR with conv: ``fused=True`` (default) is the fused upsample-conv of NCSN++ (:func:`upsample_conv_2d`,
    score_sde's exact function); ``fused=False`` upsamples, then convolves with zero 'same' padding.
    """

    def __init__(self, channels: int, out_channels: int | None = None, with_conv: bool = True, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), fused: bool = True):
        super().__init__()
        out_channels = out_channels or channels
        if not with_conv and out_channels != channels:
            raise ValueError("Upsample without conv cannot change the channel count")
        self.fir, self.kernel, self.fused = fir, tuple(fir_kernel), fused
        self.conv = conv3x3(channels, out_channels) if with_conv else None

    def forward(self, x: Tensor) -> Tensor:
        if self.fir and self.fused and self.conv is not None:
            return upsample_conv_2d(x, self.conv.weight, self.kernel) + self.conv.bias[:, None, None]
        h = upsample_2d(x, self.kernel) if self.fir else F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(h) if self.conv is not None else h


class Downsample(nn.Module):
    """2x downsampling (Ho et al. 2020; Song et al. 2021): strided 3x3 conv or average pool, plain or FIR-blurred."""

    def __init__(self, channels: int, out_channels: int | None = None, with_conv: bool = True, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        out_channels = out_channels or channels
        if not with_conv and out_channels != channels:
            raise ValueError("Downsample without conv cannot change the channel count")
        self.fir, self.kernel = fir, tuple(fir_kernel)
        self.conv = conv3x3(channels, out_channels, stride=2, padding=0) if with_conv else None

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is None:
            return downsample_2d(x, self.kernel) if self.fir else F.avg_pool2d(x, 2)
        if self.fir:
            # blur with the FIR kernel, padded so that the stride-2 3x3 conv halves the size exactly
            x = upfirdn2d(x, fir_kernel(self.kernel, x.device), pad=(2, 2))
        else:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


# ---- residual and attention blocks ---------------------------------------------------------------
class DDPMResBlock(nn.Module):
    """DDPM residual block (Ho et al. 2020): GN-SiLU-conv, + Dense(SiLU(temb)), GN-SiLU-dropout-conv, skip.

    With ``skip_rescale`` the residual sum is divided by sqrt(2) (DDPM++, Song et al. 2021).
    """

    def __init__(self, cin: int, cout: int, temb_dim: int, dropout: float = 0.1, skip_rescale: bool = False,
                 init_scale: float = 0.0, max_groups: int = 32, conv_shortcut: bool = False):
        super().__init__()
        self.norm0, self.conv0 = group_norm(cin, max_groups), conv3x3(cin, cout)
        self.dense = _init(nn.Linear(temb_dim, cout))
        self.norm1, self.drop = group_norm(cout, max_groups), nn.Dropout(dropout)
        self.conv1 = conv3x3(cout, cout, init_scale=init_scale)
        self.skip = None if cin == cout else (conv3x3(cin, cout) if conv_shortcut else conv1x1(cin, cout))
        self.skip_rescale = skip_rescale

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = h + self.dense(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.drop(F.silu(self.norm1(h))))
        x = x if self.skip is None else self.skip(x)
        return (x + h) / SQRT2 if self.skip_rescale else x + h


class BigGANResBlock(nn.Module):
    """BigGAN-type residual block of DDPM++ / NCSN++ (Song et al. 2021, App. H), optionally resampling 2x.

    Up/down-sampling (nearest / average pool, or FIR) is applied to both branches after the first
    GN-SiLU; the shortcut gets a 1x1 conv whenever channels change or the block resamples.
    """

    def __init__(self, cin: int, cout: int, temb_dim: int, up: bool = False, down: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), dropout: float = 0.1, skip_rescale: bool = True,
                 init_scale: float = 0.0, max_groups: int = 32):
        super().__init__()
        if up and down:
            raise ValueError("a block cannot both upsample and downsample")
        self.up, self.down, self.fir, self.kernel = up, down, fir, tuple(fir_kernel)
        self.norm0, self.conv0 = group_norm(cin, max_groups), conv3x3(cin, cout)
        self.dense = _init(nn.Linear(temb_dim, cout))
        self.norm1, self.drop = group_norm(cout, max_groups), nn.Dropout(dropout)
        self.conv1 = conv3x3(cout, cout, init_scale=init_scale)
        self.skip = conv1x1(cin, cout) if (cin != cout or up or down) else None
        self.skip_rescale = skip_rescale

    def _resample(self, x: Tensor) -> Tensor:
        if self.up:
            return upsample_2d(x, self.kernel) if self.fir else F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.down:
            return downsample_2d(x, self.kernel) if self.fir else F.avg_pool2d(x, 2)
        return x

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = F.silu(self.norm0(x))
        h, x = self._resample(h), self._resample(x)
        h = self.conv0(h) + self.dense(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.drop(F.silu(self.norm1(h))))
        x = x if self.skip is None else self.skip(x)
        return (x + h) / SQRT2 if self.skip_rescale else x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention block (Ho et al. 2020): GN, q/k/v 1x1, softmax(qk/sqrt C) v, 1x1, skip."""

    def __init__(self, channels: int, skip_rescale: bool = False, init_scale: float = 0.0, max_groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, max_groups)
        self.qkv = conv1x1(channels, 3 * channels)
        self.proj = conv1x1(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: Tensor) -> Tensor:
        b, c, hh, ww = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, hh * ww).transpose(-1, -2).unbind(1)  # (B, HW, C) each
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        h = self.proj(h.transpose(-1, -2).reshape(b, c, hh, ww))
        return (x + h) / SQRT2 if self.skip_rescale else x + h


class Combine(nn.Module):
    """NCSN++ 'input_skip' combiner (Song et al. 2021): 1x1 conv of the image pyramid, then sum or concat.

    ``cat`` puts the pyramid's channels first, then the features (score_sde's ``layerspp.Combine``).
    """

    def __init__(self, pyramid_channels: int, channels: int, method: str = "sum"):
        super().__init__()
        if method not in ("sum", "cat"):
            raise ValueError(f"unknown combine method {method!r}; expected 'sum' or 'cat'")
        self.conv, self.method = conv1x1(pyramid_channels, channels), method

    def forward(self, pyramid: Tensor, h: Tensor) -> Tensor:
        y = self.conv(pyramid)
        return torch.cat([y, h], 1) if self.method == "cat" else h + y


class TimeEmbedding(nn.Module):
    """c -> 2-layer SiLU MLP of a sinusoidal (Ho et al. 2020) or Gaussian Fourier (Song et al. 2021) embedding.

    ``c_transform="log"`` embeds log(c) (NCSN++ feeds log sigma to its Fourier features).
    The output is the pre-activation embedding; blocks apply SiLU + their own Dense.
    """

    def __init__(self, nf: int, out_dim: int, embedding_type: str = "positional", fourier_scale: float = 16.0,
                 c_transform: str = "none"):
        super().__init__()
        if embedding_type not in ("positional", "fourier"):
            raise ValueError(f"unknown embedding_type {embedding_type!r}; expected 'positional' or 'fourier'")
        if c_transform not in ("none", "log"):
            raise ValueError(f"unknown c_transform {c_transform!r}; expected 'none' or 'log'")
        self.nf, self.embedding_type, self.c_transform = nf, embedding_type, c_transform
        emb_dim = nf if embedding_type == "positional" else 2 * nf
        self.fourier = GaussianFourierProjection(2 * nf, fourier_scale) if embedding_type == "fourier" else None
        self.dense0, self.dense1 = _init(nn.Linear(emb_dim, out_dim)), _init(nn.Linear(out_dim, out_dim))

    def forward(self, c: Tensor) -> Tensor:
        c = c.float()
        if self.c_transform == "log":
            c = torch.log(c)
        emb = self.fourier(c) if self.fourier is not None else sinusoidal_embedding(c, self.nf)
        return self.dense1(F.silu(self.dense0(emb.to(self.dense0.weight.dtype))))
