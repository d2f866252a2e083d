"""Seeded per-sample noise: sample i of a run with seed S sees the same noise whatever the batch.

Each sample owns a generator seeded from (S, i) through numpy's SeedSequence. Every draw takes one
standard-normal tensor of the sample's shape from each sample's own stream, so sample i's noise
depends only on (S, i) and on how many draws came before - never on the batch size, on the samples
beside it, or on how many samples the run asked for. Draws are taken from the streams in blocks
of a fixed size (amortising the per-generator cost); the block size is part of the stream
definition and does not depend on the batch.

For adaptive SDE solvers the module also offers :class:`SampleStreams` (streams that advance per
sample, so a sample that takes fewer steps draws less) and :class:`BrownianPath`, a re-queryable
per-sample Brownian path: a retry over a shorter interval draws from the Brownian bridge between
the points already revealed, so rejected steps do not bias the law of the path.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .seeding import sample_seed

__all__ = ["NOISE_MODES", "BrownianPath", "NoiseSource", "SampleStreams", "sample_seed"]

_BLOCK = 16
_HIT = 1e-12  # relative distance under which a queried time is taken to be a revealed point
_SIDE_BLOCK = 64  # block size of the side streams (part of their definition, like _BLOCK)


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

    def substream(self, stream: int = 1) -> SampleStreams:
        """Independent per-sample side streams (seed, index, stream) of this source's samples."""
        if int(stream) < 1:
            raise ValueError(f"a side stream needs stream >= 1 (stream 0 is this source's own), got {stream}")
        return SampleStreams(self.seed, self.shape, self.indices, stream=stream, dtype=self.dtype,
                             device=self.device)


class SampleStreams:
    """Standard-normal streams that advance per sample: ``draw(rows)`` takes the next draw of those samples only.

    Sample i's k-th draw depends only on (seed, index_i, stream) and k - never on the batch or on
    how often the other samples drew. Draws come from each generator in blocks of ``block``.
    """

    def __init__(self, seed: int, shape: Sequence[int], indices: Sequence[int] | int, stream: int = 1,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", block: int = _SIDE_BLOCK):
        if isinstance(indices, int):
            indices = range(indices)
        self.seed, self.stream = int(seed), int(stream)
        self.indices = [int(i) for i in indices]
        self.shape = tuple(int(s) for s in shape)
        self.dtype, self.device, self.block = dtype, torch.device(device), int(block)
        self._gen_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        self.generators = [torch.Generator().manual_seed(sample_seed(self.seed, i, self.stream)) for i in self.indices]
        n = len(self.indices)
        self._buffer = torch.empty((n, self.block) + self.shape, dtype=self._gen_dtype)
        self._pos = torch.full((n,), self.block, dtype=torch.long)
        #: draws taken so far, per sample
        self.count = torch.zeros(n, dtype=torch.long)

    @property
    def batch_size(self) -> int:
        return len(self.indices)

    def draw(self, rows: Tensor | Sequence[int] | None = None) -> Tensor:
        """The next standard-normal draw of each sample in ``rows`` (distinct batch positions; all if None)."""
        rows = torch.arange(self.batch_size) if rows is None else torch.as_tensor(rows, dtype=torch.long).cpu()
        if rows.numel() and rows.unique().numel() != rows.numel():
            raise ValueError("SampleStreams.draw: rows must be distinct")
        empty = rows[self._pos[rows] >= self.block]
        if empty.numel():
            self._buffer[empty] = torch.stack([
                torch.randn((self.block,) + self.shape, generator=self.generators[r], dtype=self._gen_dtype)
                for r in empty.tolist()])
            self._pos[empty] = 0
        z = self._buffer[rows, self._pos[rows]]
        self._pos[rows] += 1
        self.count[rows] += 1
        return z.to(device=self.device, dtype=self.dtype)

    def reassign(self, row: int, index: int) -> None:
        """Give batch position ``row`` to sample ``index``: its stream restarts from that sample's first draw
        (a solver that refills a finished slot with the next sample)."""
        row, index = int(row), int(index)
        self.indices[row] = index
        self.generators[row] = torch.Generator().manual_seed(sample_seed(self.seed, index, self.stream))
        self._pos[row] = self.block
        self.count[row] = 0


NoiseMode = Literal["bridge", "fresh"]
NOISE_MODES: tuple[str, ...] = ("bridge", "fresh")


class BrownianPath:
    """A re-queryable Brownian path per sample, seen from each sample's current time (reverse time, t -> t - h).

    ``increment(rows, h)`` returns W(t - h) - W(t) ~ N(0, h I) for each sample in ``rows``;
    ``advance(rows, h, w)`` moves a sample's origin to t - h once a step over [t - h, t] is accepted.
    Every point of the path a query revealed beyond the current time is kept, so in ``"bridge"``
    mode a retry with h' < h draws W' ~ N((h'/h) W, h'(h - h')/h) from the Brownian bridge, and after
    acceptance the unused part W - W' still belongs to [t - h, t - h'] for the next step; past the
    last revealed point, increments are fresh and independent. The law of the path does not depend
    on which queries were made, so accept/reject decisions cannot bias it (this fixes the bias of
    Jolicoeur-Martineau et al. 2021, "Gotta Go Fast", whose solver redraws noise after a rejection).
    ``"fresh"`` mode is that original behaviour: every query is an independent N(0, h I) draw.

    Each query takes exactly one draw from the sample's own stream, so sample i's path depends only
    on its seed and its own queries, never on the batch.
    """

    def __init__(self, streams: SampleStreams, mode: NoiseMode = "bridge"):
        if mode not in NOISE_MODES:
            raise ValueError(f"unknown noise mode {mode!r}; expected one of {', '.join(NOISE_MODES)}")
        self.streams, self.mode = streams, mode
        n, shape = streams.batch_size, streams.shape
        # revealed points per sample, sorted: offsets below the current time (inf = empty slot) and
        # the path's value there relative to the current time
        self._d = torch.full((n, 0), math.inf, dtype=torch.float64)
        self._v = torch.zeros((n, 0) + shape, dtype=streams.dtype, device=streams.device)

    @property
    def revealed(self) -> Tensor:
        """Number of revealed points beyond each sample's current time."""
        return torch.isfinite(self._d).sum(1)

    def _rows(self, rows: Tensor | Sequence[int]) -> Tensor:
        return torch.as_tensor(rows, dtype=torch.long).cpu()

    def _grow(self, need: int) -> None:
        k = self._d.shape[1]
        if need > k:
            n = self._d.shape[0]
            self._d = torch.cat([self._d, torch.full((n, need - k), math.inf, dtype=torch.float64)], 1)
            self._v = torch.cat([self._v, self._v.new_zeros((n, need - k) + self._v.shape[2:])], 1)

    def _store(self, rows: Tensor, d: Tensor, v: Tensor) -> None:
        d, order = torch.sort(d, dim=1, stable=True)
        idx = order.to(v.device).reshape(order.shape + (1,) * (v.ndim - 2)).expand_as(v)
        self._d[rows], self._v[rows] = d, torch.gather(v, 1, idx)
        keep = self._d.shape[1]
        while keep and not bool(torch.isfinite(self._d[:, keep - 1]).any()):
            keep -= 1
        if keep < self._d.shape[1]:
            self._d, self._v = self._d[:, :keep].contiguous(), self._v[:, :keep].contiguous()

    def increment(self, rows: Tensor | Sequence[int], h: Tensor) -> Tensor:
        """W(t - h) - W(t) for each sample in ``rows`` (h > 0, float64, one per row): shape (len(rows), *shape)."""
        rows = self._rows(rows)
        h = torch.as_tensor(h, dtype=torch.float64).cpu().reshape(-1)
        if h.shape[0] != rows.shape[0]:
            raise ValueError(f"need one step size per row: {h.shape[0]} step sizes for {rows.shape[0]} rows")
        if (h <= 0).any() or not torch.isfinite(h).all():
            raise ValueError("Brownian increments need finite step sizes h > 0")
        xi = self.streams.draw(rows)
        vdev = {"device": xi.device, "dtype": xi.dtype}
        if self.mode == "fresh":
            return torch.sqrt(h).to(**vdev).reshape((-1,) + (1,) * (xi.ndim - 1)) * xi
        n = rows.shape[0]
        d, v = self._d[rows], self._v[rows]  # (n, K), (n, K, *shape)
        k = d.shape[1]
        ar = torch.arange(n)
        # a query within rounding of a revealed point (h = t - t' computed by subtraction) hits it
        near = (d - h[:, None]).abs() <= _HIT * h[:, None]
        if near.any():
            h = torch.where(near.any(1), torch.where(near, d, 0.0).amax(1), h)
        j = (d < h[:, None]).sum(1)  # revealed points strictly inside (0, h)
        count = torch.isfinite(d).sum(1)
        has_lo, has_hi = j > 0, j < count
        if k:
            jl, jh = (j - 1).clamp(0, k - 1), j.clamp(0, k - 1)
            d_lo = torch.where(has_lo, d[ar, jl], torch.zeros_like(h))
            d_hi = torch.where(has_hi, d[ar, jh], h + 1)
            v_lo, v_hi = v[ar, jl], v[ar, jh]
        else:
            d_lo, d_hi = torch.zeros_like(h), h + 1
            v_lo = v_hi = xi.new_zeros(xi.shape)
        shape1 = (-1,) + (1,) * (xi.ndim - 1)
        v_lo = torch.where(has_lo.to(xi.device).reshape(shape1), v_lo, torch.zeros_like(v_lo))
        # Brownian bridge between the neighbouring revealed points, or a fresh increment past the last one
        frac = torch.where(has_hi, (h - d_lo) / (d_hi - d_lo), torch.zeros_like(h))
        var = torch.where(has_hi, (h - d_lo) * (d_hi - h) / (d_hi - d_lo), h - d_lo).clamp_min(0)
        w = v_lo + frac.to(**vdev).reshape(shape1) * (v_hi - v_lo) + torch.sqrt(var).to(**vdev).reshape(shape1) * xi
        # remember the new point (unless it coincides with a revealed one)
        new = ~(has_hi & (d_hi == h))
        if new.any():
            self._grow(int((count + new.long()).max()))
            d, v = self._d[rows], self._v[rows]
            slot = count.clamp(max=d.shape[1] - 1)
            d[ar[new], slot[new]] = h[new]
            v[ar[new], slot[new]] = w[new.to(xi.device)]
            self._store(rows, d, v)
        return w

    def reset(self, rows: Tensor | Sequence[int]) -> None:
        """Forget the revealed points of ``rows`` (a slot handed to a new sample starts a new path)."""
        rows = self._rows(rows)
        if self._d.shape[1] and rows.numel():
            self._d[rows] = math.inf
            self._v[rows] = 0

    def advance(self, rows: Tensor | Sequence[int], h: Tensor, w: Tensor) -> None:
        """Accept steps: each sample in ``rows`` moves its origin to t - h, where its path took value w."""
        if self.mode == "fresh" or self._d.shape[1] == 0:
            return
        rows = self._rows(rows)
        h = torch.as_tensor(h, dtype=torch.float64).cpu().reshape(-1, 1)
        d = self._d[rows] - h
        v = self._v[rows] - w.unsqueeze(1).to(self._v.dtype)
        gone = ~(d > _HIT * h)
        d = torch.where(gone, torch.full_like(d, math.inf), d)
        v = torch.where(gone.to(v.device).reshape(gone.shape + (1,) * (v.ndim - 2)), torch.zeros_like(v), v)
        self._store(rows, d, v)
