"""Learning-rate schedule: cosine annealing with warm restarts (SGDR), as a pure function.

The rate depends only on the (fractional) epoch, never on a stateful scheduler object, so a
resumed run sets exactly the rate it would have had: resume needs nothing but the step count.
Cycle i lasts t0 * tmul**i epochs; with the authors' t0=10, tmul=2 the restarts fall on
epochs 10, 30, 70, 150, 310, 630 (reference sec. 4), which is why their runs last 310 or 630
epochs: training ends exactly when a cycle reaches lr_min.

The authors' code updates the rate once per whole epoch; here it moves every step (fractional
epoch), which follows the same curve without the staircase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CosineWarmRestarts:
    lr_max: float
    lr_min: float
    t0: float = 10
    tmul: float = 2

    def __post_init__(self) -> None:
        if not 0 <= self.lr_min <= self.lr_max:
            raise ValueError(f"need 0 <= lr_min <= lr_max, got {self.lr_min}, {self.lr_max}")
        if self.t0 <= 0 or self.tmul < 1:
            raise ValueError(f"need t0 > 0 and tmul >= 1, got {self.t0}, {self.tmul}")

    @classmethod
    def from_config(cls, config: Any) -> "CosineWarmRestarts":
        """From any config with ``lr_max``, ``lr_min``, ``lr_t0`` and ``lr_tmul``."""
        return cls(config.lr_max, config.lr_min, config.lr_t0, config.lr_tmul)

    def cycle_start(self, index: int) -> float:
        """The epoch at which cycle ``index`` (0-based) begins."""
        if self.tmul == 1:
            return self.t0 * index
        return self.t0 * (self.tmul**index - 1) / (self.tmul - 1)

    def cycle_length(self, index: int) -> float:
        return self.t0 * self.tmul**index

    def cycle_at(self, epoch: float) -> int:
        """The 0-based index of the cycle containing ``epoch`` (a restart epoch opens a cycle)."""
        if epoch < 0:
            raise ValueError(f"epoch must not be negative, got {epoch}")
        if self.tmul == 1:
            index = int(epoch // self.t0)
        else:
            index = int(math.log(1 + epoch * (self.tmul - 1) / self.t0, self.tmul))
        # The logarithm may land one off at an exact boundary: settle it with exact sums.
        while index > 0 and self.cycle_start(index) > epoch:
            index -= 1
        while self.cycle_start(index + 1) <= epoch:
            index += 1
        return index

    def restarts(self, until: float) -> list[float]:
        """Epochs (> 0, <= ``until``) at which the rate jumps back to lr_max."""
        found, index = [], 1
        while self.cycle_start(index) <= until:
            found.append(self.cycle_start(index))
            index += 1
        return found

    def lr_at(self, epoch: float) -> float:
        """The learning rate at fractional ``epoch`` (e.g. step / steps_per_epoch)."""
        index = self.cycle_at(epoch)
        progress = (epoch - self.cycle_start(index)) / self.cycle_length(index)
        return self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: Any, lr: float) -> None:
    """Set the learning rate of every parameter group of a torch optimizer."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def apply_schedule(
    optimizer: Any, schedule: CosineWarmRestarts, step: int, steps_per_epoch: int
) -> float:
    """Set the rate for global ``step`` (0-based, counted over the whole run) and return it.

    Call it before each optimizer step; it keeps no state, so after a resume the same call
    with the restored step gives the same rate.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    lr = schedule.lr_at(step / steps_per_epoch)
    set_lr(optimizer, lr)
    return lr
