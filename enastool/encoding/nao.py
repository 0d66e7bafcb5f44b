"""NAO token sequences of micro architectures (reference sec. 2).

NAO (Luo et al. 2018) writes each block ``index_1 op_1 index_2 op_2`` as tokens with
index token = index + 1 and op token = op + 7; 0 is the start/end symbol of its
encoder-decoder and 12 tokens make its vocabulary. A cell is 4B tokens, the normal cell first.

The start/end symbol is no part of an architecture line: ``format_nao`` never writes it, and
``from_nao`` strips one leading and one trailing 0 if present (0 is never an architecture token,
so this cannot hide an error). Reported token positions count the line as given.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import EncodingError
from .micro import INTS_PER_BLOCK, NUM_INPUTS, Block, Cell, MicroArch
from .ops import MicroOp
from .textio import Record, parse_integer, strip_comment

BOUNDARY_TOKEN = 0  # NAO's start/end-of-sequence symbol
INDEX_OFFSET = 1  # index token = node index + 1
OP_OFFSET = 7  # op token = micro op id + 7
VOCAB_SIZE = OP_OFFSET + MicroOp.count()  # 12
# Index tokens must stay below the op tokens, so a cell may read nodes 0..5: at most 5 blocks.
MAX_BLOCKS = OP_OFFSET - INDEX_OFFSET - 1
FIELDS = ("index_1", "op_1", "index_2", "op_2")
MAX_TOKENS = 2 * INTS_PER_BLOCK * MAX_BLOCKS  # two cells of MAX_BLOCKS blocks, no start/end symbols


def _bad_count(count: int) -> EncodingError:
    return EncodingError(
        f"found {count} NAO tokens, expected a positive multiple of {2 * INTS_PER_BLOCK} "
        f"up to {MAX_TOKENS} (4 per block and cell, at most {MAX_BLOCKS} blocks)"
    )


def to_nao(arch: MicroArch) -> list[int]:
    """The 8B NAO tokens of a micro architecture (no start/end symbol)."""
    if not isinstance(arch, MicroArch):
        raise EncodingError(f"{getattr(arch, 'space', type(arch).__name__)} architectures have no NAO form")
    if arch.num_blocks > MAX_BLOCKS:
        raise EncodingError(
            f"found {arch.num_blocks} blocks per cell, NAO's vocabulary holds at most {MAX_BLOCKS}"
        )
    tokens = []
    for cell in arch.cells:
        for b in cell.blocks:
            for index, op in b.branches:
                tokens += [index + INDEX_OFFSET, op.enas_id + OP_OFFSET]
    return tokens


def from_nao(tokens: Sequence[int]) -> MicroArch:
    """Decode NAO tokens; errors name the 1-based token position within ``tokens``."""
    tokens = list(tokens)
    start = 1 if tokens[:1] == [BOUNDARY_TOKEN] else 0
    stop = len(tokens) - 1 if len(tokens) > start and tokens[-1] == BOUNDARY_TOKEN else len(tokens)
    body = tokens[start:stop]
    if not body or len(body) % (2 * INTS_PER_BLOCK) or len(body) > MAX_TOKENS:
        raise _bad_count(len(body))
    half = len(body) // 2
    cells = []
    for c, name in enumerate(("normal", "reduction")):
        blocks = []
        for j in range(half // INTS_PER_BLOCK):
            node = j + NUM_INPUTS
            first = c * half + INTS_PER_BLOCK * j
            chunk = body[first : first + INTS_PER_BLOCK]
            for t, token in enumerate(chunk):
                where = f"{name} cell node {node} {FIELDS[t]}"
                position = start + first + t + 1
                if t % 2 == 0 and not INDEX_OFFSET <= token < INDEX_OFFSET + node:
                    raise EncodingError(
                        f"{where}: found {token}, expected an index token "
                        f"{INDEX_OFFSET}..{INDEX_OFFSET + node - 1}",
                        position,
                    )
                if t % 2 == 1 and not OP_OFFSET <= token < VOCAB_SIZE:
                    raise EncodingError(
                        f"{where}: found {token}, expected an op token {OP_OFFSET}..{VOCAB_SIZE - 1}",
                        position,
                    )
            i1, o1, i2, o2 = chunk
            blocks.append(
                Block(
                    i1 - INDEX_OFFSET, MicroOp(o1 - OP_OFFSET), i2 - INDEX_OFFSET, MicroOp(o2 - OP_OFFSET)
                )
            )
        cells.append(Cell(tuple(blocks)))
    return MicroArch(*cells)


def format_nao(arch: MicroArch) -> str:
    """One line of space-separated NAO tokens."""
    return " ".join(map(str, to_nao(arch)))


def read_nao_records(text: str, source: str = "<string>") -> tuple[list[Record], list[EncodingError]]:
    """One micro architecture per non-blank line (``#`` comments allowed): every record and
    every error, located as ``source: record N: token P: ...`` with N counting the lines that
    hold a sequence."""
    records, errors = [], []
    for line in text.splitlines():
        words = strip_comment(line).split()
        if not words:
            continue
        index = len(records) + len(errors) + 1
        try:
            if len(words) > MAX_TOKENS + 2:  # refused before a token is parsed (2: start/end symbols)
                raise _bad_count(len(words))
            records.append(Record(from_nao([parse_integer(w, p) for p, w in enumerate(words, 1)]), source, index))
        except EncodingError as e:
            errors.append(e.located(source, index))
    if not records and not errors:
        errors.append(EncodingError("found no NAO sequence (the input is empty or only comments)").located(source))
    return records, errors


def parse_nao_text(text: str, source: str = "<string>") -> list[MicroArch]:
    """As :func:`read_nao_records`, but the architectures only; raises the first error."""
    records, errors = read_nao_records(text, source)
    if errors:
        raise errors[0]
    return [r.arch for r in records]
