"""Seeded per-sample noise: sample i's stream depends on (seed, i) only, and is standard normal."""
from __future__ import annotations

import math

import pytest
import torch

from scoresde.brownian import BrownianPath, NoiseSource, SampleStreams, sample_seed

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


# ---- per-sample side streams and the re-queryable Brownian path ----------------------------


def test_side_stream_seeds():
    assert sample_seed(SEED, 3) == sample_seed(SEED, 3, 0)  # stream 0 is the original stream
    assert len({sample_seed(SEED, 3, k) for k in range(4)}) == 4
    src = NoiseSource(SEED, SHAPE, range(4), dtype=F64)
    side = src.substream(1)
    assert side.indices == src.indices and side.shape == SHAPE and side.dtype == F64
    with pytest.raises(ValueError, match="stream >= 1"):
        src.substream(0)


def test_sample_streams_advance_per_sample():
    """Sample i's k-th draw is the same whichever other samples drew in between, and whatever the batch."""
    alone = [torch.stack([SampleStreams(SEED, SHAPE, [i], dtype=F64).draw() for _ in range(1)])
             for i in range(5)]
    ref = [SampleStreams(SEED, SHAPE, [i], dtype=F64) for i in range(5)]
    ref_draws = [torch.cat([r.draw() for _ in range(100)]) for r in ref]  # (100, *SHAPE) each, > 1 block
    many = SampleStreams(SEED, SHAPE, range(5), dtype=F64)
    got = [[] for _ in range(5)]
    pattern = [[0, 1, 2, 3, 4], [1, 3], [4], [0, 2, 4], [3]] * 30
    for rows in pattern:
        z = many.draw(rows)
        for k, r in enumerate(rows):
            got[r].append(z[k])
    for i in range(5):
        g = torch.stack(got[i])
        assert torch.equal(g, ref_draws[i][: g.shape[0]])
        assert torch.equal(alone[i][0, 0], ref_draws[i][0])
    assert many.count.tolist() == [len(v) for v in got]
    with pytest.raises(ValueError, match="distinct"):
        many.draw([1, 1])


def _path(n, mode="bridge", seed=11):
    return BrownianPath(SampleStreams(seed, (1,), n, dtype=F64), mode)


def _h(v, n):
    return torch.full((n,), float(v), dtype=F64)


def test_bridge_draw_and_remainder_have_the_right_joint_law():
    """W over h, then a retry W' over h' < h: Var W' = h', Var(W - W') = h - h', Cov(W', W - W') = 0."""
    n, h, hp = 40000, 0.1, 0.03
    rows = torch.arange(n)
    p = _path(n)
    w = p.increment(rows, _h(h, n))[:, 0]
    wp = p.increment(rows, _h(hp, n))[:, 0]
    rem = w - wp
    assert abs(float(wp.var()) / hp - 1) < 5 * math.sqrt(2 / n)
    assert abs(float(rem.var()) / (h - hp) - 1) < 5 * math.sqrt(2 / n)
    assert abs(float(torch.corrcoef(torch.stack([wp, rem]))[0, 1])) < 5 / math.sqrt(n)
    # regression of W' on W is the bridge mean (h'/h) W
    slope = float((w * wp).mean() / (w * w).mean())
    assert abs(slope - hp / h) < 5 * math.sqrt(hp * (h - hp) / h / n) / math.sqrt(h)
    # after acceptance the remainder is what the path holds over [t - h, t - h']
    p.advance(rows, _h(hp, n), wp[:, None])
    torch.testing.assert_close(p.increment(rows, _h(h - hp, n))[:, 0], rem, rtol=0, atol=1e-12)
    # fresh mode: the retry is independent of the first draw
    q = _path(n, "fresh")
    w, wp = q.increment(rows, _h(h, n))[:, 0], q.increment(rows, _h(hp, n))[:, 0]
    assert abs(float(torch.corrcoef(torch.stack([w, wp]))[0, 1])) < 5 / math.sqrt(n)
    assert abs(float(wp.var()) / hp - 1) < 5 * math.sqrt(2 / n)


def _partition_increments(pattern, n, seed):
    """Run a query pattern [(h, accept), ...]; return the accepted increments (n, steps)."""
    p = _path(n, seed=seed)
    rows = torch.arange(n)
    out = []
    for h, accept in pattern:
        w = p.increment(rows, _h(h, n))
        if accept:
            p.advance(rows, _h(h, n), w)
            out.append(w[:, 0])
    return torch.stack(out, 1)


def test_partition_increments_do_not_depend_on_how_the_path_was_queried():
    """Increments over the partition 0.03 | 0.05 | 0.12 are independent N(0, dt) whatever was rejected before."""
    patterns = {
        "plain": [(0.03, True), (0.05, True), (0.12, True)],
        "one reject": [(0.2, False), (0.03, True), (0.05, True), (0.12, True)],
        "nested rejects": [(0.1, False), (0.06, False), (0.03, True), (0.05, True), (0.12, True)],
        "overshoot": [(0.04, False), (0.03, True), (0.17, False), (0.05, True), (0.15, False), (0.12, True)],
    }
    n = 30000
    dts = torch.tensor([0.03, 0.05, 0.12], dtype=F64)
    for k, (name, pat) in enumerate(patterns.items()):
        inc = _partition_increments(pat, n, seed=100 + k)
        cov = torch.cov(inc.T)
        assert torch.all((cov.diagonal() / dts - 1).abs() < 5 * math.sqrt(2 / n)), (name, cov)
        corr = torch.corrcoef(inc.T)
        off = corr[~torch.eye(3, dtype=torch.bool)]
        assert float(off.abs().max()) < 5 / math.sqrt(n), (name, corr)
        assert float(inc.mean(0).abs().div(dts.sqrt()).max()) < 5 / math.sqrt(n), name


def test_increments_add_up_over_revealed_points():
    """Consistency: pieces that cover a drawn interval add up to the increment drawn over it."""
    n = 50
    rows = torch.arange(n)
    p = _path(n, seed=3)
    w = p.increment(rows, _h(0.2, n))
    parts = []
    for h in (0.03, 0.05, 0.12):
        for retry in (h * 3, h * 1.5):  # rejected attempts first, beyond and inside the revealed point
            p.increment(rows, _h(retry, n))
        wi = p.increment(rows, _h(h, n))
        p.advance(rows, _h(h, n), wi)
        parts.append(wi)
    torch.testing.assert_close(sum(parts), w, rtol=0, atol=1e-12)
    assert int(p.revealed.max()) <= 3  # no point behind the current time is kept


def test_brownian_path_bad_input():
    with pytest.raises(ValueError, match="noise mode"):
        _path(2, "stale")
    with pytest.raises(ValueError, match="h > 0"):
        _path(2).increment([0, 1], _h(0.0, 2))
    with pytest.raises(ValueError, match="one step size per row"):
        _path(2).increment([0, 1], _h(0.1, 3))
