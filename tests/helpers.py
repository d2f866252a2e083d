"""Shared test helpers (importable from the test modules: pytest puts tests/ on sys.path)."""
from __future__ import annotations

import numpy as np
import torch

import scoresde as s
from scoresde.registry import SDES
from scoresde.samplers import sample

__all__ = ["SDES", "slope", "count_exact_calls", "assert_batch_invariant"]


def slope(ns, errs) -> float:
    """The fitted log-log slope of errors against step counts (the observed order is -slope)."""
    return float(np.polyfit(np.log(ns), np.log(errs), 1)[0])


def count_exact_calls(model: s.ExactScoreModel) -> dict[str, int]:
    """Count the closed-form score / denoiser evaluations of an exact model, independently of model.nfe."""
    calls = {"n": 0}
    for name in ("score", "denoised"):
        fn = getattr(model.problem, name)

        def counted(*a, _fn=fn, **k):
            calls["n"] += 1
            return _fn(*a, **k)

        setattr(model.problem, name, counted)
    return calls


def assert_batch_invariant(model: s.ExactScoreModel, sampler, **kw) -> None:
    """Sample i of seed S is identical whatever the batch size and number of samples; another seed differs."""
    f64 = torch.float64
    a = sample(model, 5, 11, sampler, (2,), batch_size=5, dtype=f64, **kw).samples
    b = sample(model, 13, 11, sampler, (2,), batch_size=4, dtype=f64, **kw).samples
    torch.testing.assert_close(a, b[:5], rtol=0, atol=0)
    c = sample(model, 5, 12, sampler, (2,), batch_size=5, dtype=f64, **kw).samples
    assert (a - c).abs().min() > 0
