"""The ENAS macro space: a whole network of N layers, each an op and skip bits.

Encoding (reference sec. 2): layer k (0-based) is one op id followed by k skip bits, N(N+1)/2
integers in all. With prev = [stem, layer 0, ..., layer k-1], the input of layer k is always
prev[-1]; bit m set adds prev[m] as a skip input, so bit 0 is the stem and bit m is layer m-1.

Size: at most ``MAX_LAYERS`` layers. Every reader checks the size first (``check_length``
before any integer is parsed, the layer count of a JSON record before any layer is read), so
an absurd input costs nothing; the limit keeps every command that draws or builds an
architecture (render, info --counts, the networks) within seconds.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Sequence

from ..errors import EncodingError
from .ops import MacroOp

STEM = "stem"
# Far deeper than the authors' 24 layers. The skips grow as N^2: at 64 layers Graphviz still
# draws the densest architecture in seconds, and a final network fits in memory.
MAX_LAYERS = 64


def _rng(seed: int | random.Random | None) -> random.Random:
    return seed if isinstance(seed, random.Random) else random.Random(seed)


@dataclass(frozen=True)
class MacroLayer:
    """Layer ``index``: an op and ``index`` skip bits (bit m = prev[m]; prev[0] is the stem)."""

    op: MacroOp
    skips: tuple[int, ...]

    @property
    def index(self) -> int:
        return len(self.skips)

    @property
    def skip_sources(self) -> tuple[int, ...]:
        """Indices into prev = [stem, layer 0, ...] that this layer takes as skip inputs."""
        return tuple(m for m, bit in enumerate(self.skips) if bit)

    @property
    def input_source(self) -> int:
        """Index into prev of the main input: always the immediate predecessor."""
        return self.index

    def to_ints(self) -> list[int]:
        return [self.op.enas_id, *self.skips]


@dataclass(frozen=True)
class MacroArch:
    """A macro architecture: immutable, hashable, validated, equal by value."""

    layers: tuple[MacroLayer, ...]
    space: ClassVar[str] = "macro"
    op_enum: ClassVar[type[MacroOp]] = MacroOp

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise EncodingError("a macro architecture needs at least 1 layer, found 0")
        if len(self.layers) > MAX_LAYERS:
            raise EncodingError(_too_many_layers(len(self.layers)))
        for k, layer in enumerate(self.layers):
            if not isinstance(layer, MacroLayer):
                raise EncodingError(f"layer {k}: expected a MacroLayer, found {type(layer).__name__}")
            if not isinstance(layer.op, MacroOp):
                raise EncodingError(f"layer {k}: expected a MacroOp, found {layer.op!r}")
            skips = tuple(layer.skips)
            if len(skips) != k:
                raise EncodingError(f"layer {k}: expected {k} skip bits, found {len(skips)}")
            for m, bit in enumerate(skips):
                if bit not in (0, 1) or isinstance(bit, bool):
                    raise EncodingError(f"layer {k}: skip bit {m} must be 0 or 1, found {bit!r}")
            object.__setattr__(layer, "skips", tuple(int(b) for b in skips))

    # ----------------------------------------------------------------- integers and text
    @staticmethod
    def length_for(num_layers: int) -> int:
        return num_layers * (num_layers + 1) // 2

    @staticmethod
    def layers_for_length(length: int) -> int | None:
        """The layer count N with N(N+1)/2 == length, or None."""
        n = (math.isqrt(8 * length + 1) - 1) // 2
        return n if n >= 1 and n * (n + 1) // 2 == length else None

    @classmethod
    def accepts_length(cls, length: int) -> bool:
        return cls.layers_for_length(length) is not None

    @classmethod
    def check_length(cls, length: int) -> None:
        """Refuse ``length`` integers beyond the largest architecture (``MAX_LAYERS``); cheap, so
        readers call it before parsing a single integer."""
        largest = cls.length_for(MAX_LAYERS)
        if length > largest:
            raise EncodingError(
                f"found {length} integers, expected at most {largest}: "
                f"enastool accepts macro architectures of up to {MAX_LAYERS} layers"
            )

    @classmethod
    def from_ints(cls, values: Sequence[int]) -> "MacroArch":
        """Build from the authors' integers; errors name the 1-based token position."""
        cls.check_length(len(values))
        values = list(values)
        n = cls.layers_for_length(len(values))
        if n is None:
            lo = max(1, (math.isqrt(8 * len(values) + 1) - 1) // 2)
            near = sorted({cls.length_for(lo), cls.length_for(lo + 1)})
            raise EncodingError(
                f"found {len(values)} integers, expected a triangular count N(N+1)/2 for N layers "
                f"(e.g. {' or '.join(map(str, near))})"
            )
        layers, pos = [], 0
        for k in range(n):
            op_id = values[pos]
            if not 0 <= op_id < MacroOp.count():
                raise EncodingError(
                    f"layer {k} op: found {op_id}, expected a macro op id 0..{MacroOp.count() - 1}",
                    pos + 1,
                )
            bits = values[pos + 1 : pos + 1 + k]
            for m, bit in enumerate(bits):
                if bit not in (0, 1):
                    raise EncodingError(
                        f"layer {k} skip bit {m}: found {bit}, expected 0 or 1", pos + 2 + m
                    )
            layers.append(MacroLayer(MacroOp(op_id), tuple(bits)))
            pos += k + 1
        return cls(tuple(layers))

    def to_ints(self) -> list[int]:
        return [v for layer in self.layers for v in layer.to_ints()]

    def format(self) -> str:
        """The canonical authors' string: all integers on one line."""
        return " ".join(map(str, self.to_ints()))

    def format_lines(self) -> str:
        """The authors' script layout: one layer per line."""
        return "\n".join(" ".join(map(str, layer.to_ints())) for layer in self.layers)

    def __str__(self) -> str:
        return f"macro {self.format()}"

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "layers": [
                {"op": layer.op.short, "skips": list(layer.skip_sources)} for layer in self.layers
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MacroArch":
        layers_data = data.get("layers")
        if not isinstance(layers_data, list):
            raise EncodingError("JSON macro record: expected a list under 'layers'")
        if len(layers_data) > MAX_LAYERS:
            raise EncodingError(f"JSON macro record: {_too_many_layers(len(layers_data))}")
        layers = []
        for k, item in enumerate(layers_data):
            if not isinstance(item, dict) or "op" not in item:
                raise EncodingError(f"JSON layer {k}: expected an object with 'op' and 'skips'")
            op = _op_from_json(MacroOp, item["op"], f"JSON layer {k}")
            skips = item.get("skips", [])
            if not isinstance(skips, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in skips
            ):
                raise EncodingError(f"JSON layer {k}: 'skips' must be a list of integers")
            bad = [s for s in skips if not 0 <= s < k]
            if bad:
                raise EncodingError(
                    f"JSON layer {k}: skip source {bad[0]} out of range, expected 0..{k - 1} "
                    "(0 is the stem, m is layer m-1)"
                    if k
                    else f"JSON layer 0: found skip source {bad[0]}, layer 0 has no skips"
                )
            sources = set(skips)
            bits = tuple(1 if m in sources else 0 for m in range(k))
            layers.append(MacroLayer(op, bits))
        return cls(tuple(layers))

    # ----------------------------------------------------------------- queries
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def op_histogram(self) -> dict[MacroOp, int]:
        counts = Counter(layer.op for layer in self.layers)
        return {op: counts.get(op, 0) for op in MacroOp}

    @property
    def num_skips(self) -> int:
        return sum(sum(layer.skips) for layer in self.layers)

    @property
    def possible_skips(self) -> int:
        n = self.num_layers
        return n * (n - 1) // 2

    @property
    def skip_density(self) -> float:
        return self.num_skips / self.possible_skips if self.possible_skips else 0.0

    def depth(self) -> int:
        """Longest stem-to-output path counted in ops (the chain makes it N)."""
        depth = [0]  # prev: stem
        for layer in self.layers:
            sources = (layer.input_source, *layer.skip_sources)
            depth.append(1 + max(depth[s] for s in sources))
        return depth[-1]

    def canonical(self) -> "MacroArch":
        """Macro encodings have no symmetry: every architecture is already canonical."""
        return self

    def summary(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "layers": self.num_layers,
            "ops": {op.short: n for op, n in self.op_histogram().items()},
            "skips": self.num_skips,
            "possible_skips": self.possible_skips,
            "skip_density": round(self.skip_density, 4),
            "depth": self.depth(),
        }

    # ----------------------------------------------------------------- graph
    def to_networkx(self):
        """DiGraph with nodes 'stem', 'layer0'.. 'output'; attributes kind and op."""
        import networkx as nx

        g = nx.DiGraph(space=self.space)
        g.add_node(STEM, kind="input", op="conv3x3")
        names = [STEM]
        for k, layer in enumerate(self.layers):
            name = f"layer{k}"
            g.add_node(name, kind="layer", op=layer.op.short, index=k)
            g.add_edge(names[layer.input_source], name, kind="input")
            for m in layer.skip_sources:
                g.add_edge(names[m], name, kind="skip")
            names.append(name)
        g.add_node("output", kind="output", op=None)
        g.add_edge(names[-1], "output", kind="input")
        return g

    # ----------------------------------------------------------------- sampling
    @classmethod
    def sample(
        cls,
        seed: int | random.Random | None = None,
        num_layers: int = 12,
        ops: Iterable[MacroOp] | None = None,
    ) -> "MacroArch":
        """A uniformly random valid architecture (ops uniform over ``ops``, bits fair coins)."""
        if not 1 <= num_layers <= MAX_LAYERS:
            raise EncodingError(f"--layers must be in 1..{MAX_LAYERS}, found {num_layers}")
        rng = _rng(seed)
        choices = list(ops) if ops is not None else list(MacroOp)
        return cls(
            tuple(
                MacroLayer(rng.choice(choices), tuple(rng.randint(0, 1) for _ in range(k)))
                for k in range(num_layers)
            )
        )


def _too_many_layers(count: int) -> str:
    return f"found {count} layers, expected at most {MAX_LAYERS} (enastool's limit)"


def _op_from_json(enum_cls, value, where: str):
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < enum_cls.count():
            return enum_cls(value)
    elif isinstance(value, str):
        try:
            return enum_cls.from_name(value)
        except KeyError:
            pass
    names = ", ".join(op.short for op in enum_cls)
    raise EncodingError(f"{where}: unknown op {value!r}, expected one of {names}")
