"""Word-level text corpora: vocabulary, the three token splits, their info, a unigram baseline.

The conventions are those of Mikolov's Penn Treebank files as the ENAS authors read them
(``enas_lm/src/process.py``) and as AWD-LSTM does, shared by every text data set here:

- A split is text with one sentence per line and words separated by white space. Each line
  becomes its words followed by ``<eos>``; a blank line is a lone ``<eos>``. Lines end at
  ``\\n``, ``\\r\\n`` or ``\\r`` (Python's universal newlines); a final newline adds no line.
- The vocabulary is the set of distinct tokens of the *train* split (``<eos>`` included),
  numbered in sorted order: Python's code-point order, which is what the reference's
  ``sorted(words)`` gives. On PTB that is ``$ & 's ... <eos> <unk> N a ...``. Ids then depend
  on the word set alone, never on the order words first appear in.
- Valid and test may use train words only. PTB ships with rare words already replaced by
  ``<unk>``, so an unknown word means a different or damaged file: the readers refuse it
  (naming file, line and word) rather than map it silently.

The digest (:func:`corpus_digest`) identifies a corpus by content: SHA-256 over the vocabulary
(each word in id order, UTF-8, followed by ``\\n``) and then each split's ids as little-endian
32-bit integers, train, valid, test, each preceded by a zero byte. Two corpora with the same
digest give the same batches; runs record it to tell when a corpus changed under them (the
embedded ``pydoc`` corpus differs between Python versions).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

EOS = "<eos>"  # end of a sentence (line); predicted like any word, as in the reference
UNK = "<unk>"  # a word too rare to keep; already in place in PTB's files
SPLITS = ("train", "valid", "test")
_NEWLINE = re.compile(r"\r\n|\r|\n")


def lines_of(text: str) -> list[str]:
    """The lines of ``text`` under universal newlines; a final line break adds no empty line."""
    lines = _NEWLINE.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def tokens_of(lines: Iterable[str]) -> list[str]:
    """Each line's white-space separated words followed by ``<eos>``."""
    tokens: list[str] = []
    for line in lines:
        tokens.extend(line.split())
        tokens.append(EOS)
    return tokens


class Vocabulary:
    """Words and their ids: ``words[i]`` is the word with id ``i``. Immutable and hashable."""

    def __init__(self, words: Iterable[str]):
        self.words: tuple[str, ...] = tuple(words)
        self.index: dict[str, int] = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("vocabulary words must be distinct")
        if not self.words or any(not w or w != "".join(w.split()) for w in self.words):
            raise ValueError("vocabulary words must be non-empty and hold no white space")

    @classmethod
    def from_tokens(cls, tokens: Iterable[str]) -> "Vocabulary":
        """The distinct tokens in sorted (code-point) order, as the reference numbers them."""
        return cls(sorted(set(tokens)))

    def __len__(self) -> int:
        return len(self.words)

    @property
    def size(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    def __hash__(self) -> int:
        return hash(self.words)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words)"

    def id_of(self, word: str) -> int:
        return self.index[word]

    def word_of(self, token_id: int) -> str:
        return self.words[token_id]

    @property
    def eos(self) -> int:
        return self.index[EOS]

    @property
    def unk(self) -> int | None:
        """The id of ``<unk>``, or None when the corpus has no unknown-word token."""
        return self.index.get(UNK)

    def encode(self, tokens: Sequence[str]) -> torch.Tensor:
        """int64 ids of ``tokens``; a word outside the vocabulary raises ``KeyError``."""
        ids = np.fromiter(map(self.index.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        return torch.from_numpy(ids)

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return [self.words[int(i)] for i in values]


def first_unknown(tokens: Sequence[str], vocab: Vocabulary) -> tuple[int, str]:
    """(position, word) of the first token outside ``vocab``; ``ValueError`` if there is none."""
    for position, word in enumerate(tokens):
        if word not in vocab:
            return position, word
    raise ValueError("every token is in the vocabulary")


def line_of(tokens: Sequence[str], position: int) -> int:
    """1-based line of token ``position`` in a token list made by :func:`tokens_of`."""
    return 1 + sum(1 for token in tokens[:position] if token == EOS)


@dataclass(frozen=True)
class CorpusInfo:
    """What a corpus is: name, vocabulary size, tokens per split, content digest and source."""

    name: str
    vocab_size: int
    tokens: dict[str, int] = field(hash=False)
    digest: str
    source: str

    def as_dict(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size, "tokens": dict(self.tokens),
                "digest": self.digest, "source": self.source}


@dataclass(frozen=True, eq=False)
class Corpus:
    """Three splits of int64 token ids (1-D, on the CPU), their vocabulary and info."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: Vocabulary
    info: CorpusInfo

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise ValueError(f"split {name!r}: expected one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {name: int(self.split(name).numel()) for name in SPLITS}

    def unigram_perplexity(self, split: str = "test", add: float = 0.0) -> float:
        """Perplexity of ``split`` under a unigram model of train; see :func:`unigram_perplexity`."""
        return unigram_perplexity(self.train, self.split(split), len(self.vocab), add)


def make_corpus(name: str, source: str, vocab: Vocabulary, train: torch.Tensor,
                valid: torch.Tensor, test: torch.Tensor) -> Corpus:
    """A :class:`Corpus` with its info (sizes and digest) computed from the ids."""
    splits = {"train": train, "valid": valid, "test": test}
    info = CorpusInfo(
        name=name, vocab_size=len(vocab), tokens={k: int(v.numel()) for k, v in splits.items()},
        digest=corpus_digest(vocab, train, valid, test), source=source,
    )
    return Corpus(train, valid, test, vocab, info)


def corpus_digest(vocab: Vocabulary, *splits: torch.Tensor) -> str:
    """SHA-256 hex digest of the vocabulary and the splits' ids (see the module doc)."""
    digest = hashlib.sha256()
    digest.update("".join(word + "\n" for word in vocab.words).encode("utf-8"))
    for ids in splits:
        digest.update(b"\0")
        digest.update(ids.to(torch.int32).numpy().astype("<i4").tobytes())
    return digest.hexdigest()


def unigram_perplexity(train: torch.Tensor, evaluated: torch.Tensor, vocab_size: int,
                       add: float = 0.0) -> float:
    """Perplexity of ``evaluated`` under the unigram distribution of ``train``.

    p(w) = (count_train(w) + add) / (len(train) + add * vocab_size); every token of
    ``evaluated`` is predicted, ``<eos>`` included, as a language model's perplexity counts it.
    ``add = 0`` is the maximum-likelihood estimate and needs no smoothing here: the vocabulary
    is built from train, so every word has a count of at least one. ``add = 1`` is Laplace
    smoothing (a slightly worse baseline).
    """
    counts = torch.bincount(train, minlength=vocab_size).to(torch.float64) + add
    log_p = torch.log(counts / counts.sum())
    picked = log_p[evaluated]
    if not bool(torch.isfinite(picked).all()):
        raise ValueError("a token never seen in train has probability 0; use add > 0")
    return math.exp(-float(picked.mean()))
