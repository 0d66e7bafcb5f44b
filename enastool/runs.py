"""The run directory: the unit of state of a search or final-training run.

Layout of a run directory::

    run.json        kind ("search" or "final"), enastool version, creation time, command line
    config.toml     the resolved configuration, for people (and for --config)
    config.json     the same, exactly; resume reads this one
    metrics.jsonl   one JSON object per line, appended and flushed as training goes
    last.pt         latest checkpoint (best.pt: best one of a final-training run)

Checkpoints hold only tensors, numbers, strings, lists, tuples and dicts, so they load with
``torch.load(weights_only=True)``: opening a run never executes pickled code. torch is
imported only where checkpoints are touched, so the rest of the CLI starts fast.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Mapping

from . import __version__
from .config import CONFIG_CLASSES
from .errors import EnasError

RUN_FILE = "run.json"
CONFIG_TOML = "config.toml"
CONFIG_JSON = "config.json"
METRICS_FILE = "metrics.jsonl"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
# What `evaluate --checkpoint` may name, and the splits a final run can be evaluated on.
CHECKPOINT_CHOICES = {"last": LAST_CHECKPOINT, "best": BEST_CHECKPOINT}
EVAL_SPLITS = ("test", "valid")
# Bumped when the layout of a run directory changes incompatibly.
RUN_FORMAT = 1
# Metric records are ordered by this key; resume drops records past the checkpoint's step.
STEP_KEY = "step"


class RunDir:
    """A run directory; make one with :meth:`create` or :meth:`open`."""

    def __init__(self, path: str | Path, config: Any, info: Mapping[str, Any]):
        self.path = Path(path)
        self.config = config
        self.info = dict(info)

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
        if path.exists() and not path.is_dir():
            raise EnasError(f"{path} exists and is a file; choose another --out")
        if path.is_dir() and any(path.iterdir()):
            raise EnasError(
                f"{path} exists and is not empty; use --resume {path} to continue it "
                "or choose another --out"
            )
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
        }
        write_text_atomic(path / CONFIG_TOML, config.to_toml())
        write_text_atomic(path / CONFIG_JSON, config.to_json())
        # run.json last: it marks a complete run directory.
        write_text_atomic(path / RUN_FILE, json.dumps(info, indent=2) + "\n")
        return cls(path, config, info)

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
        if found_kind not in CONFIG_CLASSES:
            raise EnasError(f"{path / RUN_FILE}: unknown run kind {found_kind!r}")
        if info.get("format") != RUN_FORMAT:
            raise EnasError(
                f"{path / RUN_FILE}: run format {info.get('format')!r} is not {RUN_FORMAT}; "
                "it was written by another enastool version"
            )
        if kind is not None and found_kind != kind:
            raise EnasError(f"{path} is a {found_kind} run, expected a {kind} run")
        config = CONFIG_CLASSES[found_kind].read_json(path / CONFIG_JSON)
        return cls(path, config, info)

    # ----------------------------------------------------------------- metrics
    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one record as a JSON line, flushed so a crash loses at most this line."""
        line = json.dumps(dict(record), default=_plain_number, allow_nan=True)
        with self.metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

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
        text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in kept)
        write_text_atomic(self.metrics_path, text)
        return len(records) - len(kept)

    # ----------------------------------------------------------------- checkpoints
    def checkpoint_path(self, name: str = LAST_CHECKPOINT) -> Path:
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"checkpoint name must be a plain file name, got {name!r}")
        return self.path / name

    def has_checkpoint(self, name: str = LAST_CHECKPOINT) -> bool:
        return self.checkpoint_path(name).is_file()

    def save_checkpoint(self, name: str, state: Mapping[str, Any]) -> Path:
        """Write ``state`` atomically (see ``_write_atomic``)."""
        import torch

        check_checkpoint_state(state)
        target = self.checkpoint_path(name)
        _write_atomic(target, lambda handle: torch.save(dict(state), handle))
        return target

    def load_checkpoint(self, name: str = LAST_CHECKPOINT, map_location: Any = "cpu") -> dict:
        """The state saved under ``name``; EnasError naming the file if missing or unreadable."""
        import torch

        path = self.checkpoint_path(name)
        if not path.is_file():
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


class GracefulInterrupt:
    """Turns SIGINT / SIGTERM into a flag the training loop checks between steps.

    The loop finishes its step, saves a checkpoint and returns; the CLI exits with
    :attr:`exit_code`. A second signal raises KeyboardInterrupt at once (the user insists);
    a checkpoint being written then is left intact because saving is atomic. Previous
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
            raise KeyboardInterrupt
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


def _read_umask() -> int:
    """The process umask. Linux shows it in /proc without changing it; elsewhere it can only
    be read by setting it, which is done once, here at import, before any worker threads."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Permission bits open() gives a new file: tempfile makes its files 0600, which would leave
# the renamed config.json, run.json and checkpoints unreadable to the group unlike metrics.jsonl.
_NEW_FILE_MODE = 0o666 & ~_read_umask()


def _give_open_mode(handle: Any, target: Path) -> None:
    """Give the temporary file the permission bits ``open(target, "w")`` would leave it with:
    the existing file's when it is replaced, else a new file's (0o666 less the umask)."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode) & 0o777
    except OSError:
        mode = _NEW_FILE_MODE
    if hasattr(os, "fchmod"):
        os.fchmod(handle.fileno(), mode)
    else:  # pragma: no cover - Windows: chmod only toggles the read-only flag
        os.chmod(handle.name, mode | 0o200)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file via a temporary file and rename, so it is never half-written."""
    data = text.encode("utf-8")
    _write_atomic(Path(path), lambda handle: handle.write(data))


def _write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """``write(handle)`` into a temporary file beside ``path``, flushed and fsynced, then
    renamed over ``path``: a reader (or a crash) sees the old file or the new one. If anything
    fails (a second Ctrl-C included) the temporary file is removed and ``path`` is untouched.
    """
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            _give_open_mode(handle, path)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(path: Path) -> None:
    """Make a rename durable (POSIX); platforms without directory fds skip it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EnasError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise EnasError(f"{path}: expected a JSON object")
    return data


def _parse_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # Text after the last newline is a record whose write was cut short: not a record.
    complete, _, _torn = path.read_text(encoding="utf-8").rpartition("\n")
    records = []
    for number, line in enumerate(complete.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise EnasError(f"{path}: line {number} is not valid JSON") from None
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
