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


# A tiny language in Penn Treebank's file format (one sentence per line, lower case, words
# separated by spaces, numbers as N): structure a small network learns in a few steps.
_SUBJECTS = ("the cat", "a dog", "the old man", "my friend", "a small bird", "the child")
_VERBS = ("sees", "likes", "finds", "wants", "takes", "draws")
_OBJECTS = ("the ball", "a red box", "some bread", "the tall tree", "a book", "the fish")
_ENDINGS = ("", "", "today", "again", "in the park", "at home", "N times")
TINY_PTB_SENTENCES = {"train": 700, "valid": 120, "test": 120}


def _sentences(count: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        words = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_ENDINGS)]
        lines.append(" " + " ".join(w for w in words if w) + " ")  # PTB lines start with a space
    return lines


def write_tiny_ptb(folder: Path) -> Path:
    """ptb.{train,valid,test}.txt of the tiny language in ``folder`` (5,528 / 947 / 933 tokens
    with <eos>, 35 words; unigram test perplexity 26.4); returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (split, count) in enumerate(TINY_PTB_SENTENCES.items()):
        text = "".join(line + "\n" for line in _sentences(count, seed))
        (folder / f"ptb.{split}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_ptb(tmp_path_factory) -> Path:
    """A data directory holding the tiny PTB-format corpus (``--data-dir`` selects ptb)."""
    return write_tiny_ptb(tmp_path_factory.mktemp("ptb"))
