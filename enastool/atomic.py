"""Atomic file writes: a reader, a crash or a full disk sees the old file or the new one.

Shared by the run directory (configs, run.json, checkpoints, rewritten metrics) and by drawings
(``render -o``). Plain Python, no torch import. What a write does:

- the data goes into a temporary file beside the target, is flushed and fsynced, and is then
  renamed over the target (and the folder fsynced, so the rename is durable);
- the new file gets the permission bits ``open(target, "w")`` would leave: the replaced file's
  own, else a new file's (0o666 less the umask), never tempfile's 0600;
- a symbolic link as the target is followed, as ``open()`` would: the file it points to is
  replaced and the link stays;
- if anything fails (a full disk, a second Ctrl-C) the temporary file is removed and the target
  is untouched; an OSError becomes one EnasError naming the path, why, the free space left and
  that the previous file is intact.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from .errors import EnasError


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
NEW_FILE_MODE = 0o666 & ~_read_umask()


def _give_open_mode(handle: Any, target: Path) -> None:
    """Give the temporary file the permission bits ``open(target, "w")`` would leave it with:
    the existing file's when it is replaced, else a new file's (0o666 less the umask)."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode) & 0o777
    except OSError:
        mode = NEW_FILE_MODE
    if hasattr(os, "fchmod"):
        os.fchmod(handle.fileno(), mode)
    else:  # pragma: no cover - Windows: chmod only toggles the read-only flag
        os.chmod(handle.name, mode | 0o200)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file via a temporary file and rename, so it is never half-written."""
    data = text.encode("utf-8")
    write_atomic(Path(path), lambda handle: handle.write(data))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    write_atomic(Path(path), lambda handle: handle.write(data))


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any], kept: str | None = None) -> None:
    """``write(handle)`` into a temporary file beside ``path``, then renamed over it (see the
    module doc). OSError -> EnasError (see :func:`write_error`, which ``kept`` is passed to);
    anything else is re-raised."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))  # as open() would: replace the file it points to
    existed = path.exists()
    try:
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    except OSError as e:
        raise write_error(path, e, existed, kept) from None
    try:
        with handle:
            _give_open_mode(handle, path)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException as e:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(path, e, existed, kept) from None
        raise
    _fsync_directory(path.parent)


def append_bytes(path: Path, data: bytes, kept: str, on_torn: Callable[[], Any] | None = None) -> None:
    """Append ``data`` to ``path`` (created with the mode open() gives), straight to the file.

    A write that fails (a full disk) is cut off again, so that no torn line is left for the next
    append to land on, and raised as one EnasError saying what is ``kept``; ``on_torn`` is
    called first when even the cut fails (the file may then end in a torn line)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise write_error(path, e, True, kept=kept) from None
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            try:
                os.ftruncate(fd, size)
            except OSError:
                if on_torn is not None:
                    on_torn()
            raise write_error(path, e, True, kept=kept) from None
    finally:
        os.close(fd)


def write_error(path: Path, error: OSError, existed: bool, kept: str | None = None) -> EnasError:
    """One line for a failed write: the path, why, the free space on its disk, and what is left
    (``kept``: default "the previous <name> is intact", or "nothing was written")."""
    reason = error.strerror or str(error) or type(error).__name__
    if kept is None:
        kept = f"the previous {path.name} is intact" if existed else f"no {path.name} was written"
    return EnasError(f"{path}: cannot write ({reason}); {free_space(path.parent)}; {kept}")


def free_space(folder: Path) -> str:
    """``"1.2 GiB free on its disk"``, or what could not be measured."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    return f"{human_bytes(free)} free on its disk"


BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(count: float) -> str:
    """``123 B``, ``1.5 KiB``, ..., ``2.0 TiB``."""
    value, unit = float(count), 0
    while value >= 1024 and unit < len(BYTE_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.0f} B" if unit == 0 else f"{value:.1f} {BYTE_UNITS[unit]}"


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
