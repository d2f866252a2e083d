"""Score networks: every one is ``net(x, c) -> tensor shaped like x``, with c the time/noise input."""
from .mlp import MLP
from .embeddings import fourier_features, sinusoidal_embedding

__all__ = ["MLP", "fourier_features", "sinusoidal_embedding"]
