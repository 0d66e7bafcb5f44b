"""The registry of text data sets by name, for the recurrent (language-model) space.

Each entry reads a :class:`~enastool.data.text.Corpus`: three splits of token ids, the
vocabulary and the info. Unlike the image data sets there is no ``purpose``: the reference
trains on train, validates (and rewards the controller) on valid and reports test, in the
search and in final training alike.

- ``pydoc`` (the default): embedded, built from this Python's ``pydoc_data.topics``; needs no
  directory and no download (:mod:`enastool.data.pydoc_corpus`).
- ``ptb``: Mikolov's Penn Treebank files in a data directory (:mod:`enastool.data.ptb`); the
  data set a ``--data-dir`` selects, as CIFAR-10 is for the image spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import EnasError
from . import ptb, pydoc_corpus
from .datasets import default_data_dir
from .text import Corpus

DEFAULT_TEXT_DATASET = pydoc_corpus.NAME  # embedded, offline: the corpus when no directory is given
TEXT_DATASET_WITH_DIR = ptb.NAME  # what a data directory holds


@dataclass(frozen=True)
class TextSource:
    """A registered text data set: ``read(data_dir)`` returns its corpus."""

    name: str
    description: str
    needs_files: bool
    read: Callable[[Path], Corpus]


TEXT_DATASETS = {
    pydoc_corpus.NAME: TextSource(
        pydoc_corpus.NAME,
        "Python's own pydoc topics as PTB-style text (about 70,000 tokens, no download)",
        needs_files=False, read=pydoc_corpus.read_pydoc,
    ),
    ptb.NAME: TextSource(
        ptb.NAME, "Penn Treebank, Mikolov's ptb.{train,valid,test}.txt (929k/74k/82k tokens, 10k words)",
        needs_files=True, read=ptb.read_ptb,
    ),
}


def text_dataset_names() -> tuple[str, ...]:
    return tuple(TEXT_DATASETS)


def load_corpus(name: str, data_dir: str | Path | None = None) -> Corpus:
    """The corpus ``name``; data sets with files read ``data_dir`` (default: the data cache)."""
    source = TEXT_DATASETS.get(str(name).strip().lower())
    if source is None:
        raise EnasError(f"unknown text data set {name!r}: expected one of {', '.join(TEXT_DATASETS)}")
    folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return source.read(folder)
