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


# Tiny final runs on digits (a few seconds each on one CPU thread), shared by the API, export,
# runs and plot tests. The micro run has what eval mode and export must switch off: dropout
# before the classifier, drop path and an auxiliary head; the macro run has dropout.
TINY_FINAL = dict(
    device="cpu", compile=False, channels_last=False, dtype="float32", channels=4,
    batch_size=64, epochs=2, lr_t0=2, log_every=5, eval_every=1, keep_prob=0.7,
)
FINAL_ARCHS = {
    "micro": MicroArch.from_ints([0, 0, 1, 2, 2, 4, 0, 1, 1, 3, 0, 0, 2, 1, 1, 2]),
    "macro": MacroArch.from_ints([1, 5, 1, 0, 1, 0]),
}
FINAL_EXTRA = {"micro": dict(layers=3, drop_path_keep=0.7, aux_weight=0.4), "macro": {}}


def train_tiny_final(path: Path, space: str) -> Path:
    """A finished final run of FINAL_ARCHS[space] in ``path``, with its status kept."""
    from enastool.config import resolve_final_config
    from enastool.runs import RunDir
    from enastool.train.trainer import train_final

    arch = FINAL_ARCHS[space]
    config = resolve_final_config("smoke", space, overrides={**TINY_FINAL, **FINAL_EXTRA[space]}, arch=arch)
    run = RunDir.create(path, config)
    with run.tracking():
        train_final(arch, config, run)
    return path


@pytest.fixture(scope="session")
def final_runs(tmp_path_factory) -> dict[str, Path]:
    """Finished tiny final runs by space (see TINY_FINAL); tests must not change them."""
    root = tmp_path_factory.mktemp("final-runs")
    return {space: train_tiny_final(root / space, space) for space in FINAL_ARCHS}


TINY_SEARCH = dict(
    device="cpu", dtype="float32", channels_last=False, channels=4, batch_size=128,
    epochs=2, controller_samples=2, controller_updates=3, log_every=3,
)


@pytest.fixture(scope="session")
def search_run(tmp_path_factory) -> Path:
    """A finished tiny ENAS search of the micro space on digits (seconds); do not change it."""
    from enastool.config import resolve_search_config
    from enastool.runs import RunDir
    from enastool.search.loop import search

    config = resolve_search_config("smoke", "micro", overrides={**TINY_SEARCH, "strategy": "enas"})
    run = RunDir.create(tmp_path_factory.mktemp("search-run") / "search", config)
    with run.tracking():
        search(config, run)
    return run.path


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
