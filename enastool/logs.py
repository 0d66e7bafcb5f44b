"""Where a run's metric records go besides metrics.jsonl: metrics.csv, and TensorBoard if asked.

``RunDir.log`` appends each record to metrics.jsonl (the record of truth) and hands it to the
sinks here; ``RunDir.rewrite_metrics`` (resume's truncation) rewrites them from the kept
records, so every sink always holds exactly the records of metrics.jsonl.

- metrics.csv: one row per record, a column per key in the order keys first appear (``kind``,
  ``step``, ``epoch``, ...); a record without a key leaves its cell empty. Numbers, booleans
  and lists are written as JSON writes them (``0.25``, ``NaN``, ``true``), strings as they are,
  so each cell reads back to the record's value. A record with a key the header lacks rewrites
  the file with the wider header (as Lightning's CSVLogger does); that happens a few times in a
  run, when a new kind of record first appears. The first record a process logs rebuilds the
  file from metrics.jsonl, so a crash between the two appends cannot leave them apart.
- TensorBoard (``enastool[tensorboard]``): event files in RUN/tensorboard, written by
  ``torch.utils.tensorboard``; on when that folder exists (``RunDir.enable_tensorboard``, the
  commands' ``--tensorboard``), so a resumed run goes on writing where it left off. Every number
  of a record is a scalar tagged ``<record kind>/<key>`` at the record's step (controller
  records at their ``controller_step``, in the sub-folder ``controller``, a run of its own in
  TensorBoard's list); after resume's truncation the events past the last kept record are
  hidden (SummaryWriter's ``purge_step``), as the records are.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .atomic import append_bytes, write_text_atomic
from .errors import EnasError

METRICS_CSV = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_PACKAGE = "tensorboard"
TENSORBOARD_EXTRA = "pip install 'enastool[tensorboard]'"
EVENT_FILES = "events.out.tfevents.*"  # the names SummaryWriter gives its files
STEP_KEY = "step"
# Every metrics record gets the wall-clock time it was written (Unix seconds, as TensorBoard's
# wall_time): runs can be lined up against each other and against the machine's logs. In
# TensorBoard it is the events' own wall time, not a scalar.
WALL_TIME_KEY = "wall_time"
# Record kinds with a step axis of their own: (step key, TensorBoard sub-folder). Several
# controller updates share one shared-weight step, so they are plotted at their own count.
STEP_AXES = {"controller": ("controller_step", "controller")}


# ----------------------------------------------------------------------------- metrics.csv
def csv_cell(value: Any) -> str:
    """The text of one cell: strings as they are, None empty, anything else as JSON writes it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, allow_nan=True)


def csv_columns(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key of ``records``, in the order the keys first appear."""
    return list(dict.fromkeys(key for record in records for key in record))


def _csv_lines(rows: Iterable[Iterable[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()


def csv_text(records: list[Mapping[str, Any]]) -> str:
    columns = csv_columns(records)
    rows = [[csv_cell(record.get(column)) for column in columns] for record in records]
    return _csv_lines([columns, *rows]) if columns else ""


class CsvSink:
    """metrics.csv of one run (see the module doc)."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] | None = None  # None: not synchronised with metrics.jsonl yet

    def rewrite(self, records: list[Mapping[str, Any]]) -> None:
        write_text_atomic(self.path, csv_text(records))
        self.columns = csv_columns(records)

    def append(self, record: Mapping[str, Any], all_records: Callable[[], list]) -> None:
        """Add ``record`` (already in metrics.jsonl, whose records ``all_records`` reads)."""
        if self.columns is None or any(key not in self.columns for key in record):
            self.rewrite(all_records())
            return
        data = _csv_lines([[csv_cell(record.get(column)) for column in self.columns]]).encode("utf-8")
        # A torn last row (the write failed and could not be cut off): rebuilt from
        # metrics.jsonl at the next record.
        append_bytes(self.path, data, kept="metrics.jsonl holds every record",
                     on_torn=lambda: setattr(self, "columns", None))


# ----------------------------------------------------------------------------- TensorBoard
def tensorboard_available() -> bool:
    return importlib.util.find_spec(TENSORBOARD_PACKAGE) is not None


def check_tensorboard(folder: Path) -> None:
    if not tensorboard_available():
        raise EnasError(
            f"{folder}: TensorBoard logging needs the tensorboard package: {TENSORBOARD_EXTRA} "
            f"(or remove {folder} to log without it)"
        )


def step_axis(record: Mapping[str, Any]) -> tuple[str, str]:
    """(step key, event sub-folder) of a record: its kind's own axis or the shared step."""
    return STEP_AXES.get(str(record.get("kind")), (STEP_KEY, ""))


def scalars(record: Mapping[str, Any]) -> tuple[int, dict[str, float]] | None:
    """(step, {tag: value}) of a record's finite numbers, or None for a record without a step."""
    kind = str(record.get("kind", "record"))
    key, _ = step_axis(record)
    step = record.get(key)
    if not isinstance(step, (int, float)) or isinstance(step, bool):
        return None
    values = {
        f"{kind}/{name}": float(value)
        for name, value in record.items()
        if name not in (key, WALL_TIME_KEY)
        and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }
    return int(step), values


class TensorBoardSink:
    """Event files in ``folder`` (see the module doc): one writer per step axis, each opened at
    its first record."""

    def __init__(self, folder: Path):
        check_tensorboard(folder)
        self.folder = folder
        self.writers: dict[str, Any] = {}
        self.purge_steps: dict[str, int] = {}  # sub-folder -> first step to hide

    def log(self, record: Mapping[str, Any]) -> None:
        found = scalars(record)
        if found is None:
            return
        step, values = found
        writer = self._writer(step_axis(record)[1])
        wall_time = record.get(WALL_TIME_KEY)
        for tag, value in values.items():
            writer.add_scalar(tag, value, step, walltime=wall_time)
        writer.flush()  # a record every log_every steps: cheap, and nothing waits in memory

    def _writer(self, sub: str):
        writer = self.writers.get(sub)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # With a purge step the writer's first event tells TensorBoard to hide the events
            # of earlier sessions from that step on.
            writer = self.writers[sub] = SummaryWriter(
                log_dir=str(self.folder / sub), purge_step=self.purge_steps.pop(sub, None),
            )
        return writer

    def rewrite(self, records: list[Mapping[str, Any]]) -> None:
        """The run's records were cut back to ``records`` (resume): events past the last of them,
        on each axis, describe training about to be redone and are hidden from TensorBoard
        (at once, also on an axis that gets no new record)."""
        self.close()
        for sub in {sub for _, sub in (*STEP_AXES.values(), (STEP_KEY, ""))}:
            if not any((self.folder / sub).glob(EVENT_FILES)):
                continue
            kept = [found[0] for r in records if step_axis(r)[1] == sub and (found := scalars(r))]
            self.purge_steps[sub] = max(kept, default=0) + 1
            self._writer(sub).flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
