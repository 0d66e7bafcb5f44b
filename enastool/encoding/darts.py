"""DARTS genotype text for micro architectures (reference sec. 2).

``Genotype(normal=[(op_name, input), ...], normal_concat=[...], reduce=[...], reduce_concat=[...])``
with two pairs per intermediate node in node order; inputs are numbered as in ENAS (0, 1 = the
cell inputs, j >= 2 = node j). The text is parsed into a syntax tree and only literals are read
from it: nothing is ever evaluated.

Concat lists: ENAS concatenates exactly the loose ends, so a genotype whose concat list names
other nodes (DARTS's usual ``range(2, 6)``) describes a network ENAS cannot build and is refused.
A concat list may be omitted; it then defaults to the loose ends. A ``range`` is judged by its
bounds, and a list by its length, against the cell's nodes before any of it is built.

Strict reading: a field given twice (by keyword or by position and keyword) and a boolean
where an integer belongs (``True`` is 1 to Python) are refused; a cell longer than
``MAX_BLOCKS`` blocks is refused before its pairs are read.
"""

from __future__ import annotations

import ast
import re

from ..errors import EncodingError
from .micro import MAX_BLOCKS, NUM_INPUTS, Block, Cell, MicroArch
from .ops import MicroOp

GENOTYPE = "Genotype"
FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
PAIRS_PER_NODE = 2
# "DARTS_V2 = Genotype(...)", as written in DARTS's genotypes.py, is accepted too.
_ASSIGNMENT = re.compile(r"^\s*[A-Za-z_]\w*\s*=\s*(?=[A-Za-z_(])")


def to_darts(arch: MicroArch) -> str:
    """The DARTS genotype of a micro architecture; the concat lists are the loose ends."""
    if not isinstance(arch, MicroArch):
        raise EncodingError(
            f"{getattr(arch, 'space', type(arch).__name__)} architectures have no DARTS genotype "
            "form (DARTS describes cells); convert a micro architecture"
        )
    parts = []
    for name, cell in zip(("normal", "reduce"), arch.cells):
        pairs = [(op.darts, index) for b in cell.blocks for index, op in b.branches]
        parts.append(f"{name}={pairs!r}")
        parts.append(f"{name}_concat={list(cell.loose_ends)!r}")
    return f"{GENOTYPE}({', '.join(parts)})"


def from_darts(text: str) -> MicroArch:
    """Parse a DARTS genotype (whitespace and newlines anywhere, ``Genotype`` prefix optional)."""
    fields = _genotype_fields(text)
    cells = []
    for name in ("normal", "reduce"):
        if name not in fields:
            raise EncodingError(f"DARTS genotype: missing '{name}'")
        cell = _cell(fields[name], name)
        concat_name = f"{name}_concat"
        if concat_name in fields:
            _check_concat(fields[concat_name], cell, concat_name)
        cells.append(cell)
    return MicroArch(*cells)


def _genotype_fields(text: str) -> dict[str, ast.expr]:
    body = _ASSIGNMENT.sub("", text.strip(), count=1)
    if body.startswith("("):
        body = GENOTYPE + body
    try:
        tree = ast.parse(body, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        reason = getattr(e, "msg", None) or type(e).__name__
        raise EncodingError(f"not a DARTS genotype ({reason}), expected Genotype(normal=[...], ...)") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == GENOTYPE):
        raise EncodingError("not a DARTS genotype, expected Genotype(normal=[...], ...)")
    if len(call.args) > len(FIELDS):
        raise EncodingError(f"DARTS genotype: found {len(call.args)} fields, expected at most {len(FIELDS)}")
    fields = dict(zip(FIELDS, call.args))
    for keyword in call.keywords:
        if keyword.arg not in FIELDS:
            raise EncodingError(
                f"DARTS genotype: unknown field {keyword.arg!r}, expected {', '.join(FIELDS)}"
            )
        if keyword.arg in fields:  # Python's parser lets a repeated keyword through
            raise EncodingError(f"DARTS genotype: field {keyword.arg!r} given twice, expected it once")
        fields[keyword.arg] = keyword.value
    return fields


def _literal(node: ast.expr, what: str):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        raise EncodingError(f"DARTS {what}: expected {_EXPECTED[what]}, found {ast.unparse(node)[:40]!r}") from None


_EXPECTED = {
    "normal": "a list of (op_name, input) pairs",
    "reduce": "a list of (op_name, input) pairs",
    "normal_concat": "a list of node numbers",
    "reduce_concat": "a list of node numbers",
}


def _cell(node: ast.expr, name: str) -> Cell:
    if isinstance(node, (ast.List, ast.Tuple)) and len(node.elts) > PAIRS_PER_NODE * MAX_BLOCKS:
        raise EncodingError(
            f"DARTS {name}: found {len(node.elts)} pairs, expected at most {PAIRS_PER_NODE * MAX_BLOCKS} "
            f"({MAX_BLOCKS} nodes, enastool's limit)"
        )
    pairs = _literal(node, name)
    if not isinstance(pairs, (list, tuple)) or not pairs:
        raise EncodingError(f"DARTS {name}: expected a non-empty list of (op_name, input) pairs")
    if len(pairs) % PAIRS_PER_NODE:
        raise EncodingError(f"DARTS {name}: found {len(pairs)} pairs, expected two per node (an even count)")
    branches = []
    for p, pair in enumerate(pairs):
        node_id = p // PAIRS_PER_NODE + NUM_INPUTS
        where = f"DARTS {name} node {node_id} pair {p % PAIRS_PER_NODE + 1}"
        if not (
            isinstance(pair, (list, tuple))
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], int)
            and not isinstance(pair[1], bool)
        ):
            raise EncodingError(f"{where}: found {pair!r}, expected (op_name, input)")
        op_name, index = pair
        op = _op(op_name, where)
        if not 0 <= index < node_id:
            raise EncodingError(f"{where}: found input {index}, expected 0..{node_id - 1}")
        branches.append((index, op))
    blocks = [
        Block(i1, o1, i2, o2) for (i1, o1), (i2, o2) in zip(branches[0::2], branches[1::2])
    ]
    return Cell(tuple(blocks))


def _op(name: str, where: str) -> MicroOp:
    try:
        return MicroOp.from_name(name)
    except KeyError:
        known = ", ".join(op.darts for op in MicroOp)
        raise EncodingError(f"{where}: op {name!r} has no ENAS equivalent, expected one of {known}") from None


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_concat(node: ast.expr, cell: Cell, name: str) -> None:
    """The concat list ``node`` must name exactly the cell's loose ends (in any order)."""
    loose = list(cell.loose_ends)

    def mismatch(found: str) -> EncodingError:
        return EncodingError(
            f"DARTS {name}: found {found}, expected the loose ends {loose} "
            "(ENAS concatenates exactly the nodes no block uses)"
        )

    # DARTS's own genotypes write concat lists as range(2, 6): read by its bounds only.
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        bounds = [_literal(arg, name) for arg in node.args]
        if node.keywords or not 1 <= len(bounds) <= 2 or not all(map(_is_integer, bounds)):
            raise EncodingError(f"DARTS {name}: expected range(start, stop) with integers")
        start, stop = (0, bounds[0]) if len(bounds) == 1 else bounds
        if stop - start > cell.num_nodes:  # more nodes than the cell has: never the loose ends
            raise mismatch(f"range({start}, {stop})")
        concat = list(range(start, stop))
    else:
        if isinstance(node, (ast.List, ast.Tuple)) and len(node.elts) > cell.num_nodes:
            raise mismatch(f"a list of {len(node.elts)} nodes")
        values = _literal(node, name)
        if not isinstance(values, (list, tuple)) or not all(map(_is_integer, values)):
            raise EncodingError(f"DARTS {name}: expected a list of node numbers")
        concat = list(values)
    if sorted(concat) != loose:
        raise mismatch(str(concat))
