"""The ENAS micro space: a normal and a reduction cell of B blocks each.

Encoding (reference sec. 2): each cell is B blocks ``index_1 op_1 index_2 op_2``; nodes 0 and 1
are the two previous cells' outputs and block j (0-based) is node j+2, so an index may name any
node 0 .. j+1. The cell output concatenates the loose ends (nodes no block uses, 0 and 1
included). The normal cell's 4B integers come first, then the reduction cell's: 8B in all.

Size: at most ``MAX_BLOCKS`` blocks per cell, checked before anything else is read (the integer
count by ``check_length``, the block count of a JSON cell before its blocks).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from ..errors import EncodingError
from .macro import _op_from_json, _rng
from .ops import MicroOp

NUM_INPUTS = 2  # nodes 0 and 1: the outputs of the two previous cells
INTS_PER_BLOCK = 4  # index_1 op_1 index_2 op_2
CELL_NAMES = ("normal", "reduce")
# Far beyond the authors' 5 (NAO's vocabulary stops at 5, DARTS uses 4): a 32-block cell is
# still drawn and counted in seconds, and its final network still fits in memory.
MAX_BLOCKS = 32


@dataclass(frozen=True)
class Block:
    """One block: node = op1(node[index1]) + op2(node[index2])."""

    index1: int
    op1: MicroOp
    index2: int
    op2: MicroOp

    def to_ints(self) -> list[int]:
        return [self.index1, self.op1.enas_id, self.index2, self.op2.enas_id]

    @property
    def branches(self) -> tuple[tuple[int, MicroOp], tuple[int, MicroOp]]:
        return ((self.index1, self.op1), (self.index2, self.op2))

    def canonical(self) -> "Block":
        a, b = self.branches
        if (a[0], a[1].enas_id) <= (b[0], b[1].enas_id):
            return self
        return Block(b[0], b[1], a[0], a[1])


@dataclass(frozen=True)
class Cell:
    """A cell of B >= 1 blocks; block j is node j+2."""

    blocks: tuple[Block, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.blocks:
            raise EncodingError("a cell needs at least 1 block, found 0")
        if len(self.blocks) > MAX_BLOCKS:
            raise EncodingError(_too_many_blocks(len(self.blocks)))
        for j, block in enumerate(self.blocks):
            node = j + NUM_INPUTS
            for which, index, op in ((1, block.index1, block.op1), (2, block.index2, block.op2)):
                if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < node:
                    raise EncodingError(
                        f"node {node} index_{which}: found {index!r}, expected 0..{node - 1}"
                    )
                if not isinstance(op, MicroOp):
                    raise EncodingError(f"node {node} op_{which}: expected a MicroOp, found {op!r}")

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_nodes(self) -> int:
        return self.num_blocks + NUM_INPUTS

    @property
    def loose_ends(self) -> tuple[int, ...]:
        used = {i for b in self.blocks for i in (b.index1, b.index2)}
        return tuple(n for n in range(self.num_nodes) if n not in used)

    def depth(self) -> int:
        """Longest path, in ops, from the cell inputs to a loose end."""
        depth = [0] * NUM_INPUTS
        for b in self.blocks:
            depth.append(1 + max(depth[b.index1], depth[b.index2]))
        return max(depth[n] for n in self.loose_ends)

    def op_histogram(self) -> dict[MicroOp, int]:
        counts = Counter(op for b in self.blocks for op in (b.op1, b.op2))
        return {op: counts.get(op, 0) for op in MicroOp}

    def canonical(self) -> "Cell":
        return Cell(tuple(b.canonical() for b in self.blocks))

    def to_ints(self) -> list[int]:
        return [v for b in self.blocks for v in b.to_ints()]

    @classmethod
    def from_ints(cls, values: Sequence[int], offset: int = 0, name: str = "cell") -> "Cell":
        """Parse 4B integers; ``offset`` shifts reported token positions."""
        if len(values) > INTS_PER_BLOCK * MAX_BLOCKS:
            raise EncodingError(f"{name} cell: {_too_many_blocks(len(values) // INTS_PER_BLOCK)}")
        blocks = []
        for j in range(len(values) // INTS_PER_BLOCK):
            node = j + NUM_INPUTS
            chunk = values[INTS_PER_BLOCK * j : INTS_PER_BLOCK * (j + 1)]
            for t, v in enumerate(chunk):
                pos = offset + INTS_PER_BLOCK * j + t + 1
                field = ("index_1", "op_1", "index_2", "op_2")[t]
                if t % 2 == 0 and not 0 <= v < node:
                    raise EncodingError(
                        f"{name} cell node {node} {field}: found {v}, expected an index 0..{node - 1}",
                        pos,
                    )
                if t % 2 == 1 and not 0 <= v < MicroOp.count():
                    raise EncodingError(
                        f"{name} cell node {node} {field}: found {v}, "
                        f"expected a micro op id 0..{MicroOp.count() - 1}",
                        pos,
                    )
            blocks.append(Block(chunk[0], MicroOp(chunk[1]), chunk[2], MicroOp(chunk[3])))
        return cls(tuple(blocks))

    def to_list(self) -> list[dict[str, Any]]:
        return [
            {"inputs": [b.index1, b.index2], "ops": [b.op1.short, b.op2.short]} for b in self.blocks
        ]

    @classmethod
    def from_list(cls, items: Any, name: str) -> "Cell":
        if not isinstance(items, list):
            raise EncodingError(f"JSON {name} cell: expected a list of blocks")
        if len(items) > MAX_BLOCKS:
            raise EncodingError(f"JSON {name} cell: {_too_many_blocks(len(items))}")
        blocks = []
        for j, item in enumerate(items):
            where = f"JSON {name} cell node {j + NUM_INPUTS}"
            if not (
                isinstance(item, dict)
                and isinstance(item.get("inputs"), list)
                and isinstance(item.get("ops"), list)
                and len(item["inputs"]) == 2
                and len(item["ops"]) == 2
            ):
                raise EncodingError(f"{where}: expected {{'inputs': [i, j], 'ops': [op, op]}}")
            i1, i2 = item["inputs"]
            o1, o2 = (_op_from_json(MicroOp, o, where) for o in item["ops"])
            for idx in (i1, i2):
                if not isinstance(idx, int) or isinstance(idx, bool):
                    raise EncodingError(f"{where}: input {idx!r} is not an integer")
            blocks.append(Block(i1, o1, i2, o2))
        try:
            return cls(tuple(blocks))
        except EncodingError as e:
            raise EncodingError(f"JSON {name} cell: {e.detail}") from None


@dataclass(frozen=True)
class MicroArch:
    """A micro architecture: normal cell then reduction cell, with the same block count."""

    normal: Cell
    reduce: Cell
    space: ClassVar[str] = "micro"
    op_enum: ClassVar[type[MicroOp]] = MicroOp

    def __post_init__(self) -> None:
        if self.normal.num_blocks != self.reduce.num_blocks:
            raise EncodingError(
                f"normal cell has {self.normal.num_blocks} blocks but reduction cell has "
                f"{self.reduce.num_blocks}; both cells need the same count"
            )

    @property
    def cells(self) -> tuple[Cell, Cell]:
        return (self.normal, self.reduce)

    @property
    def num_blocks(self) -> int:
        return self.normal.num_blocks

    # ----------------------------------------------------------------- integers and text
    @staticmethod
    def length_for(num_blocks: int) -> int:
        return 2 * INTS_PER_BLOCK * num_blocks

    @classmethod
    def accepts_length(cls, length: int) -> bool:
        return length > 0 and length % (2 * INTS_PER_BLOCK) == 0

    @classmethod
    def check_length(cls, length: int) -> None:
        """Refuse ``length`` integers beyond the largest architecture (``MAX_BLOCKS``); cheap, so
        readers call it before parsing a single integer."""
        largest = cls.length_for(MAX_BLOCKS)
        if length > largest:
            raise EncodingError(
                f"found {length} integers, expected at most {largest}: "
                f"enastool accepts micro architectures of up to {MAX_BLOCKS} blocks per cell"
            )

    @classmethod
    def from_ints(cls, values: Sequence[int]) -> "MicroArch":
        cls.check_length(len(values))
        values = list(values)
        if not cls.accepts_length(len(values)):
            raise EncodingError(
                f"found {len(values)} integers, expected a positive multiple of 8 "
                "(8 per block: 4 in the normal cell, 4 in the reduction cell)"
            )
        half = len(values) // 2
        normal = Cell.from_ints(values[:half], 0, "normal")
        reduce = Cell.from_ints(values[half:], half, "reduction")
        return cls(normal, reduce)

    def to_ints(self) -> list[int]:
        return self.normal.to_ints() + self.reduce.to_ints()

    def format(self) -> str:
        return " ".join(map(str, self.to_ints()))

    def format_lines(self) -> str:
        """The authors' script layout: normal cell on one line, reduction cell on the next."""
        return "\n".join(" ".join(map(str, c.to_ints())) for c in self.cells)

    def __str__(self) -> str:
        return f"micro {self.format()}"

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "normal": self.normal.to_list(), "reduce": self.reduce.to_list()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MicroArch":
        for key in CELL_NAMES:
            if key not in data:
                raise EncodingError(f"JSON micro record: missing '{key}'")
        return cls(Cell.from_list(data["normal"], "normal"), Cell.from_list(data["reduce"], "reduce"))

    # ----------------------------------------------------------------- queries
    def op_histogram(self) -> dict[MicroOp, int]:
        n, r = self.normal.op_histogram(), self.reduce.op_histogram()
        return {op: n[op] + r[op] for op in MicroOp}

    def depth(self) -> int:
        return max(c.depth() for c in self.cells)

    def canonical(self) -> "MicroArch":
        """The form in which a block's two branches are sorted (they commute)."""
        return MicroArch(self.normal.canonical(), self.reduce.canonical())

    def equivalent(self, other: "MicroArch") -> bool:
        return self.canonical() == other.canonical()

    def summary(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "blocks": self.num_blocks,
            "ops": {op.short: n for op, n in self.op_histogram().items()},
            "normal_loose_ends": list(self.normal.loose_ends),
            "reduce_loose_ends": list(self.reduce.loose_ends),
            "normal_depth": self.normal.depth(),
            "reduce_depth": self.reduce.depth(),
            "depth": self.depth(),
        }

    # ----------------------------------------------------------------- graph
    def to_networkx(self):
        """DiGraph with nodes '<cell>/<n>' for n = 0..B+1 and '<cell>/out' per cell.

        Node attributes: kind (input, node, output), op (None on inputs/outputs), cell, index.
        Edge attributes: op (the op on that branch; None for edges into the output).
        """
        import networkx as nx

        g = nx.DiGraph(space=self.space)
        for cname, cell in zip(CELL_NAMES, self.cells):
            for n in range(NUM_INPUTS):
                g.add_node(f"{cname}/{n}", kind="input", op=None, cell=cname, index=n)
            for j, b in enumerate(cell.blocks):
                node = f"{cname}/{j + NUM_INPUTS}"
                g.add_node(node, kind="node", op="add", cell=cname, index=j + NUM_INPUTS)
                for idx, op in b.branches:
                    # Two branches from the same input: keep both ops on one edge.
                    src = f"{cname}/{idx}"
                    if g.has_edge(src, node):
                        g.edges[src, node]["ops"].append(op.short)
                    else:
                        g.add_edge(src, node, op=op.short, ops=[op.short])
            out = f"{cname}/out"
            g.add_node(out, kind="output", op="concat", cell=cname, index=cell.num_nodes)
            for n in cell.loose_ends:
                g.add_edge(f"{cname}/{n}", out, op=None, ops=[])
        return g

    # ----------------------------------------------------------------- sampling
    @classmethod
    def sample(cls, seed: int | random.Random | None = None, num_blocks: int = 5) -> "MicroArch":
        """A uniformly random valid architecture: every index and op uniform."""
        if not 1 <= num_blocks <= MAX_BLOCKS:
            raise EncodingError(f"--blocks must be in 1..{MAX_BLOCKS}, found {num_blocks}")
        rng = _rng(seed)
        ops = list(MicroOp)

        def cell() -> Cell:
            return Cell(
                tuple(
                    Block(rng.randrange(j + NUM_INPUTS), rng.choice(ops), rng.randrange(j + NUM_INPUTS), rng.choice(ops))
                    for j in range(num_blocks)
                )
            )

        normal = cell()
        return cls(normal, cell())


def _too_many_blocks(count: int) -> str:
    return f"found {count} blocks, expected at most {MAX_BLOCKS} per cell (enastool's limit)"
