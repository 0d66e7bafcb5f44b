"""Turns the library's progress events into a display on stderr.

The trainers and the search loop call ``callback(event)`` with plain dicts (see
``enastool.train.trainer`` and ``enastool.search.loop``); nothing in the library prints.
``ProgressReporter`` is such a callback:

- on a terminal: from the first instant a "loading" line with a spinner and a clock (torch,
  the data and the network take seconds to tens of seconds to load), then one bar per run
  (steps) and, when the run has more than one epoch, a second bar counting epochs. Each bar's
  row holds its count, the elapsed time and the ETA; the latest figures (loss, accuracy, ...)
  are a line of their own below the bars, cut at the terminal's width, so that at 80 columns
  nothing squeezes the bar, the counts or the times;
- when stderr is not a terminal (a log file, CI): one plain line per logged step, epoch and
  controller update, each with the elapsed time and the ETA;
- with ``quiet``: nothing.

The ETA is the elapsed time since the run's ``start`` event times what remains over what was
done since then: the whole run's average pace, not rich's 30-second speed window (shorter than
an epoch, so the epochs bar never had one). A resumed run counts from where it resumed.

Events: ``start`` (``total_steps``, ``start_step``, ``epochs``, ``steps_per_epoch``,
``start_epoch``, ``device``, ...; with a ``description`` that line is printed instead of the
epochs/steps line), ``tick`` (one per training step, ``step`` only: moves the bars, prints
nothing), ``step`` and ``epoch`` (any numeric fields: loss, acc, ppl, reward, valid_acc,
valid_ppl, images_per_s, tokens_per_s, ...), ``controller`` (one per strategy update: enas's
reward, valid_acc, entropy, baseline, ``controller_step``, ``controller_updates``; nao's pool
scores, EPD losses and generation counts, with an ``update`` naming the unit), ``checkpoint``
(not shown: one per epoch is noise), ``done``. Unknown kinds are shown as plain lines.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.spinner import Spinner
from rich.table import Column
from rich.text import Text

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
HIDDEN = ("checkpoint",)  # event kinds the display leaves out
LOADING = "loading torch, the data and the network"
EPOCHS_ROW = "epochs"
# Widths on the bar rows. The title is cut to TITLE_WIDTH; the bar gets what is left, at
# least BAR_MIN_WIDTH: at 80 columns a 24-character title, a 6+6-digit count and two clocks
# leave it about 25.
TITLE_WIDTH = 24
BAR_MIN_WIDTH = 10
COLUMN_GAPS = 3  # one space between each of the four columns
REFRESH_PER_SECOND = 8
UNKNOWN_TIME = "-:--:--"


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


def clock(seconds: float | None) -> str:
    """``H:MM:SS`` (rich's style), or ``-:--:--`` when not known."""
    if seconds is None:
        return UNKNOWN_TIME
    minutes, secs = divmod(int(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def eta_seconds(elapsed: float, done: float, origin: float, total: float | None) -> float | None:
    """Seconds left at the average pace since the start: ``elapsed`` seconds did
    ``done - origin`` units; None before the first unit or without a total."""
    if not total:
        return None
    if done >= total:
        return 0.0
    if done <= origin or elapsed <= 0:
        return None
    return elapsed * (total - done) / (done - origin)


class TimesColumn(ProgressColumn):
    """``0:01:23 eta 0:04:56``: the task's elapsed time and its ETA from the whole elapsed time.

    The ETA compares the task's count (fractional for the epochs bar: epochs done as a
    fraction, moved by every step) with its ``origin`` field, the count when this process
    started it: a resumed run's pace counts from the resume."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        eta = eta_seconds(elapsed, task.completed, task.fields.get("origin", 0), task.total)
        return Text(f"{clock(elapsed)} eta {clock(eta)}", style="progress.remaining", no_wrap=True)


class Loading:
    """A spinner, ``title: what is loading`` and a clock, until the run starts."""

    def __init__(self, title: str, what: str = LOADING):
        self.title = title
        self.what = what
        self.started = time.perf_counter()
        self.spinner = Spinner("dots")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        now = time.perf_counter()
        line = Text.assemble(
            self.spinner.render(now), " ", (self.title, "bold"), f": {self.what}... ",
            (clock(now - self.started), "progress.elapsed"),
            no_wrap=True, overflow="ellipsis",
        )
        yield line


class RunDisplay(Progress):
    """Rich's Progress with a loading line before the first bar and a figures line below the bars."""

    def __init__(self, loading: Loading, console: Console):
        self.loading = loading  # before Progress's own set-up, which renders a first frame
        self.figures = ""
        self.title_column = Column(no_wrap=True, overflow="ellipsis", max_width=TITLE_WIDTH)
        super().__init__(
            TextColumn("[bold]{task.description}", table_column=self.title_column),
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=BAR_MIN_WIDTH)),
            MofNCompleteColumn(table_column=Column(no_wrap=True, justify="right")),
            TimesColumn(table_column=Column(no_wrap=True)),
            console=console,
            expand=True,
            refresh_per_second=REFRESH_PER_SECOND,
        )

    def get_renderables(self):
        if not self.tasks:
            yield self.loading
            return
        # On a narrow terminal the title gives way first: the bar keeps BAR_MIN_WIDTH and the
        # count and times are never cut.
        counts = max(2 * len(str(int(task.total or task.completed))) + 1 for task in self.tasks)
        times = max(len(TimesColumn().render(task).plain) for task in self.tasks)
        room = self.console.width - BAR_MIN_WIDTH - counts - times - COLUMN_GAPS
        self.title_column.max_width = max(1, min(TITLE_WIDTH, room))
        yield self.make_tasks_table(self.tasks)
        if self.figures:
            yield Text("  " + self.figures, no_wrap=True, overflow="ellipsis")


class ProgressReporter:
    """A progress callback for one run; use as a context manager around the run (enter it
    before the heavy imports: the loading line shows from then on)."""

    def __init__(self, title: str, quiet: bool = False, console: Console | None = None):
        self.title = title
        self.quiet = quiet
        self.console = console or Console(stderr=True, highlight=False)
        self.live = not quiet and self.console.is_terminal
        self._loading = Loading(title)
        self._display: RunDisplay | None = None
        self._task = None
        self._epoch_task = None
        # The run's shape and clock (from its start event), for the ETA of plain lines.
        self._total = 0
        self._epochs: int | None = None
        self._steps_per_epoch = 0
        self._origin = 0
        self._step = 0
        self._started: float | None = None

    # ------------------------------------------------------------------ context
    def __enter__(self) -> "ProgressReporter":
        if self.live:
            self._display = RunDisplay(self._loading, self.console)
            self._display.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._display is not None:
            if not self._display.tasks:
                # Stopped while loading (an error, Ctrl-C): leave no spinner line behind.
                self._display.live.transient = True
            self._display.__exit__(*exc)
            self._display = None

    def status(self, what: str) -> None:
        """Say what is loading now (shown on a terminal until the run starts)."""
        self._loading.what = what

    # ------------------------------------------------------------------ events
    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind = event.get("kind", "event")
        if kind == "tick":
            self._move(event.get("step"))
        elif kind == "start":
            self._start(event)
        elif kind == "step":
            self._step_event(event)
        elif kind == "epoch":
            self._epoch_event(event)
        elif kind == "controller":
            self._controller(event)
        elif kind == "done":
            self._line(f"{self.title}: done  {self._elapsed_text()}  {describe(event, skip=('epoch',))}".rstrip())
        elif kind == "status":
            self.status(str(event.get("message", "")))
        elif kind not in HIDDEN:
            self._line(f"{self.title}: {kind}  {describe(event)}".rstrip())

    def _start(self, event: dict[str, Any]) -> None:
        self._total = int(event.get("total_steps") or 0)
        self._origin = self._step = int(event.get("start_step") or 0)
        self._steps_per_epoch = int(event.get("steps_per_epoch") or 0)
        epochs = event.get("epochs")
        self._epochs = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None
        self._started = time.perf_counter()
        where = f" on {event['device']}" if event.get("device") else ""
        resumed = f", resuming at step {self._step}" if self._step else ""
        description = event.get("description")
        self._line(
            f"{self.title}: {description}" if description
            else f"{self.title}: {epochs if epochs is not None else '?'} epochs, {self._total} steps{where}{resumed}"
        )
        if self._display is None:
            return
        self._task = self._display.add_task(self.title, total=self._total or None, completed=self._step,
                                            origin=self._step)
        if self._epochs is not None and self._epochs > 1:
            done = self._fraction(self._step, int(event.get("start_epoch") or 0))
            self._epoch_task = self._display.add_task(EPOCHS_ROW, total=self._epochs, completed=done,
                                                      origin=done)

    def _fraction(self, step: int, epoch: int) -> float:
        """Epochs done as a fraction (for the epochs bar's ETA); ``epoch`` without the shape."""
        return step / self._steps_per_epoch if self._steps_per_epoch else float(epoch)

    def _move(self, step: Any) -> None:
        """A training step ended: move the bars (no figures, nothing printed)."""
        if not isinstance(step, int):
            return
        self._step = step
        if self._display is None:
            return
        if self._task is not None:
            self._display.update(self._task, completed=step)
        if self._epoch_task is not None and self._steps_per_epoch:
            # Epochs as a fraction: the bar fills step by step; its count is the epochs whose
            # steps are done (a search's controller updates for the last one may still run).
            self._display.update(self._epoch_task, completed=step / self._steps_per_epoch)

    def _step_event(self, event: dict[str, Any]) -> None:
        self._move(event.get("step"))
        figures = describe(event)
        if self._display is not None:
            self._set_figures(figures)
            return
        total = f"/{self._total}" if self._total else ""
        self._line(f"{self.title}: step {event.get('step', '')}{total}  {self._times()}  {figures}".rstrip())

    def _epoch_event(self, event: dict[str, Any]) -> None:
        self._move(event.get("step"))
        epoch = event.get("epoch")
        of = f"/{self._epochs}" if self._epochs else ""
        if self._display is not None and self._epoch_task is not None and isinstance(epoch, int):
            # A producer without ticks moves the epochs row here; ticks never move it back.
            done = next(task.completed for task in self._display.tasks if task.id == self._epoch_task)
            self._display.update(self._epoch_task, completed=max(done, epoch))
        figures = describe(event, skip=("epoch",))
        self._line(f"{self.title}: epoch {epoch}{of}  {self._times()}  {figures}".rstrip())

    def _controller(self, event: dict[str, Any]) -> None:
        figures = describe(event, skip=("epoch",))
        updates = event.get("controller_updates")
        done = event.get("controller_step")
        if self._display is not None:
            if isinstance(event.get("update"), str):  # the strategy names its unit
                where = event["update"]
            elif isinstance(done, int) and isinstance(updates, int) and updates > 0:
                where = f"controller {(done - 1) % updates + 1}/{updates}"  # within this epoch
            else:
                where = "controller"
            self._set_figures(f"{where}  {figures}")
        else:
            unit = f"  {event['update']}" if isinstance(event.get("update"), str) else ""
            self._line(f"{self.title}: controller {done if done is not None else ''}{unit}  {figures}".rstrip())

    def _set_figures(self, figures: str) -> None:
        if self._display is not None and figures:
            self._display.figures = figures

    # ------------------------------------------------------------------ text
    def _elapsed(self) -> float:
        return 0.0 if self._started is None else time.perf_counter() - self._started

    def _elapsed_text(self) -> str:
        return clock(self._elapsed())

    def _times(self) -> str:
        """``0:01:23 eta 0:04:56`` for a plain line (the steps' average pace since the start)."""
        eta = eta_seconds(self._elapsed(), self._step, self._origin, self._total)
        return f"{clock(self._elapsed())} eta {clock(eta)}"

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)  # log lines never wrap
