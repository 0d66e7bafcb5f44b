"""Turns the library's progress events into a display on stderr.

The trainers and the search loop call ``callback(event)`` with plain dicts (see
``enastool.train.trainer`` and ``enastool.search.loop``); nothing in the library prints.
``ProgressReporter`` is such a callback:

- on a terminal: a rich progress bar per run (steps, ETA) with the latest figures beside it;
- when stderr is not a terminal (a log file, CI): one plain line per event;
- with ``quiet``: nothing.

Events: ``start`` (``total_steps``, ``start_step``, ``epochs``, ...), ``step`` and ``epoch``
(any numeric fields: loss, acc, ppl, reward, valid_acc, valid_ppl, images_per_s,
tokens_per_s, ...), ``done``. Unknown kinds are shown as plain lines.

Search additions: ``controller`` events (one per strategy update: enas's reward, valid_acc,
entropy, baseline, ``controller_step``; nao's pool scores, EPD losses and generation counts,
with an ``update`` naming the unit) refresh the figures beside the bar (a plain line
each when not on a terminal); on a terminal a second bar counts epochs when the run has more
than one (``epoch`` events carry the number of epochs done); a ``start`` event with a
``description`` prints that instead of the epochs/steps line.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Figures shown beside the bar, in this order, when an event carries them.
SHOWN = (
    ("epoch", "epoch", "{:.2f}"),
    ("loss", "loss", "{:.3f}"),
    ("acc", "acc", "{:.3f}"),
    ("ppl", "ppl", "{:.1f}"),
    ("reward", "reward", "{:.3f}"),
    ("valid_acc", "valid", "{:.3f}"),
    ("valid_ppl", "valid ppl", "{:.2f}"),
    ("test_accuracy", "test", "{:.4f}"),
    ("best_accuracy", "best", "{:.4f}"),
    ("test_ppl", "test ppl", "{:.2f}"),
    ("best_valid_ppl", "best valid ppl", "{:.2f}"),
    ("entropy", "entropy", "{:.2f}"),
    ("lr", "lr", "{:.2e}"),
    ("images_per_s", "img/s", "{:.0f}"),
    ("tokens_per_s", "tok/s", "{:.0f}"),
    ("baseline", "baseline", "{:.3f}"),
    ("skip_rate", "skips", "{:.2f}"),
    ("drop_rate", "drop", "{:.2f}"),
    ("pool_mean", "pool", "{:.3f}"),
    ("new_mean", "new", "{:.3f}"),
    ("epd_loss", "epd loss", "{:.4f}"),
    ("pairwise_accuracy", "pairwise", "{:.3f}"),
    ("hamming", "hamming", "{:.2f}"),
    ("found", "found", "{:.0f}"),
)


def describe(event: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    """The figures of an event as ``name value`` pairs (leaving out the keys in ``skip``)."""
    parts = []
    for key, label, fmt in SHOWN:
        if key in skip:
            continue
        value = event.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{label} {fmt.format(value)}")
    return "  ".join(parts)


class ProgressReporter:
    """A progress callback for one run; use as a context manager around the run."""

    def __init__(self, title: str, quiet: bool = False, console: Console | None = None):
        self.title = title
        self.quiet = quiet
        self.console = console or Console(stderr=True, highlight=False)
        self.live = not quiet and self.console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self._epoch_task = None
        self._figures = ""

    def __enter__(self) -> "ProgressReporter":
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[figures]}"),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind = event.get("kind", "event")
        if kind == "start":
            self._start(event)
        elif kind in ("step", "epoch"):
            self._update(event, plain=kind == "epoch")
            if kind == "epoch":
                self._update_epochs(event)
        elif kind == "controller":
            self._controller(event)
        elif kind == "done":
            self._line(f"{self.title}: done  {describe(event)}")
        else:
            self._line(f"{self.title}: {kind}  {describe(event)}")

    def _start(self, event: dict[str, Any]) -> None:
        total = int(event.get("total_steps") or 0)
        done = int(event.get("start_step") or 0)
        where = f" on {event['device']}" if event.get("device") else ""
        resumed = f", resuming at step {done}" if done else ""
        description = event.get("description")
        self._line(
            f"{self.title}: {description}" if description
            else f"{self.title}: {event.get('epochs', '?')} epochs, {total} steps{where}{resumed}"
        )
        if self._progress is not None:
            epochs = event.get("epochs")
            if isinstance(epochs, int) and epochs > 1:
                self._epoch_task = self._progress.add_task(
                    "epochs", total=epochs, completed=int(event.get("start_epoch") or 0), figures=""
                )
            self._task = self._progress.add_task(self.title, total=total or None, completed=done, figures="")

    def _update(self, event: dict[str, Any], plain: bool) -> None:
        figures = describe(event)
        if self._progress is not None and self._task is not None:
            if figures:
                self._figures = figures if not plain else self._figures
            step = event.get("step")
            if isinstance(step, int):
                self._progress.update(self._task, completed=step, figures=self._figures)
            if plain:
                self._line(f"{self.title}: epoch {event.get('epoch')}  {describe(event, skip=('epoch',))}")
        elif plain:  # an epoch event: its epoch number, not its step
            self._line(f"{self.title}: epoch {event.get('epoch')}  {describe(event, skip=('epoch',))}")
        else:
            self._line(f"{self.title}: {event.get('kind')} {event.get('step', '')}  {figures}")

    def _update_epochs(self, event: dict[str, Any]) -> None:
        epoch = event.get("epoch")
        if self._progress is not None and self._epoch_task is not None and isinstance(epoch, int):
            self._progress.update(self._epoch_task, completed=epoch)

    def _controller(self, event: dict[str, Any]) -> None:
        figures = describe(event, skip=("epoch",))
        if self._progress is not None and self._task is not None:
            updates = event.get("controller_updates")
            done = event.get("controller_step")
            if isinstance(event.get("update"), str):  # the strategy names its unit
                where = event["update"]
            elif isinstance(done, int) and isinstance(updates, int) and updates > 0:
                where = f"controller {(done - 1) % updates + 1}/{updates}"  # within this epoch
            else:
                where = "controller"
            self._figures = f"{where}  {figures}"
            self._progress.update(self._task, figures=self._figures)
        else:
            unit = f"  {event['update']}" if isinstance(event.get("update"), str) else ""
            self._line(f"{self.title}: controller {event.get('controller_step', '')}{unit}  {figures}")

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)  # log lines never wrap
