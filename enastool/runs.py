"""The run directory: the unit of state of a search or final-training run.

Layout of a run directory::

    run.json        kind ("search" or "final"), format, enastool version, creation time,
                    command line, and the SHA-256 digests of its configuration and recorded files
    config.toml     the resolved configuration, for people (and for --config)
    config.json     the same, exactly; resume reads this one
    metrics.jsonl   one JSON object per line, appended and flushed as training goes; each
                    record carries ``wall_time``, the Unix time it was written (seconds)
    metrics.csv     the same records as a table, kept equal to metrics.jsonl (``enastool.logs``)
    status.json     running, interrupted, finished or failed, with the process (``tracking``)
    tensorboard/    (optional) TensorBoard event files of the same records (``enastool.logs``)
    last.pt         latest checkpoint (best.pt: best one of a final-training run)
    arch.txt        (final runs) the architecture trained, a file recorded with ``record_file``

Checkpoints hold only tensors, numbers, strings, lists, tuples and dicts, so they load with
``torch.load(weights_only=True)``: opening a run never executes pickled code. torch is
imported only where checkpoints are touched, so the rest of the CLI starts fast.

What :meth:`RunDir.open` checks (every command that reads a run: resume, derive, evaluate):
run.json is a run of a known kind and of this format; config.json is a complete configuration
whose values pass the config's rules; and the configuration and every recorded file are the
ones the run started with (their digests match run.json's). Anything else is refused with one
line naming the file: a run never continues silently with an edited configuration or a
replaced arch.txt. Checkpoints are checked against the run that loads them by
``enastool.checkpoints``.

Writes are atomic (``enastool.atomic``); a failed write (a full disk) is one line naming the
file, the free space and that the previous file is intact. A metrics line that cannot be
written whole is cut off again, so the records before it stay readable.

status.json says what the directory cannot tell by itself: whether a process is working on the
run. ``tracking`` writes "running" (with the process id and host) while training runs, and
afterwards "finished" (metrics.jsonl has its ``done`` record), "interrupted" (stopped with a
checkpoint, to be resumed) or "failed" (an error, with its one line). A process killed outright
leaves "running" behind; ``enastool runs`` reads that as failed when the process is gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from . import __version__
from .atomic import append_bytes, write_atomic
from .atomic import write_text_atomic as write_text_atomic  # the loops import it from here
from .config import CONFIG_CLASSES
from .errors import EnasError
from .logs import METRICS_CSV, TENSORBOARD_DIR, WALL_TIME_KEY, CsvSink, TensorBoardSink, check_tensorboard

RUN_FILE = "run.json"
CONFIG_TOML = "config.toml"
CONFIG_JSON = "config.json"
METRICS_FILE = "metrics.jsonl"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
# What `evaluate --checkpoint` may name, and the splits a final run can be evaluated on.
CHECKPOINT_CHOICES = {"last": LAST_CHECKPOINT, "best": BEST_CHECKPOINT}
EVAL_SPLITS = ("test", "valid")
# Bumped when the layout of a run directory changes incompatibly (2: digests in run.json).
RUN_FORMAT = 2
DIGESTS = "digests"  # run.json key: file name -> "sha256:<hex>" (config.json: of the resolved config)
DIGEST_PREFIX = "sha256:"
NUMPY_SEED_RANGE = 2**32  # np.random.seed takes 0 <= seed < 2**32
# Metric records are ordered by this key; resume drops records past the checkpoint's step.
STEP_KEY = "step"
STATUS_FILE = "status.json"
RUNNING, INTERRUPTED, FINISHED, FAILED = "running", "interrupted", "finished", "failed"


class RunDir:
    """A run directory; make one with :meth:`create` or :meth:`open`."""

    def __init__(self, path: str | Path, config: Any, info: Mapping[str, Any]):
        self.path = Path(path)
        self.config = config
        self.info = dict(info)
        self._csv = CsvSink(self.path / METRICS_CSV)
        self._tensorboard: TensorBoardSink | None = None
        self._wrote = False  # a record or checkpoint written by this process (see ``tracking``)

    @property
    def kind(self) -> str:
        return self.info["kind"]

    def file(self, name: str) -> Path:
        """Path of a file inside the run directory (e.g. for derive results)."""
        return self.path / name

    # ----------------------------------------------------------------- create and open
    @classmethod
    def create(
        cls,
        path: str | Path,
        config: Any,
        kind: str | None = None,
        command: Iterable[str] | None = None,
    ) -> "RunDir":
        """Start a new run in ``path`` (absent or an empty folder) for a resolved config."""
        path = Path(path)
        kind = kind or config.kind
        if CONFIG_CLASSES.get(kind) is not type(config):
            raise ValueError(f"kind {kind!r} does not match a {type(config).__name__}")
        check_new_run_path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EnasError(f"{path}: cannot create the run directory ({e.strerror})") from None
        info = {
            "kind": kind,
            "format": RUN_FORMAT,
            "enastool_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": list(command) if command is not None else None,
            DIGESTS: {CONFIG_JSON: digest(config.to_json())},
        }
        write_text_atomic(path / CONFIG_TOML, config.to_toml())
        write_text_atomic(path / CONFIG_JSON, config.to_json())
        run = cls(path, config, info)
        # run.json last: it marks a complete run directory.
        run._write_info()
        return run

    @classmethod
    def open(cls, path: str | Path, kind: str | None = None) -> "RunDir":
        """An existing run directory (for resume or derive), with its config loaded.

        ``kind``, when given, is the kind the caller needs ("search" for derive, say).
        """
        path = Path(path)
        if not path.is_dir():
            raise EnasError(f"{path}: no such run directory; check the path")
        for name in (RUN_FILE, CONFIG_JSON):
            if not (path / name).is_file():
                raise EnasError(
                    f"{path / name} is missing: {path} is not an enastool run directory"
                )
        info = _read_json_object(path / RUN_FILE)
        found_kind = info.get("kind")
        if not isinstance(found_kind, str) or found_kind not in CONFIG_CLASSES:
            raise EnasError(f"{path / RUN_FILE}: unknown run kind {str(found_kind)[:40]!r}")
        if info.get("format") != RUN_FORMAT:
            raise EnasError(
                f"{path / RUN_FILE}: run format {str(info.get('format'))[:40]!r} is not {RUN_FORMAT}; "
                "it was written by another enastool version"
            )
        digests = info.get(DIGESTS)
        if not (isinstance(digests, dict) and isinstance(digests.get(CONFIG_JSON), str)
                and all(isinstance(v, str) for v in digests.values())):
            raise EnasError(f"{path / RUN_FILE}: no {DIGESTS!r} of the run's files; it is not an enastool run.json")
        if kind is not None and found_kind != kind:
            raise EnasError(f"{path} is a {found_kind} run, expected a {kind} run")
        config = CONFIG_CLASSES[found_kind].read_json(path / CONFIG_JSON, complete=True)
        run = cls(path, config, info)
        run._check_digests()
        return run

    # ----------------------------------------------------------------- recorded files
    def record_file(self, name: str, text: str) -> Path:
        """Write ``name`` (atomically) and record its digest in run.json: from then on every
        :meth:`open` refuses the run if the file is edited, replaced or deleted."""
        target = self.path / _plain_name(name)
        write_text_atomic(target, text)
        self.info[DIGESTS][name] = digest(text)
        self._write_info()
        return target

    def _write_info(self) -> None:
        write_text_atomic(self.path / RUN_FILE, json.dumps(self.info, indent=2) + "\n")

    def _check_digests(self) -> None:
        """The configuration and every recorded file must be the ones the run started with."""
        for name, recorded in self.info[DIGESTS].items():
            if Path(name).name != name or name in ("", ".", ".."):
                raise EnasError(f"{self.path / RUN_FILE}: {name[:40]!r} is not a file of the run")
            path = self.path / name
            if name == CONFIG_JSON:
                # Of the configuration as read, so that reformatting the JSON changes nothing.
                if digest(self.config.to_json()) != recorded:
                    raise EnasError(
                        f"{path}: the configuration differs from the one this run started with "
                        f"(its digest is recorded in {RUN_FILE}); put the original back, or start a "
                        f"new run with other settings (--config {self.path / CONFIG_TOML} takes the old ones)"
                    )
                continue
            try:
                data = path.read_bytes()
            except OSError as e:
                reason = "deleted" if isinstance(e, FileNotFoundError) else f"unreadable ({e.strerror})"
                raise EnasError(
                    f"{path}: {reason} since the run started ({RUN_FILE} records its digest); "
                    "put the original back or start a new run"
                ) from None
            if digest(data) != recorded:
                raise EnasError(
                    f"{path}: edited or replaced since the run started (its digest differs from the "
                    f"one in {RUN_FILE}); put the original back or start a new run"
                )

    # ----------------------------------------------------------------- metrics
    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one record as a JSON line, written straight to the file so a crash loses at
        most this line. A write that fails (a full disk) is cut off again, so no torn line is
        left for the next record to land on, and reported as one EnasError. The record gets
        ``wall_time`` (now) unless it has one."""
        record = {**record, WALL_TIME_KEY: record.get(WALL_TIME_KEY, time.time())}
        data = (json.dumps(record, default=_plain_number, allow_nan=True) + "\n").encode("utf-8")
        # A torn last line (the cut failed too) is skipped by every reader.
        append_bytes(self.metrics_path, data, kept="the records written before are intact")
        self._wrote = True
        plain = json.loads(data)  # the record as metrics.jsonl holds it (numpy, torch scalars: numbers)
        self._csv.append(plain, self.read_metrics)
        tensorboard = self._tensorboard_sink()
        if tensorboard is not None:
            tensorboard.log(plain)

    def rewrite_metrics(self, records: list[Mapping[str, Any]]) -> None:
        """Replace the records (resume's truncation) in metrics.jsonl and every sink."""
        self._wrote = True
        text = "".join(json.dumps(dict(r), allow_nan=True) + "\n" for r in records)
        write_text_atomic(self.metrics_path, text)
        self._csv.rewrite(records)
        tensorboard = self._tensorboard_sink()
        if tensorboard is not None:
            tensorboard.rewrite(records)

    # ----------------------------------------------------------------- TensorBoard
    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    def enable_tensorboard(self) -> None:
        """Log the records to TensorBoard from now on, and on every resume (the folder says so);
        EnasError naming the extra to install when the tensorboard package is missing."""
        check_tensorboard(self.tensorboard_dir)
        self.tensorboard_dir.mkdir(exist_ok=True)

    def _tensorboard_sink(self) -> TensorBoardSink | None:
        if self._tensorboard is None and self.tensorboard_dir.is_dir():
            self._tensorboard = TensorBoardSink(self.tensorboard_dir)
        return self._tensorboard

    def close(self) -> None:
        """Flush and close the sinks (TensorBoard's writers); logging again reopens them."""
        if self._tensorboard is not None:
            self._tensorboard.close()

    # ----------------------------------------------------------------- status
    def write_status(self, status: str, **details: Any) -> None:
        record = {
            "status": status, "pid": os.getpid(), "host": socket.gethostname(),
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"), **details,
        }
        write_text_atomic(self.path / STATUS_FILE, json.dumps(record, indent=2) + "\n")

    def read_status(self) -> dict[str, Any] | None:
        """status.json as written, or None when absent or unreadable."""
        try:
            data = json.loads((self.path / STATUS_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("status"), str) else None

    @contextmanager
    def tracking(self) -> Iterator["RunDir"]:
        """status.json says "running" while the block runs; afterwards "finished" when
        metrics.jsonl has its done record, "interrupted" when the block returned without it or
        a KeyboardInterrupt stopped it, "failed" (with the error's first line) on any other
        exception, which propagates. The sinks are closed either way.

        An exception raised before this process wrote a record or a checkpoint (a resume that
        the run's checks refuse, a Ctrl-C while the data loads) puts status.json back as it was:
        the run was not touched, and a refused resume leaves the folder byte for byte as it was."""
        if self.tensorboard_dir.is_dir():  # logging there was asked for: say now if it cannot be
            check_tensorboard(self.tensorboard_dir)
        status_path = self.path / STATUS_FILE
        previous = status_path.read_bytes() if status_path.is_file() else None
        self._wrote = False
        self.write_status(RUNNING)
        try:
            yield self
        except BaseException as error:
            if not self._wrote:
                self._restore_status(previous)
            elif isinstance(error, KeyboardInterrupt):
                self._end_tracking(INTERRUPTED)
            elif isinstance(error, SystemExit) and not error.code:
                self._end_tracking(FINISHED if self.finished() else INTERRUPTED)
            else:
                text = " ".join(str(error).split())[:200]
                self._end_tracking(FAILED, error=f"{type(error).__name__}: {text}" if text else type(error).__name__)
            raise
        else:
            self._end_tracking(FINISHED if self.finished() else INTERRUPTED)

    def _restore_status(self, previous: bytes | None) -> None:
        self.close()
        path = self.path / STATUS_FILE
        try:
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, lambda handle: handle.write(previous))
        except (OSError, EnasError):
            pass  # as in _end_tracking: the error that stopped the run is the one to report

    def _end_tracking(self, status: str, **details: Any) -> None:
        self.close()
        try:
            self.write_status(status, **details)
        except EnasError:
            pass  # a full disk: the error that stopped the run is the one to report

    def read_metrics(self) -> list[dict[str, Any]]:
        """All records; a torn last line (a crash while writing) is skipped."""
        return _parse_metrics(self.metrics_path)

    def finished(self) -> bool:
        """Whether metrics.jsonl already holds the ``done`` record of a completed run."""
        return self.metrics_path.exists() and any(r.get("kind") == "done" for r in self.read_metrics())

    def truncate_after(self, step: int) -> int:
        """Drop records whose step is greater than ``step`` (and a torn last line).

        Resume calls this with the checkpoint's step: records written after the last
        checkpoint describe training that is about to be redone. Records without a step are
        kept. Returns how many records were dropped.
        """
        if not self.metrics_path.exists():
            return 0
        records = self.read_metrics()
        kept = [r for r in records if not _is_after(r, step)]
        self.rewrite_metrics(kept)
        return len(records) - len(kept)

    # ----------------------------------------------------------------- checkpoints
    def checkpoint_path(self, name: str = LAST_CHECKPOINT) -> Path:
        return self.path / _plain_name(name)

    def has_checkpoint(self, name: str = LAST_CHECKPOINT) -> bool:
        """Whether checkpoint ``name`` exists; something else in its place (a folder, a broken
        link) is an error rather than "no checkpoint", which would restart the run."""
        path = self.checkpoint_path(name)
        if path.is_file():
            return True
        if path.exists() or path.is_symlink():
            raise EnasError(
                f"{path} is not a file (a folder or a broken link); move it out of the way "
                "(the run's checkpoint belongs there)"
            )
        return False

    def save_checkpoint(self, name: str, state: Mapping[str, Any]) -> Path:
        """Write ``state`` atomically (see ``enastool.atomic``): a failure such as a full disk
        is one EnasError, and the previous checkpoint is left as it was."""
        import torch

        check_checkpoint_state(state)
        target = self.checkpoint_path(name)
        canonical = _canonical(dict(state))
        # On failure, say which checkpoint the run can still be resumed from.
        intact = [n for n in dict.fromkeys((name, LAST_CHECKPOINT)) if self.checkpoint_path(n).is_file()]
        kept = f"the previous {intact[0]} is intact" if intact else "no checkpoint was written yet"
        write_atomic(target, lambda handle: torch.save(canonical, handle), kept=kept)
        self._wrote = True
        return target

    def load_checkpoint(self, name: str = LAST_CHECKPOINT, map_location: Any = "cpu") -> dict:
        """The state saved under ``name``; EnasError naming the file if missing or unreadable."""
        import torch

        path = self.checkpoint_path(name)
        if not self.has_checkpoint(name):
            raise EnasError(f"{path}: checkpoint not found; nothing to resume from")
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # truncated, corrupt, or not a weights-only checkpoint
            reason = " ".join(str(e).split())[:120]
            raise EnasError(
                f"{path}: not a readable checkpoint ({type(e).__name__}: {reason}); "
                "delete it to restart the run"
            ) from None
        if not isinstance(state, dict):
            raise EnasError(f"{path}: not an enastool checkpoint (expected a dict)")
        return state


# --------------------------------------------------------------------------------------------
# Checkpoint contents.
# --------------------------------------------------------------------------------------------

_PLAIN_TYPES = (int, float, bool, str, bytes, type(None))


def check_checkpoint_state(state: Any, where: str = "state") -> None:
    """Raise TypeError naming the first value ``torch.load(weights_only=True)`` would refuse.

    Checked at save time, so the mistake shows up where it is made, not at resume.
    """
    import torch

    # Exact types: numpy scalars subclass float but the weights-only loader refuses them.
    if isinstance(state, torch.Tensor) or type(state) in _PLAIN_TYPES:
        return
    if isinstance(state, (torch.dtype, torch.device, torch.Size)):
        return
    if type(state) in (list, tuple):
        for i, item in enumerate(state):
            check_checkpoint_state(item, f"{where}[{i}]")
        return
    if isinstance(state, dict):
        for key, item in state.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} is not a str or int")
            check_checkpoint_state(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"{where} is a {type(state).__name__}; checkpoints hold only tensors, numbers, "
        "strings, lists, tuples and dicts"
    )


class RunEvents:
    """What every loop over a run shares (search, final training of either data kind): events
    to its ``callback`` (None: none), records to the run's metrics.jsonl and the callback, and
    the ``interrupt`` flag it polls (an object with ``.interrupted``, or None)."""

    callback: Callable[[dict], None] | None
    run: "RunDir | None"
    interrupt: Any

    def _emit(self, event: dict) -> None:
        if self.callback is not None:
            self.callback(event)

    def _record(self, record: dict) -> None:
        self.run.log(record)
        self._emit(record)

    def _interrupted(self) -> bool:
        return bool(self.interrupt is not None and getattr(self.interrupt, "interrupted", False))


def seed_generators(seed: int) -> None:
    """Seed every global generator a run may draw from: torch's, Python's ``random`` and NumPy's.

    Python's and NumPy's are part of every checkpoint (``capture_rng_state``); seeded from the
    run seed, two runs of one configuration write the same checkpoint bytes, interrupted or not.
    """
    import numpy as np
    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % NUMPY_SEED_RANGE)


def _canonical(value: Any) -> Any:
    """``value`` with fresh containers and interned strings: pickle writes a string once and
    then refers back to it only if it is the same object, so without this a state restored
    from a checkpoint (strings unpickled anew) would save different bytes for equal data."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        kind = OrderedDict if isinstance(value, OrderedDict) else dict
        copy = kind((_canonical(k), _canonical(v)) for k, v in value.items())
        if hasattr(value, "_metadata"):  # a module's state dict carries its version numbers here
            copy._metadata = _canonical(value._metadata)
        return copy
    if type(value) in (list, tuple):
        return type(value)(_canonical(item) for item in value)
    return value


def capture_rng_state() -> dict[str, Any]:
    """Every random generator a run uses, as checkpoint-safe plain data and tensors."""
    import numpy as np
    import torch

    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss_next],
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`. CUDA states are restored when this machine has
    as many GPUs as the saving one had (resuming a GPU run on a CPU skips them)."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda_states):
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].cpu().numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )


# --------------------------------------------------------------------------------------------
# Signals.
# --------------------------------------------------------------------------------------------

EXIT_CODE_BASE = 128  # shells report death by signal N as 128 + N: 130 SIGINT, 143 SIGTERM


class SecondSignal(KeyboardInterrupt):
    """A second SIGINT or SIGTERM during a run: stop at once. ``signal_number`` is that signal."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number

    @property
    def exit_code(self) -> int:
        return EXIT_CODE_BASE + self.signal_number


class GracefulInterrupt:
    """Turns SIGINT / SIGTERM into a flag the training loop checks between steps.

    The loop finishes its step, saves a checkpoint and returns; the CLI exits with
    :attr:`exit_code`. A second signal raises :class:`SecondSignal` (a KeyboardInterrupt) at
    once (the user insists); a checkpoint being written then is left intact because saving is
    atomic, so the run resumes from its last checkpoint. Previous
    handlers are restored on exit. Outside the main thread Python cannot install handlers:
    the context manager then does nothing and the flag stays unset.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def interrupted(self) -> bool:
        return self.signal_number is not None

    @property
    def exit_code(self) -> int | None:
        """128 + signal number once interrupted (130 SIGINT, 143 SIGTERM), else None."""
        return None if self.signal_number is None else EXIT_CODE_BASE + self.signal_number

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal_number is not None:
            raise SecondSignal(signum)
        self.signal_number = signum

    def __enter__(self) -> "GracefulInterrupt":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for sig, handler in self._previous.items():
            # None means the handler was installed from C; the default is the nearest we can do.
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()


# --------------------------------------------------------------------------------------------
# Files.
# --------------------------------------------------------------------------------------------


def _plain_name(name: str) -> str:
    """``name`` if it names a file directly inside the run directory (a caller's bug otherwise)."""
    if Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"a run file name must be a plain file name, got {name!r}")
    return name


def digest(content: str | bytes) -> str:
    """``sha256:<hex>`` of a text (UTF-8) or of bytes."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def check_new_run_path(path: str | Path) -> None:
    """What a new run directory may be: absent, or an empty folder. One line otherwise."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise EnasError(
            f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; create "
            "the folder it points to, remove the link, or choose another --out"
        )
    if path.exists() and not path.is_dir():
        raise EnasError(f"{path} exists and is a file; choose another --out")
    try:
        used = path.is_dir() and any(path.iterdir())
    except OSError as e:
        raise EnasError(f"{path}: cannot read the folder ({e.strerror}); choose another --out") from None
    if used:
        raise EnasError(
            f"{path} exists and is not empty; use --resume {path} to continue it "
            "or choose another --out"
        )


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise EnasError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise EnasError(f"{path}: expected a JSON object")
    return data


def _parse_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists() and not path.is_symlink():
        return []
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EnasError(f"{path}: cannot read the metrics ({e.strerror}); it must be the run's JSON-lines file") from None
    # Bytes after the last newline are a record whose write was cut short: not a record.
    complete, _, _torn = data.rpartition(b"\n")
    records = []
    for number, line in enumerate(complete.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            record = None
        if not isinstance(record, dict):
            raise EnasError(
                f"{path}: line {number} is not a JSON object (the file is damaged); "
                "delete that line, or the file, to use the run"
            )
        records.append(record)
    return records


def _is_after(record: Mapping[str, Any], step: int) -> bool:
    value = record.get(STEP_KEY)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > step


def _plain_number(value: Any) -> Any:
    """JSON fallback for numpy / torch scalars and small arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"metric value of type {type(value).__name__} is not JSON serialisable")
