"""Finding run directories under a folder and summarising each one (``enastool runs``).

Plain Python, no torch import: listing a hundred runs reads their run.json, config.json,
status.json and metrics.jsonl, never a checkpoint. What a summary says, as far as the directory
tells:

- status: ``finished`` (metrics.jsonl has its done record), ``running`` (status.json says so
  and, on this host, its process is alive), ``interrupted`` (stopped with a checkpoint, to be
  resumed), ``failed`` (status.json records an error, or says running while its process on this
  host is gone: killed), ``broken`` (the directory does not open: the one-line reason is in
  ``error``). A run written before status.json existed is interrupted when it has a checkpoint
  and failed when it has none.
- epochs: done (the furthest epoch its records reach, whole epochs) of the configured count.
- best: the best figure of its epoch records, the first of ``BEST_FIGURES`` the run has
  (final image runs: test accuracy; search: validation accuracy of the sampled children;
  rnn: validation perplexity, lower is better).
"""

from __future__ import annotations

import math
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import EnasError
from .runs import (
    FAILED, FINISHED, INTERRUPTED, LAST_CHECKPOINT, RUN_FILE, RUNNING, RunDir, _read_json_object,
)

BROKEN = "broken"
STATUSES = (RUNNING, INTERRUPTED, FINISHED, FAILED, BROKEN)
MAX_DEPTH = 6  # folders below DIR searched for runs (runs/project/search/... is 3)
# (metrics key of an epoch record, better is max or min), in the order a run's best is chosen.
BEST_FIGURES: tuple[tuple[str, Callable], ...] = (
    ("test_accuracy", max),  # final runs of image spaces
    ("valid_ppl", min),  # rnn runs (search and final)
    ("valid_acc", max),  # image searches: the sampled children on validation batches
)
EPOCH_RECORD = "epoch"


def find_runs(root: str | Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Run directories (folders holding run.json) at or under ``root``, sorted by path; hidden
    folders and the insides of runs are not searched, links are not followed."""
    root = Path(root)
    if not root.is_dir():
        raise EnasError(f"{root}: no such directory; give a folder holding run directories")
    if (root / RUN_FILE).is_file():
        return [root]
    found = []
    base_depth = len(root.parts)
    for folder, subfolders, files in os.walk(root, followlinks=False):
        here = Path(folder)
        if RUN_FILE in files and here != root:
            found.append(here)
            subfolders.clear()
            continue
        if len(here.parts) - base_depth >= max_depth:
            subfolders.clear()
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
    return sorted(found)


def summarize(path: str | Path) -> dict[str, Any]:
    """One run's row: run, kind, space, strategy, dataset, status, epoch, epochs, best, updated
    (and error for a broken one). ``best`` is {"name", "value"} or None."""
    path = Path(path)
    row: dict[str, Any] = {
        "run": str(path), "kind": None, "space": None, "strategy": None, "dataset": None,
        "status": BROKEN, "epoch": None, "epochs": None, "best": None, "updated": _updated(path),
    }
    try:
        run = RunDir.open(path)
        records = run.read_metrics()
    except EnasError as err:
        row["error"] = str(err)
        try:  # say at least what kind of run it was
            row["kind"] = _read_json_object(path / RUN_FILE).get("kind")
        except EnasError:
            pass
        return row
    config = run.config
    row.update(kind=run.kind, space=config.space, strategy=getattr(config, "strategy", None),
               dataset=config.dataset, epochs=config.epochs)
    row["epoch"] = _epochs_done(records, config.epochs)
    row["best"] = best_figure(records)
    status, error = _status(run, records)
    row["status"] = status
    if error:
        row["error"] = error
    return row


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    return [summarize(path) for path in find_runs(root)]


def best_figure(records: list[dict]) -> dict[str, Any] | None:
    epochs = [r for r in records if r.get("kind") == EPOCH_RECORD]
    for key, better in BEST_FIGURES:
        values = [r[key] for r in epochs if _finite(r.get(key))]
        if values:
            return {"name": key, "value": better(values)}
    return None


def _epochs_done(records: list[dict], epochs: int) -> int:
    reached = [r["epoch"] for r in records if _finite(r.get("epoch"))]
    return min(int(math.floor(max(reached, default=0) + 1e-9)), epochs)


def _status(run: RunDir, records: list[dict]) -> tuple[str, str | None]:
    if any(r.get("kind") == "done" for r in records):
        return FINISHED, None
    status = run.read_status()
    if status is None:  # written before status.json, or killed before it was
        return (INTERRUPTED, None) if run.has_checkpoint(LAST_CHECKPOINT) else (FAILED, "no checkpoint")
    state = status["status"]
    if state == RUNNING:
        pid, host = status.get("pid"), status.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            return FAILED, f"process {pid} stopped without saying why (killed?)"
        return RUNNING, None
    if state == FAILED:
        return FAILED, status.get("error")
    if state in (INTERRUPTED, FINISHED):
        return INTERRUPTED, None  # finished without a done record: cut back since, by a resume
    return BROKEN, f"{run.path / 'status.json'}: unknown status {state[:40]!r}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, but another user's
    return True


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _updated(path: Path) -> str | None:
    """When the run last wrote a record (or its run.json), in UTC."""
    for name in ("metrics.jsonl", RUN_FILE):
        try:
            stamp = (path / name).stat().st_mtime
        except OSError:
            continue
        return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")
    return None


def iter_table(rows: list[dict[str, Any]], root: Path) -> Iterator[list[str]]:
    """The cells of ``enastool runs``'s table: a header, then one row per run."""
    yield ["run", "kind", "space", "strategy", "status", "epochs", "best", "updated"]
    for row in rows:
        try:
            name = str(Path(row["run"]).relative_to(root)) if Path(row["run"]) != root else str(root)
        except ValueError:
            name = row["run"]
        epochs = f"{row['epoch']}/{row['epochs']}" if row["epochs"] is not None else "-"
        best = row["best"]
        best_text = f"{best['name']} {best['value']:.4g}" if best else "-"
        updated = (row["updated"] or "-").replace("+00:00", "Z")
        yield [name, row["kind"] or "-", row["space"] or "-", row["strategy"] or "-", row["status"],
               epochs, best_text, updated]
