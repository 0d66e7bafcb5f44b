"""Download, verify and unpack the CIFAR-10 python archive.

Steps, each safe to interrupt and rerun:

1. stream the archive into ``<archive>.part``, resuming an existing ``.part`` (HTTP ``Range``,
   or a seek for a local file); rename to the archive name when complete;
2. check its MD5 (a mismatch deletes the file: it cannot be trusted or resumed);
3. unpack into a temporary folder inside ``data_dir``, refusing any member that is not a plain
   file or folder under the archive's top folder, then rename that folder into place in one
   step, so ``data_dir/cifar-10-batches-py`` is either complete or absent.

An existing complete ``cifar-10-batches-py`` makes the call a no-op. The archive is kept after
unpacking, so the folder can be rebuilt without the network (it is verified again first).
``url`` may be an http(s) or ``file://`` URL or a local path; ``url`` and ``md5`` are
parameters so that tests (and mirrors) can supply their own archive.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from ..errors import EnasError
from . import cifar10

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
PART_SUFFIX = ".part"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60
HTTP_PARTIAL_CONTENT = 206
HTTP_RANGE_NOT_SATISFIABLE = 416

# progress(done_bytes, total_bytes); total is None when the server does not say.
Progress = Callable[[int, Optional[int]], None]


def download_cifar10(
    data_dir: str | Path,
    progress: Progress | None = None,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
) -> Path:
    """Make ``data_dir/cifar-10-batches-py`` hold the CIFAR-10 batches; return that folder."""
    data_dir = Path(data_dir).expanduser()
    target = data_dir / cifar10.FOLDER
    if is_complete(target):
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    archive = data_dir / ARCHIVE_NAME
    if not archive.is_file():
        fetch(url, archive, progress)
    verify_md5(archive, md5)
    extract_folder(archive, data_dir, cifar10.FOLDER)
    return target


def is_complete(folder: Path) -> bool:
    names = cifar10.TRAIN_FILES + (cifar10.TEST_FILE,)
    return all((folder / name).is_file() for name in names)


def fetch(url: str, destination: Path, progress: Progress | None = None) -> None:
    """Stream ``url`` to ``destination`` through ``destination.part``, resuming that file."""
    part = destination.with_name(destination.name + PART_SUFFIX)
    done = part.stat().st_size if part.is_file() else 0
    try:
        stream, total, resumed = _open(url, done)
        if not resumed:
            done = 0
        with stream, open(part, "ab" if resumed else "wb") as out:
            if progress:
                progress(done, total)
            while chunk := stream.read(CHUNK_BYTES):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise EnasError(
            f"cannot download {url} ({reason}); check the network and rerun (a partial file resumes), "
            f"or put the archive at {destination} yourself"
        ) from None
    if total is not None and done != total:
        raise EnasError(f"download of {url} stopped at {done} of {total} bytes; rerun to resume it")
    part.replace(destination)


def _open(url: str, start: int):
    """(readable stream, total bytes or None, whether it continues from ``start``)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        path = Path(urllib.request.url2pathname(parsed.path) if parsed.scheme else url)
        total = path.stat().st_size
        resumed = 0 < start <= total
        stream = open(path, "rb")
        stream.seek(start if resumed else 0)
        return stream, total, resumed
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code != HTTP_RANGE_NOT_SATISFIABLE:
            raise
        # The .part is already as long as the file (or longer): start over to be sure.
        response = urllib.request.urlopen(urllib.request.Request(url), timeout=TIMEOUT_S)
    resumed = response.status == HTTP_PARTIAL_CONTENT
    length = response.headers.get("Content-Length")
    total = int(length) + (start if resumed else 0) if length is not None else None
    return response, total, resumed


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: Path, expected: str) -> None:
    """Delete ``path`` and raise if its MD5 is not ``expected``."""
    actual = file_md5(path)
    if actual != expected.lower():
        path.unlink()
        raise EnasError(
            f"{path}: MD5 {actual} does not match the expected {expected}; "
            "the file was deleted, rerun to download it again"
        )


def extract_folder(archive: Path, data_dir: Path, folder: str) -> None:
    """Unpack ``folder`` from ``archive`` into ``data_dir``, atomically and safely."""
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=data_dir))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = [_checked(member, archive, folder) for member in tar.getmembers()]
                # The members are checked above; the "data" filter (Python 3.11.4+, 3.10.12+)
                # also drops permission bits and ownership from the archive.
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(scratch, members=members, **extra)
        except (tarfile.TarError, EOFError, OSError) as error:
            raise EnasError(f"{archive}: cannot unpack ({error}); delete it and rerun the download") from None
        unpacked = scratch / folder
        if not is_complete(unpacked):
            raise EnasError(f"{archive}: has no complete {folder}/ folder; delete it and rerun the download")
        target = data_dir / folder
        if target.exists():  # an incomplete copy from an earlier attempt
            shutil.rmtree(target)
        unpacked.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _checked(member: tarfile.TarInfo, archive: Path, folder: str) -> tarfile.TarInfo:
    """Refuse links, devices and any path that is absolute or leaves ``folder``."""
    parts = Path(member.name).parts
    inside = bool(parts) and parts[0] == folder and ".." not in parts and not Path(member.name).is_absolute()
    if not inside or not (member.isfile() or member.isdir()):
        raise EnasError(
            f"{archive}: refusing archive member {member.name!r} (outside {folder}/ or not a plain file)"
        )
    return member
