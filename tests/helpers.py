"""Helpers shared by the test modules (imported as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

import torch


class Countdown:
    """Stands in for GracefulInterrupt: reports an interrupt from its ``at``-th poll on (the
    loops poll after every step and update, and after each epoch end)."""

    def __init__(self, at: int):
        self.at, self.polls = at, 0

    @property
    def interrupted(self) -> bool:
        self.polls += 1
        return self.polls >= self.at


def assert_same(a, b, where: str = "state") -> None:
    """``a`` and ``b`` (nested dicts, lists, tensors, numbers) equal, tensors bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    else:
        assert a == b, f"{where} differs"
