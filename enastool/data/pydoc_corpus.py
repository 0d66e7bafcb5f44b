"""``pydoc``: the embedded offline text corpus, built from the standard library's ``pydoc_data.topics``.

Every Python installation carries ``pydoc_data.topics``: the language reference's topics that
``help()`` shows (79 topics, about 65,000 words of real technical English, with its code
examples). This corpus turns them into Penn-Treebank-style text, so that smoke runs, the demo
and the tests of the recurrent space need no download. The rule is fixed:

1. **Order and paragraphs.** Topics in sorted key order; each topic's text is cut into
   paragraphs (runs of non-blank lines, a blank line holding only spaces or tabs), numbered
   0, 1, 2, ... across the whole corpus.
2. **Cut.** Paragraph p goes to ``valid`` when p % 10 == 8, to ``test`` when p % 10 == 9, else
   to ``train`` (80 / 10 / 10 by paragraphs; whole paragraphs, so no sentence is split, and
   interleaved, so the three splits cover the same manuals, as PTB's sections do its newspaper).
3. **Sentences.** A paragraph's lines are joined with single spaces, lower-cased and cut after
   each ``.``, ``!`` or ``?`` that is followed by white space. Each sentence is one line of the
   corpus (so it ends in ``<eos>``); a sentence without tokens is dropped.
4. **Tokens**, scanned left to right (everything else, i.e. punctuation and symbols, is
   dropped, as Mikolov's PTB has no punctuation):
   - a number (a digit, then letters, digits, ``_`` and ``.``: ``3``, ``0.5``, ``0x1f``) -> ``N``;
   - a clitic after a word, split off as in PTB: ``n't``, ``'s``, ``'re``, ``'ve``, ``'ll``,
     ``'d``, ``'m`` (``isn't`` -> ``is n't``, ``it's`` -> ``it 's``);
   - a word: a letter or ``_``, then letters, digits and ``_``, with inner hyphens joining
     words (``__init__``, ``built-in``, ``expression1``).
5. **Vocabulary.** A word is kept when it occurs at least :data:`MIN_COUNT` times in train;
   every other word, in all three splits, becomes ``<unk>``. The resulting PTB-format lines go
   through the same reader rules as PTB (:mod:`enastool.data.text`): ids in sorted order.

``pydoc_data.topics`` is regenerated for every Python release, so the corpus differs between
Python versions (even patch releases). Its :class:`~enastool.data.text.CorpusInfo` records the
Python version in ``source`` and the content ``digest``; runs keep both and can tell. Sizes:

=======  ==========  ======  =====  =====  ================  ========
Python   vocabulary  train   valid  test   digest (prefix)   unigram
=======  ==========  ======  =====  =====  ================  ========
3.10.13       1,695  54,649  6,394  6,563  397948baef61a5d5     282.2
3.11.2        1,691  55,075  6,988  6,534  82a31a362183e41b     268.1
3.11.7        1,700  55,445  6,309  7,137  44a23715298c8f42     268.6
3.12.1        1,738  57,243  7,355  7,195  30ae08ca52799c9b     287.1
3.13.0        1,751  59,028  6,624  7,870  125f0b83acbfcef5     270.8
=======  ==========  ======  =====  =====  ================  ========

(:data:`KNOWN_BUILDS`, measured with the CPython builds at hand: python.org sources for all but
3.11.2, Debian's. Tokens include ``<eos>``; ``unigram`` is the test perplexity of the train
unigram model, :func:`enastool.data.text.unigram_perplexity`.) Building it takes about a
quarter of a second.
"""

from __future__ import annotations

import collections
import platform
import re

from . import text

NAME = "pydoc"
MIN_COUNT = 3  # train occurrences a word needs to keep its own id; rarer words become <unk>
PARAGRAPH_CYCLE = 10  # paragraphs are dealt to the splits in cycles of ten ...
VALID_SLOT = 8  # ... the ninth of each cycle to valid ...
TEST_SLOT = 9  # ... and the tenth to test.
NUMBER = "N"  # PTB's token for every number

_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t]*\n)+")  # one or more blank lines
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TOKEN = re.compile(
    r"(?P<number>\d[\w.]*)"
    r"|(?P<clitic>(?<=\w)(?:n't|'(?:s|re|ve|ll|d|m))\b)"
    r"|(?P<word>[^\W\d]\w*?(?=n't\b)|[^\W\d]\w*(?:-[^\W\d]\w*)*)"
)

# (Python version, vocabulary size, train, valid, test tokens, digest prefix, unigram test
# perplexity) of the builds measured when this corpus was defined (the module doc's table).
KNOWN_BUILDS: tuple[tuple[str, int, int, int, int, str, float], ...] = (
    ("3.10.13", 1695, 54649, 6394, 6563, "397948baef61a5d5", 282.2),
    ("3.11.2", 1691, 55075, 6988, 6534, "82a31a362183e41b", 268.1),
    ("3.11.7", 1700, 55445, 6309, 7137, "44a23715298c8f42", 268.6),
    ("3.12.1", 1738, 57243, 7355, 7195, "30ae08ca52799c9b", 287.1),
    ("3.13.0", 1751, 59028, 6624, 7870, "125f0b83acbfcef5", 270.8),
)


def source_topics() -> dict[str, str]:
    from pydoc_data.topics import topics  # imported here: a 0.8 MB module only this corpus needs

    return topics


def sentences(paragraph: str) -> list[list[str]]:
    """The tokenised sentences of one paragraph (rules 3 and 4 of the module doc)."""
    joined = " ".join(paragraph.lower().split())
    result = []
    for sentence in _SENTENCE_END.split(joined):
        tokens = [NUMBER if m.lastgroup == "number" else m.group() for m in _TOKEN.finditer(sentence)]
        if tokens:
            result.append(tokens)
    return result


def split_sentences(topics: dict[str, str]) -> dict[str, list[list[str]]]:
    """Sentences per split, before rare words are replaced (rules 1 to 4)."""
    splits: dict[str, list[list[str]]] = {name: [] for name in text.SPLITS}
    number = 0
    for key in sorted(topics):
        paragraphs = [piece for piece in _PARAGRAPH_BREAK.split(topics[key]) if piece.strip()]
        for paragraph in paragraphs:
            slot = number % PARAGRAPH_CYCLE
            name = "valid" if slot == VALID_SLOT else "test" if slot == TEST_SLOT else "train"
            splits[name].extend(sentences(paragraph))
            number += 1
    return splits


def ptb_lines(topics: dict[str, str]) -> dict[str, list[str]]:
    """The corpus as PTB-format lines per split: rare words already ``<unk>`` (rule 5)."""
    splits = split_sentences(topics)
    counts = collections.Counter(word for sentence in splits["train"] for word in sentence)
    kept = {word for word, count in counts.items() if count >= MIN_COUNT}
    return {
        name: [" ".join(w if w in kept else text.UNK for w in sentence) for sentence in found]
        for name, found in splits.items()
    }


def read_pydoc(data_dir=None) -> text.Corpus:
    """The embedded corpus of this Python; ``data_dir`` is ignored (nothing to read)."""
    lines = ptb_lines(source_topics())
    tokens = {name: text.tokens_of(split) for name, split in lines.items()}
    # Every valid/test word is a kept train word or <unk>; <unk> is in train (some word is
    # always rarer than MIN_COUNT), and is added should a future text have none.
    vocab = text.Vocabulary.from_tokens(tokens["train"] + [text.UNK])
    ids = {name: vocab.encode(split) for name, split in tokens.items()}
    source = f"pydoc_data.topics of Python {platform.python_version()}"
    return text.make_corpus(NAME, source, vocab, ids["train"], ids["valid"], ids["test"])
