"""Noise-conditional classifiers ``net(x, c) -> logits``: a small CNN for images and an MLP for points.

c is log sigma (the VE-space noise level sigma_t / alpha_t, fed by :mod:`scoresde.classifier`), embedded with
sinusoidal (positional) features or Gaussian random Fourier features (Tancik et al. 2020; NCSN++'s projection
of log sigma, Song et al. 2021), then an MLP; the embedding is added as a per-channel bias in every block.
Used for classifier guidance (Song et al. 2021, App. I; Dhariwal & Nichol 2021).
"""
from __future__ import annotations

from torch import Tensor, nn

from .embeddings import GaussianFourierProjection, sinusoidal_embedding

__all__ = ["ClassifierCNN", "ClassifierMLP"]


class _NoiseEmbedding(nn.Module):
    def __init__(self, dim: int, embedding_type: str, fourier_scale: float):
        super().__init__()
        if embedding_type not in ("positional", "fourier"):
            raise ValueError(f"unknown embedding_type {embedding_type!r}; expected positional or fourier")
        self.dim, self.kind = dim, embedding_type
        self.fourier = GaussianFourierProjection(dim, fourier_scale) if embedding_type == "fourier" else None
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c: Tensor) -> Tensor:
        e = self.fourier(c) if self.fourier is not None else sinusoidal_embedding(c, self.dim)
        return self.mlp(e)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(self.act(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.act(self.norm2(h)))
        return self.skip(x) + h


class ClassifierCNN(nn.Module):
    """A small residual CNN classifier of noisy images: (B, C, H, W), log sigma (B,) -> logits (B, num_classes).

    One block per level, average-pool down-sampling between levels, global average pooling: any image size.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, nf: int = 32, ch_mult: tuple[int, ...] = (1, 2, 2),
                 emb_dim: int = 64, embedding_type: str = "positional", fourier_scale: float = 16.0,
                 stem_stride: int = 1):
        super().__init__()
        self.embed = _NoiseEmbedding(emb_dim, embedding_type, fourier_scale)
        self.conv_in = nn.Conv2d(in_channels, nf, 3, stride=stem_stride, padding=1)  # stride 2: a cheaper first level
        chans = [nf * m for m in ch_mult]
        self.blocks = nn.ModuleList(_Block(cin, cout, emb_dim) for cin, cout in zip([nf] + chans[:-1], chans))
        self.pool = nn.AvgPool2d(2, ceil_mode=True)
        self.head = nn.Sequential(nn.GroupNorm(min(8, chans[-1]), chans[-1]), nn.SiLU())
        self.out = nn.Linear(chans[-1], num_classes)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        emb = self.embed(c)
        h = self.conv_in(x)
        for i, block in enumerate(self.blocks):
            h = block(h, emb)
            if i < len(self.blocks) - 1:
                h = self.pool(h)
        return self.out(self.head(h).mean((-2, -1)))


class ClassifierMLP(nn.Module):
    """An MLP classifier of noisy points: (B, dim), log sigma (B,) -> logits (B, num_classes)."""

    def __init__(self, dim: int = 2, num_classes: int = 2, hidden: int = 128, layers: int = 3, emb_dim: int = 32,
                 embedding_type: str = "positional", fourier_scale: float = 16.0):
        super().__init__()
        self.embed = _NoiseEmbedding(emb_dim, embedding_type, fourier_scale)
        self.inp = nn.Linear(dim, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.emb = nn.ModuleList(nn.Linear(emb_dim, hidden) for _ in range(layers))
        self.out = nn.Linear(hidden, num_classes)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        emb = self.embed(c)
        h = self.act(self.inp(x.reshape(x.shape[0], -1)) + self.emb[0](emb))
        for layer, e in zip(self.hidden, self.emb[1:]):
            h = self.act(layer(h) + e(emb))
        return self.out(h)
