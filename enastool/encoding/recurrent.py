"""The ENAS recurrent space (Penn Treebank cells), as the authors' corrected code defines it.

Encoding (reference sec. 2 and 8; google-research ``enas_lm``): node 0 is fixed (it mixes the
input x_t and the previous state h_{t-1} through tanh with a highway gate). Each further node
l = 1..N is the pair ``prev_index activation``: it reads node ``prev_index`` (0..l-1) and
applies ``activation`` (0 tanh, 1 ReLU, 2 sigmoid, 3 identity) inside its own highway gate.
So an N-node cell is 2N integers; the published ENAS cell (N = 8) is
``0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2``. The cell's output at each step (and the state carried to
the next) is the mean of nodes 1..N, as in the authors' corrected GPU code; which nodes no
other node reads (the loose ends) is reported, but it does not change the network.

The first ENAS repository (``melodyguan/enas``) described an older format of 2N+1 integers with
another activation order (tanh, ReLU, identity, sigmoid); its language model was withdrawn by
the authors. An odd count is refused with a message that says so.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from ..errors import EncodingError
from .macro import _op_from_json, _rng
from .ops import Activation

INTS_PER_NODE = 2  # prev_index activation
FIRST_NODE = 1  # node 0 is fixed; the encoding describes nodes 1..N
PUBLISHED_NODES = 8  # the ENAS paper's cell, and the default size of sampled cells
MAX_NODES = 64  # far beyond any published cell (8); refused before any work is done
LEGACY_FORMAT = (
    "the older 2N+1-integer format of the first ENAS repository (melodyguan/enas), whose "
    "activation order differs (tanh, relu, identity, sigmoid); enastool reads the corrected "
    "format of google-research enas_lm (activation 0 tanh, 1 relu, 2 sigmoid, 3 identity)"
)
X_INPUT, H_INPUT = "x_t", "h_{t-1}"  # names of the cell's two inputs (graph and pictures)
NODE0_ACTIVATION = Activation.TANH  # node 0 is fixed: tanh of [x_t, h_{t-1}] @ W0, highway-gated


@dataclass(frozen=True)
class RecurrentNode:
    """Node ``l`` of a cell (1-based): ``activation`` applied to what it reads from node ``prev``."""

    prev: int
    activation: Activation

    def to_ints(self) -> list[int]:
        return [self.prev, self.activation.enas_id]


@dataclass(frozen=True)
class RecurrentArch:
    """A recurrent cell of N >= 1 nodes after the fixed node 0: immutable, hashable, validated.

    ``nodes[l - 1]`` is node l; its ``prev`` is in 0..l-1.
    """

    nodes: tuple[RecurrentNode, ...]
    space: ClassVar[str] = "rnn"
    op_enum: ClassVar[type[Activation]] = Activation

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        if not self.nodes:
            raise EncodingError("a recurrent cell needs at least 1 node after node 0, found 0")
        if len(self.nodes) > MAX_NODES:
            raise EncodingError(f"found {len(self.nodes)} nodes, at most {MAX_NODES} are supported")
        for l, node in enumerate(self.nodes, start=FIRST_NODE):
            if not isinstance(node, RecurrentNode):
                raise EncodingError(f"node {l}: expected a RecurrentNode, found {type(node).__name__}")
            prev = node.prev
            if not isinstance(prev, int) or isinstance(prev, bool) or not 0 <= prev < l:
                raise EncodingError(f"node {l} prev_index: found {prev!r}, expected 0..{l - 1}")
            if not isinstance(node.activation, Activation):
                raise EncodingError(f"node {l} activation: expected an Activation, found {node.activation!r}")

    # ----------------------------------------------------------------- integers and text
    @staticmethod
    def length_for(num_nodes: int) -> int:
        return INTS_PER_NODE * num_nodes

    @classmethod
    def accepts_length(cls, length: int) -> bool:
        return 0 < length <= cls.length_for(MAX_NODES) and length % INTS_PER_NODE == 0

    @classmethod
    def check_length(cls, length: int) -> None:
        """Refuse ``length`` integers beyond the largest cell (``MAX_NODES``); cheap, so readers
        call it before parsing a single integer."""
        largest = cls.length_for(MAX_NODES)
        if length > largest:
            raise EncodingError(
                f"found {length} integers, expected at most {largest}: "
                f"enastool accepts rnn cells of up to {MAX_NODES} nodes"
            )

    @classmethod
    def from_ints(cls, values: Sequence[int]) -> "RecurrentArch":
        """Build from the authors' 2N integers; errors name the 1-based token position."""
        cls.check_length(len(values))
        values = list(values)
        if len(values) % INTS_PER_NODE:
            raise EncodingError(
                f"found {len(values)} integers, expected an even count (2 per node: prev_index "
                f"activation); an odd count looks like {LEGACY_FORMAT}"
            )
        if not values:
            raise EncodingError("found 0 integers, expected 2 per node (prev_index activation)")
        nodes = []
        for l, start in enumerate(range(0, len(values), INTS_PER_NODE), start=FIRST_NODE):
            prev, act = values[start], values[start + 1]
            if not 0 <= prev < l:
                raise EncodingError(f"node {l} prev_index: found {prev}, expected 0..{l - 1}", start + 1)
            if not 0 <= act < Activation.count():
                raise EncodingError(
                    f"node {l} activation: found {act}, expected an activation id "
                    f"0..{Activation.count() - 1} (0 tanh, 1 relu, 2 sigmoid, 3 identity)",
                    start + 2,
                )
            nodes.append(RecurrentNode(prev, Activation(act)))
        return cls(tuple(nodes))

    def to_ints(self) -> list[int]:
        return [v for node in self.nodes for v in node.to_ints()]

    def format(self) -> str:
        """The canonical authors' string: all integers on one line."""
        return " ".join(map(str, self.to_ints()))

    def format_lines(self) -> str:
        """One node per line (``prev_index activation``)."""
        return "\n".join(" ".join(map(str, node.to_ints())) for node in self.nodes)

    def __str__(self) -> str:
        return f"{self.space} {self.format()}"

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "nodes": [{"prev": node.prev, "activation": node.activation.short} for node in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RecurrentArch":
        items = data.get("nodes")
        if not isinstance(items, list):
            raise EncodingError("JSON rnn record: expected a list under 'nodes'")
        if len(items) > MAX_NODES:
            raise EncodingError(f"JSON rnn record: found {len(items)} nodes, at most {MAX_NODES} are supported")
        nodes = []
        for l, item in enumerate(items, start=FIRST_NODE):
            where = f"JSON node {l}"
            if not isinstance(item, dict) or "prev" not in item or "activation" not in item:
                raise EncodingError(f"{where}: expected an object with 'prev' and 'activation'")
            prev = item["prev"]
            if not isinstance(prev, int) or isinstance(prev, bool):
                raise EncodingError(f"{where}: 'prev' must be an integer, found {prev!r}")
            nodes.append(RecurrentNode(prev, _op_from_json(Activation, item["activation"], where)))
        try:
            return cls(tuple(nodes))
        except EncodingError as e:
            raise EncodingError(f"JSON rnn record: {e.detail}") from None

    # ----------------------------------------------------------------- queries
    @property
    def num_nodes(self) -> int:
        """N: the nodes after the fixed node 0."""
        return len(self.nodes)

    def op_histogram(self) -> dict[Activation, int]:
        counts = Counter(node.activation for node in self.nodes)
        return {act: counts.get(act, 0) for act in Activation}

    @property
    def loose_ends(self) -> tuple[int, ...]:
        """Nodes 1..N that no node reads (the TPU code averaged only these; we average all)."""
        used = {node.prev for node in self.nodes}
        return tuple(l for l in range(FIRST_NODE, self.num_nodes + 1) if l not in used)

    def depth(self) -> int:
        """Longest chain of nodes from node 0, counted in nodes after it."""
        depth = [0]
        for node in self.nodes:
            depth.append(1 + depth[node.prev])
        return max(depth)

    def canonical(self) -> "RecurrentArch":
        """Recurrent encodings have no symmetry: every cell is already canonical."""
        return self

    def summary(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "nodes": self.num_nodes,
            "ops": {act.short: n for act, n in self.op_histogram().items()},
            "loose_ends": list(self.loose_ends),
            "depth": self.depth(),
        }

    # ----------------------------------------------------------------- graph
    def to_networkx(self):
        """DiGraph: inputs 'x_t' and 'h_{t-1}', nodes 0..N, and 'output' (the mean of 1..N).

        Node attributes: kind (input, node, output), op (the activation; tanh for node 0, None
        for inputs, 'mean' for the output), index. Edge attribute kind: input, or mean.
        """
        import networkx as nx

        g = nx.DiGraph(space=self.space)
        g.add_node(X_INPUT, kind="input", op=None, index=None)
        g.add_node(H_INPUT, kind="input", op=None, index=None)
        g.add_node(0, kind="node", op=NODE0_ACTIVATION.short, index=0)
        g.add_edge(X_INPUT, 0, kind="input")
        g.add_edge(H_INPUT, 0, kind="input")
        for l, node in enumerate(self.nodes, start=FIRST_NODE):
            g.add_node(l, kind="node", op=node.activation.short, index=l)
            g.add_edge(node.prev, l, kind="input")
        g.add_node("output", kind="output", op="mean", index=None)
        for l in range(FIRST_NODE, self.num_nodes + 1):
            g.add_edge(l, "output", kind="mean")
        return g

    # ----------------------------------------------------------------- sampling
    @classmethod
    def sample(cls, seed: int | random.Random | None = None, num_nodes: int = PUBLISHED_NODES) -> "RecurrentArch":
        """A uniformly random valid cell: every prev index and activation uniform."""
        if not 1 <= num_nodes <= MAX_NODES:
            raise EncodingError(f"--nodes must be in 1..{MAX_NODES}, found {num_nodes}")
        rng = _rng(seed)
        acts = list(Activation)
        return cls(tuple(RecurrentNode(rng.randrange(l), rng.choice(acts)) for l in range(FIRST_NODE, num_nodes + 1)))
