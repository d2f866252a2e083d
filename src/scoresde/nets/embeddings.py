"""Time / noise-level embeddings (Vaswani et al. positional; Tancik et al. random Fourier features)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["sinusoidal_embedding", "fourier_features", "GaussianFourierProjection"]


def sinusoidal_embedding(c: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """DDPM's positional embedding of a scalar per sample: [sin(c w_k), cos(c w_k)], w_k geometric."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=c.device, dtype=torch.float32) / max(half - 1, 1))
    args = c.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], -1)
    return nn.functional.pad(emb, (0, dim % 2)) if dim % 2 else emb


def fourier_features(c: Tensor, w: Tensor) -> Tensor:
    """[sin(2 pi c w), cos(2 pi c w)] for fixed random frequencies w (NCSN++'s Gaussian Fourier projection)."""
    args = c.float()[:, None] * w[None] * 2 * math.pi  # this order of the products, as score_sde's NCSN++: same floats
    return torch.cat([torch.sin(args), torch.cos(args)], -1)


class GaussianFourierProjection(nn.Module):
    """Fixed random Fourier features of log-noise-level (Song et al. NCSN++), frequencies ~ N(0, scale^2)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("w", torch.randn(dim // 2) * scale)

    def forward(self, c: Tensor) -> Tensor:
        return fourier_features(c, self.w)
