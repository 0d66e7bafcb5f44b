"""The interface every search strategy implements (the strategies: ``strategies.py``, ``nao.py``).

The search loop asks a strategy for the child of each shared-weight step (``child``), the
logits of that step (``logits``), whether an update is due after an epoch's steps
(``update_due(epoch, done)``) and, while one is, to make it (``update(task)``: the task gives
rewards and scores with the shared weights, see ``tasks``). Each update is one resumable unit:
the loop polls for an interrupt between units and checkpoints there, so a strategy whose
``state_dict`` holds everything resumes exactly from any unit.

Derive asks it for candidates (``propose``), which the task scores, unless the strategy keeps
a ranking of its own (``ranking``: nao ranks the pool it scored last). Hooks with a default
that does nothing: ``prepare(task)`` (check, before a run directory exists, that the task can
give what the strategy needs) and ``attach(run)`` (for a strategy that keeps files of its own
in the run directory). Kept apart from ``strategies.py`` so that a strategy in a sibling module
(``nao.py``) subclasses it without an import cycle.
"""

from __future__ import annotations

import random
from typing import ClassVar

import torch

from ..encoding.spaces import Arch
from .tasks import uniform_arch


def random_state(rng: random.Random) -> list:
    """A ``random.Random`` state as plain lists and ints (loadable with weights_only=True)."""
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def set_random_state(rng: random.Random, state: list) -> None:
    version, internal, gauss_next = state
    rng.setstate((version, tuple(internal), gauss_next))


class Strategy:
    """What the search loop needs from a strategy (the base is the weight-sharing default)."""

    name: ClassVar[str]
    updates_per_epoch: int = 0  # updates after each epoch's steps, for display (0: none, or varies)
    # What derive ranks when the strategy keeps its own ranking (None: derive samples candidates
    # with ``propose`` and scores them), in words for its table.
    ranking_note: ClassVar[str | None] = None

    def __init__(self, config, device: torch.device):
        self.config = config
        self.device = device

    def prepare(self, task) -> None:
        """Check (and keep) what the strategy needs from the run's task, once it is built and
        before the run directory is made; raise EnasError for what the settings cannot give."""

    def attach(self, run) -> None:
        """The run directory, before the first step of every start and resume (after the
        state is restored). A strategy that keeps files of its own there (nao: pool.jsonl)
        drops what its state has not reached: what a hard stop after the checkpoint wrote."""

    def child(self) -> Arch | None:
        """The architecture of the next shared-weight step (None: every path runs)."""
        raise NotImplementedError

    def logits(self, supernet: torch.nn.Module, x: torch.Tensor, child: Arch | None, epoch: float) -> torch.Tensor:
        """The supernet's logits for one step at fractional ``epoch``."""
        return supernet(x, child)

    def step_figures(self, epoch: float) -> dict:
        """Extra fields of a step record."""
        return {}

    def update_due(self, epoch: int, done: int) -> bool:
        """Whether another update is due after the steps of ``epoch`` (0-based), ``done`` of
        them made already. The default: ``updates_per_epoch`` updates after every epoch."""
        return done < self.updates_per_epoch

    def update(self, task) -> dict:
        """One update after the shared-weight steps; returns its figures (a metrics record).
        ``task`` rewards and scores architectures with the shared weights (``tasks``). An
        optional ``update`` field names the unit for progress displays (e.g. "epd 10/1000")."""
        raise NotImplementedError(f"strategy {self.name} has no updates")

    def propose(self, count: int, seed: int) -> list[Arch]:
        """``count`` candidate architectures for derive, from a generator seeded by ``seed``."""
        rng = random.Random(seed)
        return [uniform_arch(self.config, rng) for _ in range(count)]

    def ranking(self) -> list[tuple[Arch, float]] | None:
        """The strategy's own ranking for derive, (arch, score) best first; None when it keeps
        none (then derive scores ``propose``'s candidates). Only with ``ranking_note`` set."""
        return None

    def predict(self, archs: list[Arch]) -> list[float] | None:
        """A learnt model's predicted score of each of ``archs``; None when there is none."""
        return None

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError
