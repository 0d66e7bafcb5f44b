"""DARTS genotype text for micro and recurrent architectures (reference sec. 2 and 8).

Micro: ``Genotype(normal=[(op_name, input), ...], normal_concat=[...], reduce=[...],
reduce_concat=[...])`` with two pairs per intermediate node in node order; inputs are numbered
as in ENAS (0, 1 = the cell inputs, j >= 2 = node j).

Recurrent (DARTS's ``rnn/genotypes.py``): ``Genotype(recurrent=[(activation_name, input), ...],
concat=range(1, N+1))`` with one pair per node 1..N in node order; input j is node j as ENAS
numbers it (0 = the fixed node 0; DARTS's ``states[0]`` is the same node). A genotype is
recurrent when it names ``recurrent`` or ``concat``, or has exactly two positional fields.

The text is parsed into a syntax tree and only literals are read from it: nothing is ever
evaluated.

Concat lists must describe the network ENAS builds, or the genotype is refused. Micro: ENAS
concatenates exactly the loose ends, so DARTS's usual ``range(2, 6)`` is refused. Recurrent:
ENAS (the authors' corrected GPU code) averages every node 1..N, as DARTS's ``range(1, N+1)``
does; a concat naming other nodes (DARTS's transcription of the first ENAS cell averages only
its loose ends) is another network. Either concat may be omitted; it then defaults to what
ENAS builds. The order of a concat list is free (concatenation order does not change what a
cell can compute, and a mean does not depend on it). A ``range`` is judged by its bounds, and a
list by its length, against the cell's nodes before any of it is built.

Strict reading: a field given twice (by keyword or by position and keyword) and a boolean
where an integer belongs (``True`` is 1 to Python) are refused; a cell longer than
``MAX_BLOCKS`` blocks (``MAX_NODES`` nodes) is refused before its pairs are read.
"""

from __future__ import annotations

import ast
import re

from ..errors import EncodingError
from .micro import MAX_BLOCKS, NUM_INPUTS, Block, Cell, MicroArch
from .ops import Activation, MicroOp
from .recurrent import FIRST_NODE, MAX_NODES, RecurrentArch, RecurrentNode

GENOTYPE = "Genotype"
FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
RECURRENT_FIELDS = ("recurrent", "concat")
NO_OP = "none"  # DARTS's zero op: a node that computes nothing, which ENAS lacks
PAIRS_PER_NODE = 2
# "DARTS_V2 = Genotype(...)", as written in DARTS's genotypes.py, is accepted too.
_ASSIGNMENT = re.compile(r"^\s*[A-Za-z_]\w*\s*=\s*(?=[A-Za-z_(])")


def to_darts(arch: MicroArch | RecurrentArch) -> str:
    """The DARTS genotype of a micro or recurrent architecture (see the module docstring)."""
    writer = _WRITERS.get(getattr(arch, "space", None))
    if writer is None:
        raise EncodingError(
            f"{getattr(arch, 'space', type(arch).__name__)} architectures have no DARTS genotype "
            f"form (DARTS describes cells); convert a {' or '.join(_WRITERS)} architecture"
        )
    return writer(arch)


def _micro_to_darts(arch: MicroArch) -> str:
    """Micro: two pairs per node; the concat lists are the loose ends."""
    parts = []
    for name, cell in zip(("normal", "reduce"), arch.cells):
        pairs = [(op.darts, index) for b in cell.blocks for index, op in b.branches]
        parts.append(f"{name}={pairs!r}")
        parts.append(f"{name}_concat={list(cell.loose_ends)!r}")
    return f"{GENOTYPE}({', '.join(parts)})"


def from_darts(text: str) -> MicroArch | RecurrentArch:
    """Parse a DARTS genotype (whitespace and newlines anywhere, ``Genotype`` prefix optional)."""
    fields = _genotype_fields(text)
    if fields.keys() & set(RECURRENT_FIELDS):
        return _recurrent_from_fields(fields)
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
    names = _field_names(call)
    if len(call.args) > len(names):
        raise EncodingError(f"DARTS genotype: found {len(call.args)} fields, expected at most {len(names)}")
    fields = dict(zip(names, call.args))
    for keyword in call.keywords:
        if keyword.arg not in names:
            raise EncodingError(
                f"DARTS genotype: unknown field {keyword.arg!r}, expected {', '.join(names)}"
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
    "recurrent": "a list of (activation_name, input) pairs",
    "concat": "a list of node numbers",
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
        op_name, index = _pair(pair, where, "op_name", node_id, repr)
        branches.append((index, _op(op_name, where)))
    blocks = [
        Block(i1, o1, i2, o2) for (i1, o1), (i2, o2) in zip(branches[0::2], branches[1::2])
    ]
    return Cell(tuple(blocks))


def _pair(pair, where: str, name_field: str, inputs: int, shown) -> tuple[str, int]:
    """(name, input) of one DARTS pair, its input in 0..inputs-1; EncodingError naming ``where``."""
    if not (
        isinstance(pair, (list, tuple))
        and len(pair) == 2
        and isinstance(pair[0], str)
        and isinstance(pair[1], int)
        and not isinstance(pair[1], bool)
    ):
        raise EncodingError(f"{where}: found {shown(pair)}, expected ({name_field}, input)")
    if not 0 <= pair[1] < inputs:
        raise EncodingError(f"{where}: found input {pair[1]}, expected 0..{inputs - 1}")
    return pair[0], pair[1]


def _op(name: str, where: str) -> MicroOp:
    try:
        return MicroOp.from_name(name)
    except KeyError:
        known = ", ".join(op.darts for op in MicroOp)
        raise EncodingError(f"{where}: op {name!r} has no ENAS equivalent, expected one of {known}") from None


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _concat(node: ast.expr, name: str, limit: int, mismatch) -> list[int]:
    """The node numbers of a concat list; ``mismatch(found)`` is the error for a list that
    cannot be the one expected. A ``range`` (DARTS writes ``range(2, 6)``) is read by its
    bounds, and a list by its length, against ``limit`` nodes before any of it is built."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        bounds = [_literal(arg, name) for arg in node.args]
        if node.keywords or not 1 <= len(bounds) <= 2 or not all(map(_is_integer, bounds)):
            raise EncodingError(f"DARTS {name}: expected range(start, stop) with integers")
        start, stop = (0, bounds[0]) if len(bounds) == 1 else bounds
        if stop - start > limit:  # more nodes than the cell has
            raise mismatch(f"range({start}, {stop})")
        return list(range(start, stop))
    if isinstance(node, (ast.List, ast.Tuple)) and len(node.elts) > limit:
        raise mismatch(f"a list of {len(node.elts)} nodes")
    values = _literal(node, name)
    if not isinstance(values, (list, tuple)) or not all(map(_is_integer, values)):
        raise EncodingError(f"DARTS {name}: expected a list of node numbers")
    return list(values)


def _check_concat(node: ast.expr, cell: Cell, name: str) -> None:
    """The concat list ``node`` must name exactly the cell's loose ends (in any order)."""
    loose = list(cell.loose_ends)

    def mismatch(found: str) -> EncodingError:
        return EncodingError(
            f"DARTS {name}: found {found}, expected the loose ends {loose} "
            "(ENAS concatenates exactly the nodes no block uses)"
        )

    concat = _concat(node, name, cell.num_nodes, mismatch)
    if sorted(concat) != loose:
        raise mismatch(str(concat))

# --------------------------------------------------------------------------- recurrent cells
def _field_names(call: ast.Call) -> tuple[str, ...]:
    """The fields of the genotype's form: recurrent when a keyword names a recurrent field, or
    when it has no keywords and two positional fields (DARTS's ``Genotype(recurrent, concat)``)."""
    keywords = {k.arg for k in call.keywords}
    if keywords & set(RECURRENT_FIELDS) or (not keywords and len(call.args) == len(RECURRENT_FIELDS)):
        return RECURRENT_FIELDS
    return FIELDS


def _recurrent_to_darts(arch: RecurrentArch) -> str:
    """Recurrent: one pair per node; concat is every node 1..N, written as DARTS writes it."""
    pairs = [(node.activation.darts, node.prev) for node in arch.nodes]
    return f"{GENOTYPE}(recurrent={pairs!r}, concat=range({FIRST_NODE}, {arch.num_nodes + 1}))"


def _recurrent_from_fields(fields: dict[str, ast.expr]) -> RecurrentArch:
    if "recurrent" not in fields:
        raise EncodingError("DARTS genotype: missing 'recurrent'")
    node = fields["recurrent"]
    count = len(node.elts) if isinstance(node, (ast.List, ast.Tuple)) else None
    if count is not None and count > MAX_NODES:  # refused before any pair is read
        raise EncodingError(
            f"DARTS recurrent: found {count} pairs (one per node), at most {MAX_NODES} nodes are supported"
        )
    pairs = _literal(node, "recurrent")
    if not isinstance(pairs, (list, tuple)) or not pairs:
        raise EncodingError("DARTS recurrent: expected a non-empty list of (activation_name, input) pairs")
    nodes = []
    for l, pair in enumerate(pairs, start=FIRST_NODE):
        where = f"DARTS recurrent pair {l} (node {l})"
        name, index = _pair(pair, where, "activation_name", l, _shown)
        nodes.append(RecurrentNode(index, _activation(name, where)))
    arch = RecurrentArch(tuple(nodes))
    if "concat" in fields:
        _check_recurrent_concat(fields["concat"], arch)
    return arch


def _activation(name: str, where: str) -> Activation:
    known = ", ".join(act.darts for act in Activation)
    if name.strip().lower() == NO_OP:
        raise EncodingError(
            f"{where}: activation {name!r} has no ENAS equivalent (an ENAS node always applies an "
            f"activation to the node it reads), expected one of {known}"
        )
    try:
        return Activation.from_name(name)
    except KeyError:
        raise EncodingError(
            f"{where}: activation {_shown(name)} has no ENAS equivalent, expected one of {known}"
        ) from None


def _check_recurrent_concat(node: ast.expr, arch: RecurrentArch) -> None:
    """The concat list ``node`` must name every node 1..N (in any order)."""
    stop = arch.num_nodes + 1

    def mismatch(found: str) -> EncodingError:
        return EncodingError(
            f"DARTS concat: found {found}, expected range({FIRST_NODE}, {stop}), every node "
            f"{FIRST_NODE}..{arch.num_nodes} (ENAS averages all nodes after node 0; a mean of other "
            "nodes is another network)"
        )

    concat = _concat(node, "concat", MAX_NODES, mismatch)  # bounded; short lists are shown as they are
    if sorted(concat) != list(range(FIRST_NODE, stop)):
        raise mismatch(_shown(concat))


def _shown(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# One writer per space that has a DARTS form.
_WRITERS = {MicroArch.space: _micro_to_darts, RecurrentArch.space: _recurrent_to_darts}
DARTS_SPACES = tuple(_WRITERS)
