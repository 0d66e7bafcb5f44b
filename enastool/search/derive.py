"""Derive: propose architectures from a search run and rank them with its shared weights.

Both functions read the run's last.pt, which the search writes atomically, so they work on a
run that is still going (they see its latest checkpoint) or was interrupted. It is checked
against the supernet and strategy built from the run's config before use
(``enastool.checkpoints``).

Scoring (reference sec. 1, "derive"): the accuracy of each architecture on validation
minibatches with the shared weights, in eval mode, without grad. The minibatches are the
first ``batches`` of the validation split in its fixed order (no shuffling, no augmentation),
the same images for every architecture, so scores compare. Batch norm in a supernet uses
batch statistics (see ``enastool.nn.supernet``), so scores depend on the batch size: the
run's own ``batch_size`` is used.

Candidates: enas samples them from the trained controller, random and oneshot uniformly
(Bender et al. rank uniform samples with the one-shot weights). Equal architectures are
scored once; two micro architectures that differ only in the order of a block's two
branches compute the same function and count as equal (the first one drawn is kept).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from ..checkpoints import check_checkpoint
from ..data import DeviceLoader
from ..encoding.macro import MacroArch
from ..errors import EnasError
from ..runs import LAST_CHECKPOINT as LAST
from ..runs import RunDir
from ..train.device import autocast, autocast_dtype, resolve_device
from .loop import CHECKPOINT_VERSION, RUN_KIND, build_supernet, run_expectations, search_data
from .strategies import Strategy, build_strategy

Callback = Callable[[dict], None]


def open_search_run(run: RunDir | str | Path) -> RunDir:
    """A search run directory (a RunDir is passed through after checking its kind)."""
    if isinstance(run, RunDir):
        if run.kind != RUN_KIND:
            raise EnasError(f"{run.path} is a {run.kind} run, expected a {RUN_KIND} run")
        return run
    return RunDir.open(run, kind=RUN_KIND)


def _load_state(run: RunDir, supernet: torch.nn.Module, network: dict, strategy: Strategy | None = None) -> dict:
    """last.pt, checked against the supernet (and strategy) built from the run's config."""
    if not run.has_checkpoint(LAST):
        raise EnasError(
            f"{run.path}: no {LAST} yet; a search writes it at the end of its first epoch "
            "(or when interrupted): wait for it, or resume the run"
        )
    state = run.load_checkpoint(LAST)
    template = {"supernet": supernet.state_dict()}
    if strategy is not None and run.config.strategy == "enas":  # derive reads only its controller
        template["strategy"] = {"controller": strategy.state_dict()["controller"]}
    check_checkpoint(state, run.checkpoint_path(LAST), kind=RUN_KIND, version=CHECKPOINT_VERSION,
                     expected=run_expectations(run.config, network), template=template)
    return state


def _shared_weights(run: RunDir, strategy: Strategy | None = None):
    """(supernet with the run's shared weights, validation split, data info, checkpoint)."""
    config = run.config
    _, valid, info = search_data(config)
    supernet = build_supernet(config, info.channels, info.num_classes)
    network = {"in_channels": info.channels, "num_classes": info.num_classes}
    state = _load_state(run, supernet, network, strategy)
    supernet.load_state_dict(state["supernet"])
    return supernet, valid, info, state


def check_archs(run: RunDir, archs: Sequence) -> None:
    """EnasError naming the first architecture the run's supernet cannot run."""
    config = run.config
    for number, arch in enumerate(archs, start=1):
        space = getattr(arch, "space", None)
        if space != config.space:
            raise EnasError(
                f"architecture {number} is a {space or type(arch).__name__} architecture, but "
                f"{run.path} searched the {config.space} space"
            )
        if space == MacroArch.space and arch.num_layers != config.layers:
            raise EnasError(
                f"architecture {number} has {arch.num_layers} layers, but {run.path} searched "
                f"{config.layers}-layer macro networks"
            )
        if space != MacroArch.space and arch.num_blocks != config.num_blocks:
            raise EnasError(
                f"architecture {number} has {arch.num_blocks} blocks per cell, but {run.path} "
                f"searched {config.num_blocks}-block micro cells"
            )


def score_architectures(
    run: RunDir | str | Path,
    archs: Sequence,
    batches: int | None = None,
    device: str = "auto",
    callback: Callback | None = None,
) -> list[float]:
    """Validation accuracy of each of ``archs`` with the shared weights of search ``run``.

    ``batches`` validation minibatches (None: the whole validation split). ``callback``
    receives ``start``, one ``step`` per architecture and ``done`` events.
    """
    run = open_search_run(run)
    check_archs(run, archs)
    _check_batches(batches)
    supernet, valid, info, _ = _shared_weights(run)
    return _score(run, supernet, valid, info, list(archs), batches, device, callback)


def _check_batches(batches: int | None) -> None:
    if batches is not None and batches < 1:
        raise EnasError(f"--batches {batches}: must be at least 1 (leave it out for the whole split)")


def _score(run: RunDir, supernet: torch.nn.Module, valid, info, archs: list, batches: int | None,
           device_name: str, callback: Callback | None) -> list[float]:
    config = run.config
    device = resolve_device(device_name)
    dtype = autocast_dtype(config, device, training=False)
    supernet.to(device).eval()
    loader = DeviceLoader(*valid, batch_size=config.batch_size, device=device, mean=info.mean,
                          std=info.std, train=False, drop_last=False)
    data = []
    for x, y in loader:
        if batches is not None and len(data) == batches:
            break
        data.append((x, y))
    images = sum(y.shape[0] for _, y in data)
    emit = callback or (lambda event: None)
    emit({"kind": "start", "total_steps": len(archs), "device": str(device), "images": images,
          "description": f"scoring {len(archs)} architectures on {images} validation images"})
    correct = []
    with torch.no_grad():
        for number, arch in enumerate(archs, start=1):
            total = torch.zeros((), dtype=torch.int64, device=device)
            for x, y in data:
                with autocast(device, dtype):
                    logits = supernet(x, arch)
                total += (logits.argmax(dim=1) == y).sum()
            correct.append(total)
            emit({"kind": "step", "step": number})
    scores = [c / images for c in torch.stack(correct).tolist()] if correct else []
    emit({"kind": "done", "step": len(archs), "images": images})
    return scores


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
    """
    run = open_search_run(run)
    config = run.config
    samples = config.derive_samples if samples is None else samples
    batches = config.derive_batches if batches is None else batches
    if samples < 1:
        raise EnasError(f"--samples {samples}: must be at least 1")
    if top is not None and top < 1:
        raise EnasError(f"--top {top}: must be at least 1")
    _check_batches(batches)
    strategy = build_strategy(config, torch.device("cpu"))
    supernet, valid, info, state = _shared_weights(run, strategy)
    if config.strategy == "enas":
        strategy.load_state_dict({"controller": state["strategy"]["controller"]})
    candidates = _distinct(strategy.propose(samples, config.seed if seed is None else seed))
    scores = _score(run, supernet, valid, info, candidates, batches, device, callback)
    ranked = sorted(zip(candidates, scores), key=lambda pair: -pair[1])
    return ranked if top is None else ranked[:top]


def _distinct(archs: list) -> list:
    """``archs`` without repeats (equal up to the order of a block's branches), first kept."""
    seen, kept = set(), []
    for arch in archs:
        key = arch.canonical()
        if key not in seen:
            seen.add(key)
            kept.append(arch)
    return kept
