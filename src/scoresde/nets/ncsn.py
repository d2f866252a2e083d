"""RefineNet score networks: NCSN (Song & Ermon 2019) and NCSNv2 (Song & Ermon 2020).

Both are dilated RefineNets: four residual stages (channels ngf * ch_mult, the second stage halves
the resolution with conv + 2x2 mean-pool, the last two use dilations 2 and 4 instead of further
downsampling) followed by a cascade of RefineBlocks (residual conv units, multi-resolution fusion by
bilinear upsampling, chained residual pooling). ELU activations throughout.

* NCSN (``conditional=True``): every normalisation is a *conditional* instance norm++ whose
  (gamma, alpha, beta) come from a table of ``num_classes`` rows indexed by the noise level.
  Conditioning (documented choice): c is a float *fractional index*; the table is linearly
  interpolated between rows floor(c) and floor(c) + 1 (c clamped to [0, num_classes - 1]), so an
  integer c is an exact lookup (feed ``discrete_index``) and a continuous c still works. With
  ``conditioning="log_sigma"`` c is a noise level sigma and the fractional index is
  (num_classes - 1) (log sigma - log sigma_min) / (log sigma_max - log sigma_min), i.e. row 0 is
  sigma_min and the rows are geometrically spaced up to sigma_max.
  NCSN's network outputs the score itself: use prediction kind ``"score"``.
* NCSNv2 (``conditional=False``): unconditional instance norm++ in the residual stages and none in
  the RefineBlocks, max-pooling in the chained residual pooling. c is ignored; NCSNv2 divides the
  output by sigma outside the net, which is this library's ``"scaled_score"`` prediction kind.

Any spatial size works (odd sizes after mean-pooling are handled by the bilinear fusion), e.g. 28x28.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import conv1x1, conv3x3

__all__ = ["InstanceNormPlusPlus", "RefineNet", "NCSN", "NCSNv2", "NCSN_PAPER_CONFIGS"]


class InstanceNormPlusPlus(nn.Module):
    """Instance norm++ (Song & Ermon 2019): instance norm that re-injects the per-channel means, optionally conditional.

    out = gamma * (IN(x) + alpha * (mu - mean(mu)) / std(mu)) + beta, with mu the per-channel spatial
    means; (gamma, alpha, beta) are learned per channel, or per noise level when ``num_classes`` is set.
    """

    def __init__(self, channels: int, num_classes: int | None = None, eps: float = 1e-5):
        super().__init__()
        self.channels, self.eps = channels, eps
        rows = num_classes if num_classes else 1
        table = torch.empty(rows, 3 * channels)
        nn.init.normal_(table[:, :2 * channels], 1.0, 0.02)
        nn.init.zeros_(table[:, 2 * channels:])
        self.table = nn.Parameter(table)
        self.conditional = bool(num_classes)

    def forward(self, x: Tensor, cond: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
        if self.conditional:
            if cond is None:
                raise ValueError("a conditional instance norm++ needs the noise-level conditioning")
            i0, i1, w = cond
            params = self.table[i0] * (1 - w)[:, None] + self.table[i1] * w[:, None]
        else:
            params = self.table.expand(x.shape[0], -1)
        gamma, alpha, beta = params.to(x.dtype)[:, :, None, None].chunk(3, 1)
        mu = x.mean((2, 3), keepdim=True)
        m, v = mu.mean(1, keepdim=True), mu.var(1, keepdim=True)
        h = F.instance_norm(x, eps=self.eps) + alpha * (mu - m) / torch.sqrt(v + self.eps)
        return gamma * h + beta


def _norm_call(norm: nn.Module | None, x: Tensor, cond: Any) -> Tensor:
    return x if norm is None else norm(x, cond)


class ConvMeanPool(nn.Module):
    """Convolution followed by 2x2 mean pooling (Song & Ermon 2019's downsampling)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3):
        super().__init__()
        self.conv = conv3x3(cin, cout) if kernel_size == 3 else conv1x1(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv(x), 2)


class ResidualBlock(nn.Module):
    """RefineNet residual block with instance norm++ (Song & Ermon 2019/2020): norm-ELU-conv twice, plus shortcut."""

    def __init__(self, cin: int, cout: int, make_norm: Callable[[int], nn.Module], act: nn.Module,
                 down: bool = False, dilation: int = 1):
        super().__init__()
        self.act, self.norm1 = act, make_norm(cin)
        if down and dilation == 1:
            self.conv1, self.norm2 = conv3x3(cin, cin), make_norm(cin)
            self.conv2, self.shortcut = ConvMeanPool(cin, cout, 3), ConvMeanPool(cin, cout, 1)
        elif down:
            self.conv1, self.norm2 = conv3x3(cin, cin, dilation=dilation), make_norm(cin)
            self.conv2, self.shortcut = conv3x3(cin, cout, dilation=dilation), conv3x3(cin, cout, dilation=dilation)
        else:
            self.conv1, self.norm2 = conv3x3(cin, cout, dilation=dilation), make_norm(cout)
            self.conv2 = conv3x3(cout, cout, dilation=dilation)
            self.shortcut = None if cin == cout else (conv3x3(cin, cout, dilation=dilation) if dilation > 1
                                                      else conv1x1(cin, cout))

    def forward(self, x: Tensor, cond: Any) -> Tensor:
        h = self.conv1(self.act(self.norm1(x, cond)))
        h = self.conv2(self.act(self.norm2(h, cond)))
        return (x if self.shortcut is None else self.shortcut(x)) + h


class RCUBlock(nn.Module):
    """Residual conv unit of RefineNet (Lin et al. 2017): n_blocks x ([norm] - ELU - conv, n_stages times) + skip."""

    def __init__(self, features: int, n_blocks: int, n_stages: int, make_norm: Callable[[int], nn.Module] | None,
                 act: nn.Module):
        super().__init__()
        self.act, self.n_stages = act, n_stages
        self.convs = nn.ModuleList(conv3x3(features, features, bias=False) for _ in range(n_blocks * n_stages))
        self.norms = nn.ModuleList(make_norm(features) for _ in range(n_blocks * n_stages)) if make_norm else None

    def forward(self, x: Tensor, cond: Any) -> Tensor:
        for b in range(len(self.convs) // self.n_stages):
            residual = x
            for s in range(self.n_stages):
                k = b * self.n_stages + s
                x = self.convs[k](self.act(_norm_call(self.norms[k] if self.norms else None, x, cond)))
            x = x + residual
        return x


class MSFBlock(nn.Module):
    """Multi-resolution fusion (RefineNet): [norm] - conv per input, bilinear upsampling to the largest size, sum."""

    def __init__(self, in_planes: Sequence[int], features: int, make_norm: Callable[[int], nn.Module] | None):
        super().__init__()
        self.convs = nn.ModuleList(conv3x3(c, features) for c in in_planes)
        self.norms = nn.ModuleList(make_norm(c) for c in in_planes) if make_norm else None

    def forward(self, xs: Sequence[Tensor], shape: Sequence[int], cond: Any) -> Tensor:
        out = 0
        for k, x in enumerate(xs):
            h = self.convs[k](_norm_call(self.norms[k] if self.norms else None, x, cond))
            out = out + F.interpolate(h, size=tuple(shape), mode="bilinear", align_corners=True)
        return out


class CRPBlock(nn.Module):
    """Chained residual pooling (RefineNet): ELU, then n_stages of [norm] - 5x5 pool - conv, each added to the input."""

    def __init__(self, features: int, n_stages: int, make_norm: Callable[[int], nn.Module] | None, act: nn.Module,
                 pool: str = "avg"):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"unknown pool {pool!r}; expected 'avg' or 'max'")
        self.act = act
        self.pool = (nn.AvgPool2d(5, stride=1, padding=2, count_include_pad=True) if pool == "avg"
                     else nn.MaxPool2d(5, stride=1, padding=2))
        self.convs = nn.ModuleList(conv3x3(features, features, bias=False) for _ in range(n_stages))
        self.norms = nn.ModuleList(make_norm(features) for _ in range(n_stages)) if make_norm else None

    def forward(self, x: Tensor, cond: Any) -> Tensor:
        x = self.act(x)
        path = x
        for k, conv in enumerate(self.convs):
            path = conv(self.pool(_norm_call(self.norms[k] if self.norms else None, path, cond)))
            x = path + x
        return x


class RefineBlock(nn.Module):
    """RefineNet block (Lin et al. 2017) as in NCSN: RCU per input, multi-resolution fusion, CRP, output RCU."""

    def __init__(self, in_planes: Sequence[int], features: int, make_norm: Callable[[int], nn.Module] | None,
                 act: nn.Module, start: bool = False, end: bool = False, pool: str = "avg"):
        super().__init__()
        self.adapt = nn.ModuleList(RCUBlock(c, 2, 2, make_norm, act) for c in in_planes)
        self.msf = None if start else MSFBlock(in_planes, features, make_norm)
        self.crp = CRPBlock(features, 2, make_norm, act, pool)
        self.out = RCUBlock(features, 3 if end else 1, 2, make_norm, act)

    def forward(self, xs: Sequence[Tensor], shape: Sequence[int], cond: Any) -> Tensor:
        hs = [adapt(x, cond) for adapt, x in zip(self.adapt, xs)]
        h = hs[0] if self.msf is None else self.msf(hs, shape, cond)
        return self.out(self.crp(h, cond), cond)


class RefineNet(nn.Module):
    """Dilated RefineNet score network of NCSN (Song & Ermon 2019) / NCSNv2 (Song & Ermon 2020): ``net(x, c)``.

    ``conditional``: conditional instance norm++ everywhere (NCSN) or unconditional, c ignored (NCSNv2).
    ``center_input``: map x to 2x - 1 first (score_sde's networks for data in [0, 1]).
    ``ch_mult`` / ``dilations``: channel multiplier and dilation of each residual stage; every stage
    after the first "downsamples", by 2x2 mean pooling when its dilation is 1 and by dilation otherwise.
    """

    def __init__(self, in_channels: int = 3, out_channels: int | None = None, ngf: int = 128,
                 ch_mult: Sequence[int] = (1, 2, 2, 2), dilations: Sequence[int] = (1, 1, 2, 4),
                 conditional: bool = True, num_classes: int = 10, conditioning: str = "index",
                 sigma_min: float = 0.01, sigma_max: float = 1.0, pool: str = "avg", center_input: bool = False):
        super().__init__()
        if len(ch_mult) != len(dilations) or len(ch_mult) < 2:
            raise ValueError("ch_mult and dilations must have the same length (at least 2)")
        if conditioning not in ("index", "log_sigma"):
            raise ValueError(f"unknown conditioning {conditioning!r}; expected 'index' or 'log_sigma'")
        out_channels = out_channels or in_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conditional, self.num_classes, self.conditioning = conditional, num_classes, conditioning
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.center_input = center_input
        self.act = act = nn.ELU()
        classes = num_classes if conditional else None

        def make_norm(ch: int) -> nn.Module:
            return InstanceNormPlusPlus(ch, classes)

        refine_norm = make_norm if conditional else None
        chs = [ngf * m for m in ch_mult]
        L = len(chs)
        self.begin_conv = conv3x3(in_channels, ngf)
        self.stages = nn.ModuleList()
        prev = ngf
        for i, (ch, d) in enumerate(zip(chs, dilations)):
            self.stages.append(nn.ModuleList([ResidualBlock(prev, ch, make_norm, act, down=i > 0, dilation=d),
                                              ResidualBlock(ch, ch, make_norm, act, dilation=d)]))
            prev = ch
        self.refines = nn.ModuleList()
        features = None
        for i in reversed(range(L)):
            if i == L - 1:
                features = chs[i]
                self.refines.append(RefineBlock([chs[i]], features, refine_norm, act, start=True, pool=pool))
            else:
                new = chs[max(i - 1, 0)]
                self.refines.append(RefineBlock([chs[i], features], new, refine_norm, act, end=i == 0, pool=pool))
                features = new
        self.norm_out = make_norm(features)
        self.end_conv = conv3x3(features, out_channels)

    def _cond(self, c: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
        if not self.conditional:
            return None
        c = c.float()
        if self.conditioning == "log_sigma":
            lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
            c = (torch.log(c) - lo) / (hi - lo) * (self.num_classes - 1)
        c = c.clamp(0, self.num_classes - 1)
        i0 = torch.floor(c).long()
        i1 = torch.clamp(i0 + 1, max=self.num_classes - 1)
        return i0, i1, c - i0.float()

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x: (B, C, H, W); c: (B,) noise-level index / sigma (ignored when unconditional)."""
        cond = self._cond(c)
        h = self.begin_conv(2 * x - 1.0 if self.center_input else x)
        feats = []
        for block0, block1 in self.stages:
            h = block1(block0(h, cond), cond)
            feats.append(h)
        ref = None
        for refine, feat in zip(self.refines, reversed(feats)):
            ref = refine([feat] if ref is None else [feat, ref], feat.shape[-2:], cond)
        return self.end_conv(self.act(self.norm_out(ref, cond)))


class NCSN(RefineNet):
    """NCSN (Song & Ermon 2019): RefineNet with conditional instance norm++, conditioned on the noise-level index."""

    def __init__(self, in_channels: int = 3, out_channels: int | None = None, ngf: int = 128, num_classes: int = 10,
                 conditioning: str = "index", sigma_min: float = 0.01, sigma_max: float = 1.0,
                 center_input: bool = False, **kwargs: Any):
        super().__init__(in_channels, out_channels, ngf, conditional=True, num_classes=num_classes,
                         conditioning=conditioning, sigma_min=sigma_min, sigma_max=sigma_max,
                         center_input=center_input, **{"pool": "avg", **kwargs})


class NCSNv2(RefineNet):
    """NCSNv2 (Song & Ermon 2020): unconditional RefineNet with instance norm++; c is ignored (scaled_score)."""

    def __init__(self, in_channels: int = 3, out_channels: int | None = None, ngf: int = 128,
                 center_input: bool = False, **kwargs: Any):
        super().__init__(in_channels, out_channels, ngf, conditional=False, center_input=center_input,
                         **{"pool": "max", **kwargs})


#: CIFAR-10 settings: NCSN with 10 noise levels (sigma 1 -> 0.01), NCSNv2 with ngf 128 (232 levels, sigma 50 -> 0.01).
NCSN_PAPER_CONFIGS: dict[str, tuple[type[RefineNet], dict[str, Any]]] = {
    "ncsn": (NCSN, dict(ngf=128, num_classes=10, sigma_min=0.01, sigma_max=1.0)),
    "ncsnv2": (NCSNv2, dict(ngf=128)),
}
