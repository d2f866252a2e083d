"""A small residual MLP score network for low-dimensional data."""
from __future__ import annotations

from torch import Tensor, nn

from .embeddings import sinusoidal_embedding

__all__ = ["MLP"]


class MLP(nn.Module):
    """net(x, c): x (B, d) and a scalar time/noise input c (B,) -> (B, d).

    c is embedded sinusoidally (``embed_dim``), mapped by a 2-layer MLP and added to every hidden
    layer (``depth`` residual SiLU blocks of width ``width``). ``c_scale`` multiplies c before the
    embedding (use ~1000 when c = t in [0, 1], 1 when c is already an index or 999 t).
    """

    def __init__(self, dim: int, width: int = 128, depth: int = 3, embed_dim: int = 64, c_scale: float = 1.0):
        super().__init__()
        self.dim, self.embed_dim, self.c_scale = dim, embed_dim, c_scale
        self.embed = nn.Sequential(nn.Linear(embed_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
                                    for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        emb = self.embed(sinusoidal_embedding(c * self.c_scale, self.embed_dim).to(self.inp.weight.dtype))
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)
