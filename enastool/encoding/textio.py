"""Reading and writing architectures as text (plain Python: no torch import).

A source is a file path or ``-`` (stdin). Its text is recognised without a flag as one of:

- JSON (first non-blank character ``{`` or ``[``): one ``arch.to_dict()`` object, a list of
  them, or JSON Lines. Extra keys (e.g. ``"score"``) are ignored.
- DARTS genotypes (first token starts with ``Genotype``): one record per genotype, micro or
  rnn by the genotype's fields (``normal``/``reduce`` or ``recurrent``/``concat``).
- A stream of records, each opened by a space keyword (``macro``, ``micro``, ``rnn``: the names
  in ``SPACES``) and running to the next keyword, so a record may span lines. A word at the start
  of a line also opens a record, which is how a misspelt keyword (``mcro``) is reported.
- One bare authors' encoding: integers separated by any whitespace. Its space is the ``space``
  argument, or the only space whose length rule accepts the integer count and in which the
  integers are valid (see ``_infer_space``).

``#`` starts a comment to the end of the line (not in JSON). Token positions in errors are
1-based within a record and do not count its keyword, so a record and the same bare encoding
report the same positions.

Input that holds no architecture at all (an empty file, only comments, an empty JSON list, a
word like ``Genotypes(`` that is no genotype) is an error, never "0 records valid". A record's
size is checked against its space's limit (``check_length`` of the architecture classes) before
any of its integers is parsed, and reading is linear in the input.
"""

from __future__ import annotations

import codecs
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable

from ..errors import EncodingError
from .darts import DARTS_SPACES, GENOTYPE, from_darts
from .spaces import SPACES, Arch, space_class

STDIN = "-"
STDIN_NAME = "<stdin>"  # how messages name standard input
MAX_INPUT_BYTES = 16 * 2**20  # far beyond any architecture list; stops a mistaken huge file
MAX_DIGITS = 12  # longer "numbers" are never ids, bits or indices: likely a pasted blob
COMMENT = "#"
_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*", re.ASCII)


@dataclass(frozen=True)
class Record:
    """One parsed architecture and where it came from (``index`` is the 1-based record number)."""

    arch: Arch
    source: str
    index: int


# --------------------------------------------------------------------------- tokens
def strip_comment(line: str) -> str:
    return line.split(COMMENT, 1)[0]


def parse_integer(token: str, position: int) -> int:
    """A non-negative integer token; EncodingError naming ``position`` otherwise."""
    if not _INTEGER.fullmatch(token):
        raise EncodingError(f"found {_shorten(token)!r}, expected an integer", position)
    digits = token.lstrip("-")
    if len(digits) > MAX_DIGITS:
        raise EncodingError(
            f"found a {len(digits)}-digit number, expected at most {MAX_DIGITS} digits", position
        )
    value = int(token)
    if value < 0:
        raise EncodingError(f"found {value}, expected a non-negative integer", position)
    return value


def _shorten(token: str, limit: int = 20) -> str:
    return token if len(token) <= limit else token[:limit] + "..."


# --------------------------------------------------------------------------- parsing
def parse_text(
    text: str, source: str = "<string>", space: str | None = None
) -> tuple[list[Record], list[EncodingError]]:
    """Every record of ``text`` and every error (one per bad record; the rest still parse)."""
    if space is not None:
        space_class(space)  # an unknown --space is the caller's error: raise it now
    source = source_name(source)
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        records, errors = _parse_json(text, source, space)
        if not records and not errors:
            return [], [EncodingError("found an empty JSON list, expected architecture objects").located(source)]
    else:
        words = " ".join(strip_comment(line) for line in text.splitlines()).split()
        if not words:
            return [], [EncodingError("found no architecture (the input is empty or only comments)").located(source)]
        parse = _parse_darts if words[0].startswith(GENOTYPE) else _parse_records
        records, errors = parse(text, source, space)
    if not records and not errors:  # every reader above should have said why; never "0 valid"
        errors = [EncodingError("found no architecture record").located(source)]
    return records, errors


def _collect(source: str, items: Iterable[tuple[int, Callable[[], Arch]]]):
    records, errors = [], []
    for index, build in items:
        try:
            records.append(Record(build(), source, index))
        except EncodingError as e:
            errors.append(e.located(source, index))
    return records, errors


@dataclass
class _Chunk:
    keyword: str | None  # None: a bare encoding
    tokens: list[str]


def _chunks(text: str) -> list[_Chunk]:
    chunks: list[_Chunk] = []
    for line in text.splitlines():
        for i, word in enumerate(strip_comment(line).split()):
            in_stream = not chunks or chunks[-1].keyword is not None
            starts_record = word.lower() in SPACES or (i == 0 and in_stream and _WORD.fullmatch(word))
            if starts_record:
                chunks.append(_Chunk(word, []))
            else:
                if not chunks:
                    chunks.append(_Chunk(None, []))
                chunks[-1].tokens.append(word)
    return chunks


def _parse_records(text: str, source: str, space: str | None):
    chunks = _chunks(text)
    return _collect(
        source,
        ((index, lambda c=chunk: _build_record(c, space)) for index, chunk in enumerate(chunks, 1)),
    )


def _build_record(chunk: _Chunk, space: str | None) -> Arch:
    keyword = chunk.keyword.lower() if chunk.keyword is not None else None
    if keyword is not None and keyword not in SPACES:
        close = difflib.get_close_matches(keyword, SPACES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EncodingError(
            f"found {_shorten(chunk.keyword)!r}, expected a space keyword: {' or '.join(SPACES)}{hint}"
        )
    if keyword is not None and space is not None and keyword != space:
        raise EncodingError(f"found a {keyword} record, but --space {space} was asked for")
    if not chunk.tokens:
        raise EncodingError(f"found no integers after {keyword!r}, expected a {keyword} encoding (truncated record?)")
    _check_length(len(chunk.tokens), keyword or space)
    values = [parse_integer(token, position) for position, token in enumerate(chunk.tokens, 1)]
    cls = SPACES[keyword] if keyword is not None else _infer_space(values, space)
    return cls.from_ints(values)


def _check_length(count: int, space: str | None) -> None:
    """Refuse a record longer than its space's largest architecture (any space's, when the
    space is not known yet) before a single integer is parsed."""
    if space is not None:
        SPACES[space].check_length(count)
        return
    reasons = []
    for cls in SPACES.values():
        try:
            cls.check_length(count)
            return
        except EncodingError as e:
            reasons.append(f"{cls.space}: {e.detail.split(', ', 1)[-1]}")
    raise EncodingError(f"found {count} integers, more than any space accepts ({'; '.join(reasons)})")


def _infer_space(values: list[int], space: str | None) -> type:
    """The space of a bare encoding: ``space`` if given, else the only space it parses in.

    Length rules come first; when several spaces accept the count (16 integers fit both a
    2-block micro and an 8-node rnn cell), the one in which the integers are valid wins. When
    they are valid in none of them, the error gives each space's first complaint, since which
    one the user meant cannot be known.
    """
    if space is not None:
        return SPACES[space]
    count = len(values)
    fits = [cls for cls in SPACES.values() if cls.accepts_length(count)]
    if len(fits) > 1:
        complaints = {cls.space: _first_error(cls, values) for cls in fits}
        if all(complaints.values()):
            reasons = "; ".join(f"{name}: {error}" for name, error in complaints.items())
            raise EncodingError(f"found {count} integers, valid in no space that accepts that many ({reasons})")
        fits = [cls for cls in fits if complaints[cls.space] is None]
    if len(fits) == 1:
        return fits[0]
    if fits:
        names = " and ".join(cls.space for cls in fits)
        raise EncodingError(
            f"found {count} integers, which more than one space accepts ({names}); "
            f"pass --space {' or --space '.join(cls.space for cls in fits)}"
        )
    reasons = []
    for cls in SPACES.values():
        try:
            cls.from_ints([0] * count)
        except EncodingError as e:
            reasons.append(f"{cls.space}: {e.detail.split(', ', 1)[-1]}")
    raise EncodingError(f"found {count} integers, which no space accepts ({'; '.join(reasons)})")


def _first_error(cls, values: list[int]) -> EncodingError | None:
    """Why ``values`` is not a ``cls`` encoding, or None when it is one."""
    try:
        cls.from_ints(values)
    except EncodingError as e:
        return e
    return None


def _parse_darts(text: str, source: str, space: str | None):
    body = "\n".join(strip_comment(line) for line in text.splitlines())
    starts = [m.start() for m in re.finditer(rf"\b{GENOTYPE}\b", body)]
    # No whole word "Genotype" (e.g. "Genotypes("): one piece, which from_darts then refuses.
    pieces = [body[a:b] for a, b in zip(starts, starts[1:] + [len(body)])] if starts else [body]

    return _collect(source, ((i, lambda p=piece: _darts_record(p, space)) for i, piece in enumerate(pieces, 1)))


def _darts_record(piece: str, space: str | None) -> Arch:
    """One DARTS genotype; its form (micro or recurrent) says its space, which ``space`` must match."""
    if space is not None and space not in DARTS_SPACES:
        raise EncodingError(f"found a DARTS genotype, but {space} architectures have no DARTS form")
    arch = from_darts(piece)
    if space is not None and arch.space != space:
        raise EncodingError(f"found a DARTS {arch.space} genotype, but --space {space} was asked for")
    return arch


def _parse_json(text: str, source: str, space: str | None):
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else [data]
    except (ValueError, RecursionError) as whole:
        if not text.lstrip().startswith("{"):
            return [], [EncodingError(f"invalid JSON: {_json_reason(whole)}").located(source)]
        items = [_json_line(line) for line in text.splitlines() if line.strip()]  # JSON Lines
    return _collect(source, ((i, lambda d=item: _from_json_item(d, space)) for i, item in enumerate(items, 1)))


def _json_line(line: str):
    try:
        return json.loads(line)
    except (ValueError, RecursionError) as e:
        return _BadJson(_json_reason(e))


@dataclass(frozen=True)
class _BadJson:
    reason: str


def _json_reason(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    return type(error).__name__


def _from_json_item(item, space: str | None) -> Arch:
    if isinstance(item, _BadJson):
        raise EncodingError(f"invalid JSON: {item.reason}")
    if not isinstance(item, dict):
        raise EncodingError(f"found a JSON {type(item).__name__}, expected an architecture object")
    name = item.get("space", space)
    if name is None:
        raise EncodingError(f"JSON record: missing 'space', expected one of {', '.join(SPACES)}")
    if not isinstance(name, str) or name not in SPACES:
        raise EncodingError(f"JSON record: found space {_shorten(str(name))!r}, expected one of {', '.join(SPACES)}")
    if space is not None and name != space:
        raise EncodingError(f"found a {name} record, but --space {space} was asked for")
    try:
        return SPACES[name].from_dict(item)
    except (TypeError, ValueError, AttributeError) as e:
        # A structure from_dict did not foresee (e.g. a number where a list belongs).
        raise EncodingError(f"JSON {name} record: unexpected structure ({type(e).__name__})") from None


# --------------------------------------------------------------------------- sources
def read_text(source: str | Path, stdin: IO | None = None) -> str:
    """The text of a file or ``-`` (stdin); any trouble reading it is one located error."""
    try:
        return _decode(_read_bytes(str(source), stdin))
    except EncodingError as e:
        raise e.located(source_name(source)) from None


def source_name(source: str | Path) -> str:
    """How messages name a source: its path, or ``<stdin>`` for ``-``."""
    return STDIN_NAME if str(source) == STDIN else str(source)


def read_source(
    source: str | Path, space: str | None = None, stdin: IO | None = None
) -> tuple[list[Record], list[EncodingError]]:
    """Parse a file or ``-`` (stdin). Any trouble reading it is one located error."""
    try:
        text = read_text(source, stdin)
    except EncodingError as e:
        return [], [e]
    return parse_text(text, source_name(source), space)


def _read_bytes(name: str, stdin: IO | None) -> bytes:
    if name == STDIN:
        stream = stdin if stdin is not None else sys.stdin
        stream = getattr(stream, "buffer", stream)  # bytes, so that bad UTF-8 is ours to report
        try:
            data = stream.read(MAX_INPUT_BYTES + 1)
        except UnicodeDecodeError as e:
            raise EncodingError(f"not UTF-8 text (byte 0x{e.object[e.start]:02x}), expected text") from None
        except OSError as e:
            raise EncodingError(f"cannot read stdin ({e.strerror or e})") from None
        data = data.encode() if isinstance(data, str) else data
    else:
        path = Path(name)
        try:
            with path.open("rb") as f:
                data = f.read(MAX_INPUT_BYTES + 1)
        except FileNotFoundError:
            raise EncodingError("no such file; pass an existing file, or - to read stdin") from None
        except IsADirectoryError:
            raise EncodingError("is a directory, expected a file of architectures") from None
        except PermissionError:
            raise EncodingError("cannot read the file (permission denied)") from None
        except OSError as e:
            raise EncodingError(f"cannot read the file ({e.strerror or e})") from None
    if len(data) > MAX_INPUT_BYTES:
        raise EncodingError(
            f"input larger than {MAX_INPUT_BYTES // 2**20} MiB, expected a file of architectures"
        )
    return data


def _decode(data: bytes) -> str:
    nul = data.find(b"\0")
    if nul >= 0:
        raise EncodingError(f"found binary data (NUL byte at offset {nul}), expected text")
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0  # editors on Windows add it
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = skip + e.start
        raise EncodingError(
            f"found bytes that are not UTF-8 (0x{data[offset]:02x} at offset {offset}), expected text"
        ) from None


def load_archs(source: str | Path, space: str | None = None, stdin: IO | None = None) -> list[Arch]:
    """The architectures of a source; raises its first error."""
    records, errors = read_source(source, space, stdin)
    if errors:
        raise errors[0]
    return [r.arch for r in records]


def load_one(source: str | Path, space: str | None = None, stdin: IO | None = None) -> Arch:
    """Exactly one architecture; an error naming the count otherwise."""
    archs = load_archs(source, space, stdin)
    if len(archs) != 1:
        raise EncodingError(f"found {len(archs)} records, expected exactly one architecture").located(
            source_name(source)
        )
    return archs[0]


# --------------------------------------------------------------------------- writing
def format_record(arch: Arch) -> str:
    return f"{arch.space} {arch.format()}"


def write_records(archs: Iterable[Arch], stream: IO[str]) -> None:
    for arch in archs:
        stream.write(format_record(arch) + "\n")


def to_json(archs: Iterable[Arch], lines: bool = False) -> str:
    """A JSON list with one architecture per line, or JSON Lines when ``lines``."""
    rows = [json.dumps(arch.to_dict()) for arch in archs]
    if lines:
        return "".join(row + "\n" for row in rows)
    return "[\n" + ",\n".join(rows) + "\n]\n" if rows else "[]\n"


def from_json(text: str, source: str = "<string>", space: str | None = None) -> list[Arch]:
    """The reverse of :func:`to_json` (either form); raises the first error."""
    records, errors = _parse_json(text, source, space)
    if errors:
        raise errors[0]
    return [r.arch for r in records]
