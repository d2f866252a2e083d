"""Seeded per-sample noise: sample i's stream depends on (seed, i) only, and is standard normal."""
from __future__ import annotations

import math

import pytest
import torch

from scoresde.brownian import NoiseSource, sample_seed

F64 = torch.float64
SEED, SHAPE, DRAWS = 1234, (3, 2), 40  # 40 draws > 2.5 blocks of 16


def _stream(src: NoiseSource, draws: int = DRAWS) -> torch.Tensor:
    """All draws stacked: (draws, batch, *shape)."""
    return torch.stack([src.draw() for _ in range(draws)])


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    """Each of samples 0..19 drawn alone: (draws, 20, *shape)."""
    return torch.cat([_stream(NoiseSource(SEED, SHAPE, [i], dtype=F64)) for i in range(20)], 1)


@pytest.mark.parametrize("start, stop", [(0, 1), (5, 6), (0, 3), (4, 7), (13, 20), (2, 9), (0, 20)])
def test_batch_invariance(reference, start, stop):
    src = NoiseSource(SEED, SHAPE, indices=range(start, stop), dtype=F64)
    assert src.batch_size == stop - start
    got = _stream(src)
    assert got.shape == (DRAWS, stop - start) + SHAPE and got.dtype == F64
    assert src.count == DRAWS
    assert torch.equal(got, reference[:, start:stop])


def test_int_indices_mean_range(reference):
    assert torch.equal(_stream(NoiseSource(SEED, SHAPE, 7, dtype=F64)), reference[:, :7])


def test_permuted_and_sparse_indices(reference):
    idx = [17, 3, 11]
    assert torch.equal(_stream(NoiseSource(SEED, SHAPE, idx, dtype=F64)), reference[:, idx])


def test_call_is_draw(reference):
    src = NoiseSource(SEED, SHAPE, range(2), dtype=F64)
    got = torch.stack([src() if k % 2 else src.draw() for k in range(DRAWS)])
    assert torch.equal(got, reference[:, :2])


def test_batch_invariance_with_another_block_size():
    """Batch invariance holds for any fixed block size."""
    one = [_stream(NoiseSource(SEED, SHAPE, [i], dtype=F64, block=5), 12) for i in range(4)]
    many = _stream(NoiseSource(SEED, SHAPE, range(4), dtype=F64, block=5), 12)
    assert torch.equal(many, torch.cat(one, 1))


def test_float32_streams_are_batch_invariant_too():
    a = _stream(NoiseSource(SEED, SHAPE, range(3, 6)), 20)
    b = torch.cat([_stream(NoiseSource(SEED, SHAPE, [i]), 20) for i in range(3, 6)], 1)
    assert a.dtype == torch.float32 and torch.equal(a, b)


def test_different_seeds_and_indices_give_different_streams(reference):
    other_seed = _stream(NoiseSource(SEED + 1, SHAPE, range(20), dtype=F64))
    assert not torch.isclose(other_seed, reference).any()
    # no two samples share a stream
    flat = reference.permute(1, 0, 2, 3).reshape(20, -1)
    for i in range(20):
        for j in range(i + 1, 20):
            assert not torch.isclose(flat[i], flat[j]).any()
    seeds = {sample_seed(s, i) for s in range(5) for i in range(200)}
    assert len(seeds) == 1000
    assert all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(SEED, 3) == sample_seed(SEED, 3)


def test_draws_are_standard_normal():
    n_samples, draws, shape = 50, 64, (25,)
    z = _stream(NoiseSource(99, shape, range(n_samples), dtype=F64), draws)  # (draws, samples, 25)
    flat = z.reshape(-1)
    n = flat.numel()  # 80 000
    assert abs(float(flat.mean())) <= 4 / math.sqrt(n)
    assert abs(float(flat.var()) - 1) <= 4 * math.sqrt(2 / n)
    # fourth moment of a standard normal is 3 (sd of z^4 is sqrt(96))
    assert abs(float((flat**4).mean()) - 3) <= 4 * math.sqrt(96 / n)
    # two samples' streams are uncorrelated, and so are consecutive draws of one sample
    per_sample = z.permute(1, 0, 2).reshape(n_samples, -1)  # (50, 1600)
    m = per_sample.shape[1]
    corr = torch.corrcoef(per_sample)
    off = corr[~torch.eye(n_samples, dtype=torch.bool)]
    assert float(off.abs().max()) <= 4.5 / math.sqrt(m)  # 2450 pairs: max of |N(0, 1/m)|
    assert abs(float(off.mean())) <= 4 / math.sqrt(m * off.numel() / 2)
    lag = (z[1:] * z[:-1]).mean()
    assert abs(float(lag)) <= 4 / math.sqrt(z[1:].numel())


def test_empty_batch():
    src = NoiseSource(SEED, SHAPE, [], dtype=F64)
    assert src.draw().shape == (0,) + SHAPE
