"""Seeded per-sample noise: sample i of a run with seed S sees the same noise whatever the batch.

Each sample owns a generator seeded from (S, i) through numpy's SeedSequence. Every draw takes one
standard-normal tensor of the sample's shape from each sample's own stream, so sample i's noise
depends only on (S, i) and on how many draws came before - never on the batch size, on the samples
beside it, or on how many samples the run asked for. Draws are taken from the streams in blocks
of a fixed size (amortising the per-generator cost); the block size is part of the stream
definition and does not depend on the batch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["sample_seed", "NoiseSource"]

_BLOCK = 16


def sample_seed(seed: int, index: int) -> int:
    """The generator seed of sample ``index`` in a run with seed ``seed`` (a 63-bit integer)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(index)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class NoiseSource:
    """Standard-normal draws of shape (batch, *shape), each row from that sample's own seeded stream.

    ``NoiseSource(seed, shape, indices=range(start, start + batch))``. ``draw()`` returns the next
    noise for every sample; ``count`` says how many draws have been taken.
    """

    def __init__(self, seed: int, shape: Sequence[int], indices: Sequence[int] | int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", block: int = _BLOCK):
        if isinstance(indices, int):
            indices = range(indices)
        self.seed = int(seed)
        self.indices = [int(i) for i in indices]
        self.shape = tuple(int(s) for s in shape)
        self.dtype, self.device, self.block = dtype, torch.device(device), int(block)
        self.generators = [torch.Generator().manual_seed(sample_seed(self.seed, i)) for i in self.indices]
        self._buffer: Tensor | None = None
        self._pos = self.block
        self.count = 0

    @property
    def batch_size(self) -> int:
        return len(self.indices)

    def _refill(self) -> None:
        gen_dtype = torch.float64 if self.dtype == torch.float64 else torch.float32
        rows = [torch.randn((self.block,) + self.shape, generator=g, dtype=gen_dtype) for g in self.generators]
        buf = torch.stack(rows, 1) if rows else torch.empty((self.block, 0) + self.shape, dtype=gen_dtype)
        self._buffer = buf.to(device=self.device, dtype=self.dtype)
        self._pos = 0

    def draw(self) -> Tensor:
        """The next standard-normal tensor, shape (batch, *shape)."""
        if self._pos >= self.block:
            self._refill()
        assert self._buffer is not None
        z = self._buffer[self._pos]
        self._pos += 1
        self.count += 1
        return z

    __call__ = draw
