"""Shared test set-up.

The suite runs on two CPU cores (CI) next to other work: every process it starts, this one and
the `enastool` subprocesses alike, uses one intra-op thread, which is faster there than
threads competing for the cores. Set before any test module imports torch.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from enastool.encoding import MacroArch, MicroArch  # noqa: E402
from enastool.encoding.textio import load_one  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="session")
def macro_final() -> MacroArch:
    """The authors' final 24-layer macro architecture (reference sec. 3)."""
    return load_one(FIXTURES / "macro_final.txt")


@pytest.fixture(scope="session")
def micro_final() -> MicroArch:
    """The authors' final micro architecture (reference sec. 3)."""
    return load_one(FIXTURES / "micro_final.txt")
