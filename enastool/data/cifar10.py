"""CIFAR-10 from the python pickle batches (``data_batch_1..5``, ``test_batch``).

Each batch is a pickled dict with ``b'data'`` (N x 3072 uint8, channel-major: 1,024 red values
row by row, then green, then blue) and ``b'labels'`` (N ints 0..9). The files are read with an
unpickler that builds nothing but the plain containers and a numpy uint8 array: any other global
a file names is refused, so a tampered file cannot run code.

A damaged file (truncated, not a pickle, a pickle opcode claiming gigabytes, data whose length
is not a whole number of images, labels that do not match) is one EnasError naming the file and
what is wrong: the restricted unpickler runs on untrusted bytes, so any failure inside it is the
file's, never a bug to show as a traceback. Before it runs, the opcodes are walked once
(``pickletools.genops``, which builds nothing), and two things CPython's unpickler would act on
before failing are refused there: a length that claims more bytes than the file holds (it
would allocate it first, and on a bytearray opcode its failure prints a stray "SystemError ...
exported buffers" line), and a memo index beyond the objects stored so far (it would grow its
memo table to that index: a 4-byte index asks for tens of gigabytes, zeroed).

Validation split for ``purpose="search"``: the *last* images of the training set, as the
authors did (the last 5,000 of 50,000). The count scales with the training set
(``valid_size``: 5,000 per 50,000, at least one), so tiny test copies split the same way.
"""

from __future__ import annotations

import codecs
import io
import pickletools
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import EnasError

FOLDER = "cifar-10-batches-py"  # the archive's top-level folder
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
CHANNELS = 3
SIZE = 32
NUM_CLASSES = 10
PIXELS_PER_IMAGE = CHANNELS * SIZE * SIZE
AUTHORS_TRAIN_IMAGES = 50_000
AUTHORS_VALID_IMAGES = 5_000
# A real batch file is 31 MB (10,000 images); anything this large is not one, and is refused
# before it is read into memory.
MAX_BATCH_BYTES = 256 * 2**20
Pair = tuple[torch.Tensor, torch.Tensor]  # (uint8 images N,C,H,W, int64 labels N)

# numpy's own array-rebuilding function, whichever module it lives in for this numpy version.
_NUMPY_RECONSTRUCT = np.zeros(0).__reduce__()[0]
# The only globals a CIFAR batch pickle names: numpy's array rebuild (numpy 1.x and 2.x module
# names), the array and dtype classes, and the bytes codec Python 3 uses for protocol-2 bytes.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


def download_hint(data_dir: Path) -> str:
    return f"run `enastool data download cifar10 --data-dir {data_dir}`"


class _MemoIndexError(Exception):
    """A pickle's memo index that no pickler writes (see the module doc)."""


_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})  # the ones that grow the memo


def _check_opcodes(data: bytes) -> None:
    """Walk the opcodes without building anything: ValueError for a length past the end of
    ``data`` (from genops), _MemoIndexError for a memo index beyond the opcodes read so far
    (a pickler numbers its memo entries in order, so a real index is smaller)."""
    for count, (opcode, arg, _) in enumerate(pickletools.genops(data)):
        if opcode.name in _MEMO_OPCODES and not 0 <= int(arg) <= count:
            raise _MemoIndexError(f"memo index {arg} at opcode {count}")


class _BatchUnpickler(pickle.Unpickler):
    """Refuses every global outside ``_ALLOWED_GLOBALS``."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def find_batches_dir(data_dir: Path) -> Path:
    """The folder holding the batch files: ``data_dir`` itself or ``data_dir/cifar-10-batches-py``."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise EnasError(f"cifar10: data directory {data_dir} does not exist; {download_hint(data_dir)}")
    for folder in (data_dir / FOLDER, data_dir):
        if (folder / TRAIN_FILES[0]).is_file():
            return folder
    raise EnasError(
        f"cifar10: no {TRAIN_FILES[0]} in {data_dir} or {data_dir / FOLDER}; {download_hint(data_dir)}"
    )


def read_batch(path: Path, fix: str) -> Pair:
    """One batch file -> (uint8 images N,3,32,32, int64 labels N). ``fix`` ends every error."""
    if not path.is_file():
        what = "is missing" if not path.exists() else "is not a file"
        raise EnasError(f"cifar10: {path} {what}; the copy is incomplete: {fix}")
    try:
        size = path.stat().st_size
        if size > MAX_BATCH_BYTES:
            raise EnasError(
                f"cifar10: {path} is {size:,} bytes, far more than a CIFAR-10 batch (31 MB); {fix}"
            )
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as error:
        raise EnasError(f"cifar10: cannot read {path} ({error.strerror or error}); {fix}") from None
    damaged = f"cifar10: {path} is a damaged pickle (it claims more data than it holds); {fix}"
    try:
        _check_opcodes(data)
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except MemoryError:
        raise EnasError(damaged) from None
    except Exception as error:  # the restricted unpickler on damaged bytes: see the module doc
        if isinstance(error, ValueError) and "remain" in str(error):  # genops: "... but only N remain"
            raise EnasError(damaged) from None
        if isinstance(error, _MemoIndexError):
            raise EnasError(f"cifar10: {path} is a damaged pickle ({error}); {fix}") from None
        reason = " ".join(str(error).split())[:80] or type(error).__name__
        raise EnasError(f"cifar10: {path} is not a readable CIFAR-10 pickle batch ({reason}); {fix}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        found = sorted(map(repr, batch))[:6] if isinstance(batch, dict) else type(batch).__name__
        raise EnasError(f"cifar10: {path} lacks the b'data' and b'labels' entries (found {found}); {fix}")
    data = batch[b"data"]
    if isinstance(data, (bytes, bytearray)):
        if len(data) % PIXELS_PER_IMAGE:
            raise EnasError(
                f"cifar10: {path} holds {len(data):,} bytes of image data, not a whole number of "
                f"{PIXELS_PER_IMAGE}-byte images; {fix}"
            )
        data = np.frombuffer(data, dtype=np.uint8).reshape(-1, PIXELS_PER_IMAGE)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != PIXELS_PER_IMAGE:
        shape = getattr(data, "shape", type(data).__name__)
        raise EnasError(
            f"cifar10: {path} holds data of shape {shape}, expected (N, {PIXELS_PER_IMAGE}) uint8; {fix}"
        )
    labels = batch[b"labels"]
    if not isinstance(labels, list) or len(labels) != data.shape[0] or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < NUM_CLASSES for v in labels
    ):
        raise EnasError(
            f"cifar10: {path} needs {data.shape[0]} labels in 0..{NUM_CLASSES - 1}, one per image; {fix}"
        )
    # copy(): the unpickled array may be read-only, and torch wants to own writable memory.
    images = torch.from_numpy(data.reshape(-1, CHANNELS, SIZE, SIZE).copy())
    return images, torch.tensor(labels, dtype=torch.int64)


def read_cifar10(data_dir: Path) -> tuple[Pair, Pair]:
    """All 50,000 training images (batches 1..5 in order) and the test set, as (images, labels)."""
    folder = find_batches_dir(Path(data_dir))
    hint = download_hint(Path(data_dir))
    # Only the archive's own folder is safe to tell a user to delete; a download next to loose
    # files in data_dir is read in preference to them.
    fix = f"delete {folder} and {hint}" if folder != Path(data_dir) else hint
    train = [read_batch(folder / name, fix) for name in TRAIN_FILES]
    test = read_batch(folder / TEST_FILE, fix)
    return (torch.cat([im for im, _ in train]), torch.cat([lb for _, lb in train])), test


def valid_size(num_train: int) -> int:
    """Held-out images for the search: 5,000 of 50,000 as the authors, the same share if fewer."""
    return max(1, num_train * AUTHORS_VALID_IMAGES // AUTHORS_TRAIN_IMAGES)


def read_cifar10_splits(data_dir: Path, purpose: str) -> tuple[Pair, Pair, Pair]:
    """(train, valid, test) pairs for ``purpose``; see the module doc for the cut."""
    (images, labels), test = read_cifar10(data_dir)
    if purpose == "final":
        return (images, labels), test, test
    cut = images.shape[0] - valid_size(images.shape[0])
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:]), test
