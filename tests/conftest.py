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
