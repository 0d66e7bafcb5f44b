"""Penn Treebank in Mikolov's preprocessed form: ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt``.

One sentence per line, lower case, numbers already ``N``, rare words already ``<unk>``, a
10,000-word vocabulary with ``<eos>`` (929,589 / 73,760 / 82,430 tokens with one ``<eos>`` per
line). The token, vocabulary and unknown-word conventions are in :mod:`enastool.data.text`.

The files are looked for in ``data_dir`` itself or in ``data_dir/ptb`` (where ``enastool data
download ptb`` puts them). Every way a file can be unusable (missing, unreadable, binary, not
UTF-8, no words, a valid/test word not in train) is one :class:`EnasError` line naming the file
and the fix. A leading UTF-8 byte-order mark is ignored.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EnasError
from . import text

NAME = "ptb"
FOLDER = "ptb"  # the download's folder inside a data directory
FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
SOURCE = "Penn Treebank, Mikolov's preprocessed files"
_BINARY_MARK = b"\0"


def download_hint(data_dir: Path) -> str:
    return f"run `enastool data download ptb --data-dir {data_dir}`"


def find_ptb_dir(data_dir: Path) -> Path:
    """The folder holding ``ptb.train.txt``: ``data_dir`` itself or ``data_dir/ptb``."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise EnasError(f"ptb: data directory {data_dir} does not exist; {download_hint(data_dir)}")
    for folder in (data_dir, data_dir / FOLDER):
        if (folder / FILES["train"]).is_file():
            return folder
    raise EnasError(
        f"ptb: no {FILES['train']} in {data_dir} or {data_dir / FOLDER}; {download_hint(data_dir)}"
    )


def read_text(path: Path, fix: str) -> str:
    """The UTF-8 text of ``path``; ``fix`` ends every error message."""
    if not path.is_file():
        raise EnasError(f"ptb: {path} is missing; {fix}")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise EnasError(f"ptb: cannot read {path} ({error.strerror or error}); {fix}") from None
    if _BINARY_MARK in raw:
        offset = raw.index(_BINARY_MARK)
        raise EnasError(f"ptb: {path} is a binary file, not text (a NUL byte at offset {offset}); {fix}")
    try:
        decoded = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise EnasError(
            f"ptb: {path} is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); {fix}"
        ) from None
    if not decoded or decoded.isspace():
        raise EnasError(f"ptb: {path} holds no words; {fix}")
    return decoded


def read_ptb(data_dir: Path) -> text.Corpus:
    """The three PTB files of ``data_dir`` as a :class:`~enastool.data.text.Corpus`."""
    data_dir = Path(data_dir)
    folder = find_ptb_dir(data_dir)
    hint = download_hint(data_dir)
    # Only the download's own folder is safe to tell a user to delete.
    fix = f"delete {folder} and {hint}" if folder != data_dir else f"replace it, or {hint}"
    paths = {split: folder / name for split, name in FILES.items()}
    tokens = {split: text.tokens_of(text.lines_of(read_text(path, fix))) for split, path in paths.items()}
    vocab = text.Vocabulary.from_tokens(tokens["train"])
    ids = {}
    for split, words in tokens.items():
        try:
            ids[split] = vocab.encode(words)
        except KeyError:  # only valid or test can miss a word: the vocabulary is train's
            position, word = text.first_unknown(words, vocab)
            raise EnasError(
                f"ptb: {paths[split]} line {text.line_of(words, position)}: word {word!r} is not in the "
                f"vocabulary of {paths['train']} (PTB has rare words replaced by {text.UNK} already); "
                "use the three files of one copy, or replace the word with <unk>"
            ) from None
    return text.make_corpus(NAME, SOURCE, vocab, ids["train"], ids["valid"], ids["test"])
