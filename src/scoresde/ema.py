"""Exponential moving average of network weights (Polyak averaging, as score_sde_pytorch's ExponentialMovingAverage)."""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """shadow <- decay * shadow + (1 - decay) * param after each optimiser step; buffers are copied.

    With ``warmup`` the decay is min(rate, (1 + n) / (10 + n)) after n updates, so short runs are
    not dominated by the initial weights.
    """

    def __init__(self, net: nn.Module, rate: float = 0.999, warmup: bool = True):
        if not 0 < rate < 1:
            raise ValueError(f"EMA rate must lie in (0, 1), got {rate}")
        self.rate, self.warmup = float(rate), bool(warmup)
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.num_updates = 0

    def decay(self) -> float:
        n = self.num_updates
        return min(self.rate, (1 + n) / (10 + n)) if self.warmup else self.rate

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        d = self.decay()
        for k, v in net.state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                s.copy_(v)
        self.num_updates += 1

    def copy_to(self, net: nn.Module) -> nn.Module:
        """A copy of ``net`` holding the averaged weights."""
        out = copy.deepcopy(net)
        out.load_state_dict(self.shadow)
        return out

    def state_dict(self) -> dict:
        return {"shadow": self.shadow, "num_updates": self.num_updates, "rate": self.rate, "warmup": self.warmup}

    def load_state_dict(self, state: dict) -> None:
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}
        self.num_updates = int(state["num_updates"])
