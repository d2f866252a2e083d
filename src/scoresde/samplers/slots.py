"""Slots of a per-sample adaptive solver's batch: which sample each slot holds, its counters, its finished results, and
refilling a finished slot with the next sample of a stream, so a batch of B keeps B live samples until the stream
runs out (the batched calls per sample then approach the per-sample NFE).

Sample i's start x_T is the first draw of its own seeded stream and its Brownian path comes from its own side stream,
both keyed by (seed, i) alone (:mod:`scoresde.brownian`), so a sample is the same whichever slot or batch runs it.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from ..brownian import BrownianPath, NoiseSource, SampleStreams
from ..parameterization import ScoreModel
from ..seeding import BROWNIAN
from .controller import ControllerState, StepSizeController

__all__ = ["Feed", "Slots", "stream_start"]

#: the (index, x_T) pairs of samples waiting for a slot
Feed = Iterator[tuple[int, Tensor]]


def stream_start(model: ScoreModel, num: int, seed: int, shape: Sequence[int], batch_size: int, dtype: torch.dtype,
                 device: str | torch.device, start_index: int, brownian: bool
                 ) -> tuple[Tensor, list[int], Feed, SampleStreams | None]:
    """The first batch (x_T of samples start_index.. up to batch_size), its indices, the feed of the rest and the
    slots' Brownian side streams (None when the solver draws no noise)."""
    if num < 1 or batch_size < 1:
        raise ValueError("num and batch_size must be >= 1")
    shape = tuple(int(s) for s in shape)

    def start(i: int) -> Tensor:
        return model.sde.prior_sample(NoiseSource(seed, shape, [i], dtype=dtype, device=device).draw())[0]

    first = list(range(start_index, start_index + min(batch_size, num)))
    x = torch.stack([start(i) for i in first])
    feed = ((i, start(i)) for i in range(start_index + len(first), start_index + num))
    streams = SampleStreams(seed, shape, first, stream=BROWNIAN, dtype=dtype, device=device) if brownian else None
    return x, first, feed, streams


class Slots:
    """Per-slot bookkeeping of a batch: ``index[row]`` the sample a slot holds, ``calls`` / ``accepted`` /
    ``rejected`` its counters, ``live`` which slots still integrate; finished samples in ``out`` / ``stats``."""

    def __init__(self, indices: Sequence[int], feed: Feed | None = None, streams: SampleStreams | None = None,
                 path: BrownianPath | None = None, controller: StepSizeController | None = None):
        n = len(indices)
        self.index = [int(i) for i in indices]
        self.feed, self.streams, self.path, self.controller = feed, streams, path, controller
        self.calls = torch.zeros(n, dtype=torch.long)
        self.accepted = torch.zeros(n, dtype=torch.long)
        self.rejected = torch.zeros(n, dtype=torch.long)
        self.live = torch.ones(n, dtype=torch.bool)
        self.out: dict[int, Tensor] = {}
        self.stats: dict[int, tuple[int, int, int]] = {}

    def finish(self, row: int, result: Tensor | None, ctrl: ControllerState, extra_calls: int = 0
               ) -> tuple[tuple[int, Tensor] | None, ControllerState, tuple[int, tuple[int, int, int]]]:
        """Slot ``row``'s sample is done (``result`` stored unless None: the solver denoises it later).

        Returns (the next (index, x_T) installed in the slot, or None when the feed is empty and the slot goes idle;
        the controller state with the slot reset; (the finished index, its (calls, accepted, rejected))).
        """
        idx = self.index[row]
        done = (int(self.calls[row]) + extra_calls, int(self.accepted[row]), int(self.rejected[row]))
        if result is not None:
            self.out[idx], self.stats[idx] = result, done
        nxt = next(self.feed, None) if self.feed is not None else None
        if nxt is None:
            self.live[row] = False
            return None, ctrl, (idx, done)
        new, _ = nxt
        self.index[row] = int(new)
        self.calls[row] = self.accepted[row] = self.rejected[row] = 0
        rows = torch.tensor([row])
        if self.controller is not None:
            ctrl = self.controller.reset(ctrl, rows)
        if self.path is not None and self.streams is not None:
            self.streams.reassign(row, new)
            self.path.reset(rows)
        return nxt, ctrl, (idx, done)

    def store(self, idx: int, result: Tensor, done: tuple[int, int, int]) -> None:
        self.out[idx], self.stats[idx] = result, done

    def result(self, empty: Tensor) -> tuple[Tensor, Tensor, dict]:
        """(samples by sample index, NFE per sample, info with accepted / rejected totals and per sample)."""
        order = sorted(self.out)
        samples = torch.stack([self.out[i] for i in order]) if order else empty[:0]
        per, acc, rej = (torch.tensor([self.stats[i][k] for i in order], dtype=torch.long) for k in range(3))
        info = {"accepted": int(acc.sum()), "rejected": int(rej.sum()), "accepted_per_sample": acc,
                "rejected_per_sample": rej, "indices": order}
        return samples, per, info


def in_batch_order(samples: Tensor, per: Tensor, info: dict, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Results keyed by sample index put back in the batch's row order (``info``'s per-sample entries too)."""
    pos = {idx: j for j, idx in enumerate(info["indices"])}
    order = torch.tensor([pos[i] for i in indices], dtype=torch.long)
    for k in ("accepted_per_sample", "rejected_per_sample"):
        info[k] = info[k][order]
    info["indices"] = list(indices)
    return samples[order], per[order]
