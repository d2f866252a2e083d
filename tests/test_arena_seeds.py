"""The arena's several-seed bookkeeping: runs saved as JSON merge back to the same results; the summary's median."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.arena.base import Result  # noqa: E402
from benchmarks.arena.problems import PROBLEMS  # noqa: E402
from benchmarks.arena.seeds import SavedInstance, SavedSetup, SeedStats, load_runs, save_run, seed_stats  # noqa: E402


def _sweep(sampler: str, oks: list[bool], nfe0: int = 4) -> list[Result]:
    return [Result("gmm8", sampler, nfe0 * 2**i, f"{nfe0 * 2**i} steps", nfe0 * 2**i + 1, float(nfe0 * 2**i),
                   0.1, 0.05, {"tv": 0.01 * (i + 1), "spread": 1.0}, ok, {"rejected": i}) for i, ok in enumerate(oks)]


def test_saved_runs_merge_back_and_the_median_over_seeds(tmp_path):
    inst = SavedInstance(PROBLEMS["gmm8"], False, 100, "gmm8 title", SavedSetup(["a header line"]))
    runs = {0: {"a": [False, True, True], "b": [True, True]},     # a: 8, b: 4
            1: {"a": [False, False, True, True], "b": [False, True, True]},   # a: 16, b: 8
            2: {"a": [False, False, False], "b": [True, True]}}   # a: not reached (>16), b: 4
    paths = []
    for seed, sweeps in runs.items():
        by_seed = {seed: {"gmm8": {n: _sweep(n, oks) for n, oks in sweeps.items()}}}
        p = tmp_path / f"run{seed}.json"
        save_run(p, f"arena --seed {seed}", 1.5, [inst], by_seed, {}, {}, {}, [f"note {seed}"])
        paths.append(p)
    m = load_runs(paths)
    assert sorted(m.by_seed) == [0, 1, 2] and math.isclose(m.total, 4.5)
    assert m.by_seed[1]["gmm8"]["a"] == _sweep("a", runs[1]["a"])          # every field survives the round trip
    assert [i.name for i in m.instances] == ["gmm8"] and m.instances[0].setup.header == ["a header line"]
    a, b = seed_stats(m.by_seed, "gmm8", "a"), seed_stats(m.by_seed, "gmm8", "b")
    assert a.values == (8.0, 16.0, math.inf) and a.texts == ("8", "16", ">16")
    assert a.median == 16.0 and a.mean_sd is None and a.cell() == "16 (8 / 16 / >16)"
    assert b.median == 4.0 and b.mean_sd == "5 ± 2" and b.cell() == "4 (5 ± 2; 4 / 8 / 4)"
    assert seed_stats(m.by_seed, "gmm8", "a", "batch").values == (9.0, 17.0, math.inf)
    assert seed_stats(m.by_seed, "gmm8", "missing") is None
    # a median of misses is a miss, its text the sweep's
    assert SeedStats((math.inf, math.inf, 5.0), (">9", ">9", "5")).median_text == ">9"
    # the same (seed, problem) from two runs is an error, not a silent overwrite
    with pytest.raises(SystemExit, match="more than one"):
        load_runs([paths[0], paths[0]])
