"""Derive: propose architectures from a search run and rank them with its shared weights.

Both functions read the run's last.pt, which the search writes atomically, so they work on a
run that is still going (they see its latest checkpoint) or was interrupted. It is checked
against the supernet and strategy built from the run's config before use
(``enastool.checkpoints``).

Scoring (reference sec. 1, "derive"), by the run's task (``tasks``; text: 80 / validation
perplexity, see ``TextTask``). Images: the accuracy of each architecture on validation
minibatches with the shared weights, in eval mode, without grad. The minibatches are the
first ``batches`` of the validation split in its fixed order (no shuffling, no augmentation),
the same images for every architecture, so scores compare. Batch norm in a supernet uses
batch statistics (see ``enastool.nn.supernet``), so scores depend on the batch size: the
run's own ``batch_size`` is used.

Candidates: enas samples them from the trained controller, random and oneshot uniformly
(Bender et al. rank uniform samples with the one-shot weights). Equal architectures are
scored once; two micro architectures that differ only in the order of a block's two
branches compute the same function and count as equal (the first one drawn is kept).

A strategy that keeps a ranking of its own (``Strategy.ranking``; nao: the pool scored with
the shared weights at its last evaluation point) is ranked as it is, without sampling or
scoring again, and without building the supernet; ``predicted_scores`` gives its learnt
predictor's score of any architectures beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from ..checkpoints import check_checkpoint
from ..errors import EnasError
from ..runs import LAST_CHECKPOINT as LAST
from ..runs import RunDir
from ..train.device import resolve_device, resolve_placement
from .loop import CHECKPOINT_VERSION, run_expectations
from .strategies import STRATEGIES, Strategy, build_strategy
from .tasks import RUN_KIND, SearchTask, build_task, check_archs

Callback = Callable[[dict], None]
STRATEGY_DEVICE = torch.device("cpu")  # derive reads a strategy's state on the host


def open_search_run(run: RunDir | str | Path) -> RunDir:
    """A search run directory (a RunDir is passed through after checking its kind)."""
    if isinstance(run, RunDir):
        if run.kind != RUN_KIND:
            raise EnasError(f"{run.path} is a {run.kind} run, expected a {RUN_KIND} run")
        return run
    return RunDir.open(run, kind=RUN_KIND)


def _load_state(run: RunDir, task: SearchTask | None, strategy: Strategy | None = None) -> dict:
    """last.pt, checked against the task (supernet; None: not read) and strategy built from
    the run's config."""
    if not run.has_checkpoint(LAST):
        raise EnasError(
            f"{run.path}: no {LAST} yet; a search writes it at the end of its first epoch "
            "(or when interrupted): wait for it, or resume the run"
        )
    state = run.load_checkpoint(LAST)
    template, expected = {}, run_expectations(run.config, task.network if task is not None else None)
    if task is not None:
        template["supernet"] = task.supernet.state_dict()
    else:
        del expected["network"]
    if strategy is not None:
        template["strategy"] = strategy.state_dict()
    check_checkpoint(state, run.checkpoint_path(LAST), kind=RUN_KIND, version=CHECKPOINT_VERSION,
                     expected=expected, template=template)
    return state


def _trained_strategy(run: RunDir) -> Strategy:
    """The run's strategy with the state of its last.pt (on the CPU; no supernet is built)."""
    strategy = build_strategy(run.config, STRATEGY_DEVICE)
    strategy.load_state_dict(_load_state(run, None, strategy)["strategy"])
    return strategy


def _shared_weights(run: RunDir, device_name: str, strategy: Strategy | None = None):
    """(task whose supernet holds the run's shared weights, in eval mode; the checkpoint)."""
    config = run.config
    placement = resolve_placement(config, resolve_device(device_name), training=False)
    task = build_task(config, placement.device, placement.dtype, placement.channels_last)
    placement.prepare(task.supernet)
    state = _load_state(run, task, strategy)
    task.supernet.load_state_dict(state["supernet"])
    task.supernet.eval()
    return task, state


def score_architectures(
    run: RunDir | str | Path,
    archs: Sequence,
    batches: int | None = None,
    device: str = "auto",
    callback: Callback | None = None,
) -> list[float]:
    """The score of each of ``archs`` with the shared weights of search ``run`` (validation
    accuracy; rnn: 80 / validation perplexity, see ``tasks.score_figures``).

    ``batches`` validation minibatches (None: the whole validation split). ``callback``
    receives ``start``, one ``step`` per architecture and ``done`` events.
    """
    run = open_search_run(run)
    check_archs(run.config, archs, str(run.path))
    _check_batches(batches)
    task, _ = _shared_weights(run, device)
    return _score(task, list(archs), batches, callback)


def _check_batches(batches: int | None) -> None:
    if batches is not None and batches < 1:
        raise EnasError(f"--batches {batches}: must be at least 1 (leave it out for the whole split)")


def _score(task: SearchTask, archs: list, batches: int | None, callback: Callback | None) -> list[float]:
    data = task.score_data(batches)
    emit = callback or (lambda event: None)
    emit({"kind": "start", "total_steps": len(archs), "device": str(task.device),
          "description": f"scoring {len(archs)} architectures on {task.describe_score_data(data)}"})
    results = task.scores(archs, data, callback=emit)
    emit({"kind": "done", "step": len(archs)})
    return [r["score"] for r in results]


def derive(
    run: RunDir | str | Path,
    samples: int | None = None,
    top: int | None = None,
    batches: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    callback: Callback | None = None,
) -> list[tuple[object, float]]:
    """The best of ``samples`` proposed architectures as (arch, score), best first.

    ``samples`` and ``batches`` default to the run's ``derive_samples`` and ``derive_batches``
    (None: the whole validation split); ``top`` None keeps every distinct candidate; ``seed`` (default: the run's
    seed) seeds the proposals, so a derive is repeatable. Ties keep the order of drawing.

    A strategy with a ranking of its own (nao) is ranked as it keeps it: ``samples``,
    ``batches`` and ``seed`` do not apply to it (given, they are refused) and nothing is scored.
    """
    run = open_search_run(run)
    config = run.config
    if top is not None and top < 1:
        raise EnasError(f"--top {top}: must be at least 1")
    if STRATEGIES[config.strategy].ranking_note is not None:
        given = [f"--{name}" for name, value in (("samples", samples), ("batches", batches), ("seed", seed))
                 if value is not None]
        if given:
            raise EnasError(
                f"{' and '.join(given)}: not for a {config.strategy} run, whose derive ranks "
                f"{STRATEGIES[config.strategy].ranking_note}; drop {'them' if len(given) > 1 else 'it'}"
            )
        try:
            ranked = _trained_strategy(run).ranking()
        except EnasError as e:
            raise EnasError(f"{run.path}: {e}") from None
        return ranked if top is None else ranked[:top]
    samples = config.derive_samples if samples is None else samples
    batches = config.derive_batches if batches is None else batches
    if samples < 1:
        raise EnasError(f"--samples {samples}: must be at least 1")
    _check_batches(batches)
    strategy = build_strategy(config, STRATEGY_DEVICE)
    task, state = _shared_weights(run, device, strategy)
    strategy.load_state_dict(state["strategy"])
    candidates = _distinct(strategy.propose(samples, config.seed if seed is None else seed))
    scores = _score(task, candidates, batches, callback)
    ranked = sorted(zip(candidates, scores), key=lambda pair: -pair[1])
    return ranked if top is None else ranked[:top]


def predicted_scores(run: RunDir | str | Path, archs: Sequence) -> list[float]:
    """The score the run's learnt predictor gives each of ``archs`` (nao: the EPD's predictor,
    in (0, 1): the shared-weight score min-max normalised over the pool it last trained on).
    EnasError for a strategy without a predictor, or one not trained yet."""
    run = open_search_run(run)
    check_predictor(run)
    check_archs(run.config, archs, str(run.path))
    try:
        return _trained_strategy(run).predict(list(archs))
    except EnasError as e:
        raise EnasError(f"{run.path}: {e}") from None


def check_predictor(run: RunDir) -> None:
    """EnasError unless the strategy of search ``run`` learns a predictor (before any work)."""
    with_one = [name for name, cls in STRATEGIES.items() if cls.predict is not Strategy.predict]
    if run.config.strategy not in with_one:
        raise EnasError(
            f"{run.path}: strategy {run.config.strategy} has no predictor; only "
            f"{', '.join(with_one)} runs train one"
        )


def _distinct(archs: list) -> list:
    """``archs`` without repeats (equal up to the order of a block's branches), first kept."""
    seen, kept = set(), []
    for arch in archs:
        key = arch.canonical()
        if key not in seen:
            seen.add(key)
            kept.append(arch)
    return kept
