"""Token schemes: an architecture as a fixed-length sequence for NAO's encoder-decoder.

NAO (Luo et al. 2018) reads and writes architectures as token sequences. A
:class:`TokenScheme` is what a search space gives the encoder-predictor-decoder
(``enastool.search.epd``) so that the EPD never needs to know which space it works on:

- ``length`` tokens per architecture (fixed by the architecture's size) from a vocabulary of
  ``vocab_size`` tokens; token 0 (:data:`BOUNDARY_TOKEN`) is the start/end symbol and is never
  an architecture token;
- ``encode(arch)`` and ``decode(tokens)``, exact inverses;
- ``allowed(position)``: the tokens valid at a position. The ranges depend on the position
  only, never on earlier tokens, and every sequence whose tokens all lie in their ranges
  decodes into a valid architecture. A decoder that picks from these ranges can therefore
  never emit an invalid architecture;
- ``augment(tokens, rng)``: the tokens of an equivalent architecture (the symmetry of the
  space), and ``canonical(tokens)``: one key per equivalence class.

Schemes:

- ``micro`` (:class:`MicroTokens`): NAO's own format (reference sec. 2, ``nao.py``): per block
  ``index_1 op_1 index_2 op_2`` with index token = index + 1 (in 1..node) and op token =
  op + 7 (7..11); vocabulary 12; 8B tokens for B blocks per cell, the normal cell first. The
  symmetry: the two branches ``(index, op)`` of a node commute; augmentation swaps them in one
  node chosen uniformly in each cell, as the authors' data expansion does.
- ``macro`` (:class:`MacroTokens`): the ENAS macro integers (layer k = one op, then k skip
  bits; N(N+1)/2 tokens for N layers), shifted clear of the start/end symbol: bit token =
  bit + 1 (1 off, 2 on), op token = op + 3 (3..8); vocabulary 9. The scheme extends NAO's
  cleanly because the length is fixed for a fixed layer count and every position has a fixed
  kind (op or bit). Macro encodings have no symmetry: augmentation is the identity.

- ``rnn`` (:class:`RecurrentTokens`): NAO-WS's Penn Treebank tokens (the authors' ``NAO-WS/rnn``
  code): per node l = 1..N ``prev_index activation`` with index token = prev + 1 (1..l) and
  activation token = activation + N + 1 (N+1..N+4, in the order tanh, ReLU, sigmoid, identity
  that NAO and enastool's corrected format share); vocabulary N + 5, which depends on the cell
  size as NAO's does (16 for their 11 nodes); 2N tokens. A recurrent cell has no symmetry.

A new space is one more subclass here and one entry in :data:`TOKEN_SCHEMES`.
Plain Python: no torch import.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from ..errors import EnasError, EncodingError
from . import nao
from .macro import MacroArch, MacroLayer
from .micro import INTS_PER_BLOCK, NUM_INPUTS, MicroArch
from .ops import Activation, MacroOp, MicroOp
from .recurrent import FIRST_NODE, INTS_PER_NODE, MAX_NODES, RecurrentArch, RecurrentNode

BOUNDARY_TOKEN = nao.BOUNDARY_TOKEN  # start/end symbol of every scheme: never an architecture token


class TokenScheme:
    """What the EPD needs from a space: fixed-length token sequences with per-position ranges.

    Subclasses are frozen dataclasses (one instance per architecture size) that set ``space``,
    ``vocab_size`` (a property where it depends on the size) and implement ``length``,
    ``encode``, ``decode`` and ``allowed``; a space with a symmetry also sets ``symmetric`` and
    implements ``augment``. ``canonical`` uses the architecture's own ``canonical()``; a space
    whose class has none overrides it.
    """

    space: ClassVar[str]
    vocab_size: ClassVar[int]
    symmetric: ClassVar[bool] = False  # True when ``augment`` can change a sequence

    @property
    def length(self) -> int:
        raise NotImplementedError

    def encode(self, arch: Any) -> list[int]:
        raise NotImplementedError

    def decode(self, tokens: Sequence[int]) -> Any:
        """The architecture of ``tokens``; EncodingError (with a 1-based position) if invalid."""
        raise NotImplementedError

    def allowed(self, position: int) -> range:
        """The tokens valid at 0-based ``position``."""
        raise NotImplementedError

    def augment(self, tokens: Sequence[int], rng: random.Random) -> list[int]:
        """The tokens of an architecture equivalent to ``tokens`` (here: the same ones)."""
        return list(tokens)

    def canonical(self, tokens: Sequence[int]) -> tuple[int, ...]:
        """One key per class of equivalent architectures (the arch's canonical form)."""
        return tuple(self.encode(self.decode(tokens).canonical()))

    def ranges(self) -> list[range]:
        """``allowed(p)`` for every position, in order."""
        return [self.allowed(p) for p in range(self.length)]

    def check(self, tokens: Sequence[int]) -> None:
        """Raise EncodingError naming the first token outside its range (or a wrong length)."""
        if len(tokens) != self.length:
            raise EncodingError(
                f"found {len(tokens)} {self.space} tokens, expected {self.length} ({self.describe()})"
            )
        for p, token in enumerate(tokens):
            valid = self.allowed(p)
            if token not in valid:
                raise EncodingError(
                    f"found {token}, expected a {self.space} token {valid.start}..{valid.stop - 1} here",
                    p + 1,
                )

    def describe(self) -> str:
        """The size, for messages (e.g. '5 blocks per cell')."""
        raise NotImplementedError


@dataclass(frozen=True)
class MicroTokens(TokenScheme):
    """NAO's micro tokens (``nao.py``) for ``num_blocks`` blocks per cell."""

    num_blocks: int = 5
    space: ClassVar[str] = MicroArch.space
    vocab_size: ClassVar[int] = nao.VOCAB_SIZE
    symmetric: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not 1 <= self.num_blocks <= nao.MAX_BLOCKS:
            raise EnasError(
                f"NAO micro tokens: num_blocks must be 1..{nao.MAX_BLOCKS} (the index tokens "
                f"stop below the op tokens), found {self.num_blocks}"
            )

    @classmethod
    def from_config(cls, config) -> "MicroTokens":
        return cls(num_blocks=config.num_blocks)

    @classmethod
    def for_arch(cls, arch: MicroArch) -> "MicroTokens":
        return cls(num_blocks=arch.num_blocks)

    @property
    def length(self) -> int:
        return MicroArch.length_for(self.num_blocks)

    @property
    def cell_length(self) -> int:
        return INTS_PER_BLOCK * self.num_blocks

    def describe(self) -> str:
        return f"{self.num_blocks} blocks per cell"

    def encode(self, arch: MicroArch) -> list[int]:
        if not isinstance(arch, MicroArch) or arch.num_blocks != self.num_blocks:
            raise EncodingError(
                f"NAO micro tokens: expected a micro architecture of {self.describe()}, found {_describe(arch)}"
            )
        return nao.to_nao(arch)

    def decode(self, tokens: Sequence[int]) -> MicroArch:
        tokens = list(tokens)
        self.check(tokens)
        return nao.from_nao(tokens)

    def allowed(self, position: int) -> range:
        _check_position(position, self.length)
        within = position % self.cell_length
        node = within // INTS_PER_BLOCK + NUM_INPUTS
        if within % 2 == 0:  # index_1 or index_2: any earlier node
            return range(nao.INDEX_OFFSET, nao.INDEX_OFFSET + node)
        return range(nao.OP_OFFSET, nao.OP_OFFSET + MicroOp.count())

    def augment(self, tokens: Sequence[int], rng: random.Random) -> list[int]:
        """Swap the two branches (index, op) of one node drawn uniformly in each cell."""
        tokens = list(tokens)
        half = INTS_PER_BLOCK // 2  # one branch: index and op
        for cell_start in (0, self.cell_length):
            first = cell_start + INTS_PER_BLOCK * rng.randrange(self.num_blocks)
            middle, last = first + half, first + INTS_PER_BLOCK
            tokens[first:last] = tokens[middle:last] + tokens[first:middle]
        return tokens


# Macro tokens: each integer shifted past the start/end symbol, bits below the ops.
MACRO_BIT_OFFSET = 1  # bit token = bit + 1: 1 = no skip, 2 = skip
MACRO_OP_OFFSET = MACRO_BIT_OFFSET + 2  # op token = macro op id + 3
MACRO_VOCAB_SIZE = MACRO_OP_OFFSET + MacroOp.count()  # 9


@dataclass(frozen=True)
class MacroTokens(TokenScheme):
    """Macro integers as tokens for ``num_layers`` layers: op + 3, then k bits + 1 for layer k."""

    num_layers: int = 12
    space: ClassVar[str] = MacroArch.space
    vocab_size: ClassVar[int] = MACRO_VOCAB_SIZE
    # Position p is an op position iff it starts a layer; computed once.
    _op_positions: frozenset = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise EnasError(f"NAO macro tokens: num_layers must be >= 1, found {self.num_layers}")
        starts = frozenset(MacroArch.length_for(k) for k in range(self.num_layers))
        object.__setattr__(self, "_op_positions", starts)

    @classmethod
    def from_config(cls, config) -> "MacroTokens":
        return cls(num_layers=config.layers)

    @classmethod
    def for_arch(cls, arch: MacroArch) -> "MacroTokens":
        return cls(num_layers=arch.num_layers)

    @property
    def length(self) -> int:
        return MacroArch.length_for(self.num_layers)

    def describe(self) -> str:
        return f"{self.num_layers} layers"

    def encode(self, arch: MacroArch) -> list[int]:
        if not isinstance(arch, MacroArch) or arch.num_layers != self.num_layers:
            raise EncodingError(
                f"NAO macro tokens: expected a macro architecture of {self.describe()}, found {_describe(arch)}"
            )
        tokens = []
        for layer in arch.layers:
            tokens.append(layer.op.enas_id + MACRO_OP_OFFSET)
            tokens += [bit + MACRO_BIT_OFFSET for bit in layer.skips]
        return tokens

    def decode(self, tokens: Sequence[int]) -> MacroArch:
        tokens = list(tokens)
        self.check(tokens)
        layers = []
        for k in range(self.num_layers):
            start = MacroArch.length_for(k)
            op = MacroOp(tokens[start] - MACRO_OP_OFFSET)
            bits = tuple(t - MACRO_BIT_OFFSET for t in tokens[start + 1 : start + 1 + k])
            layers.append(MacroLayer(op, bits))
        return MacroArch(tuple(layers))

    def allowed(self, position: int) -> range:
        _check_position(position, self.length)
        if position in self._op_positions:
            return range(MACRO_OP_OFFSET, MACRO_VOCAB_SIZE)
        return range(MACRO_BIT_OFFSET, MACRO_OP_OFFSET)


# Recurrent tokens: index tokens first (1..N, as the micro ones), the activations after them.
RNN_INDEX_OFFSET = 1  # index token = prev_index + 1, clear of the start/end symbol


@dataclass(frozen=True)
class RecurrentTokens(TokenScheme):
    """NAO-WS's recurrent tokens for ``num_nodes`` nodes after node 0: per node l, prev + 1 in
    1..l, then activation + N + 1; the vocabulary (N + 5) grows with the cell, as NAO's."""

    num_nodes: int = 8
    space: ClassVar[str] = RecurrentArch.space

    def __post_init__(self) -> None:
        if not 1 <= self.num_nodes <= MAX_NODES:
            raise EnasError(f"NAO rnn tokens: num_nodes must be 1..{MAX_NODES}, found {self.num_nodes}")

    @classmethod
    def from_config(cls, config) -> "RecurrentTokens":
        return cls(num_nodes=config.num_nodes)

    @classmethod
    def for_arch(cls, arch: RecurrentArch) -> "RecurrentTokens":
        return cls(num_nodes=arch.num_nodes)

    @property
    def activation_offset(self) -> int:
        return RNN_INDEX_OFFSET + self.num_nodes  # just past the largest index token (N)

    @property
    def vocab_size(self) -> int:  # type: ignore[override]  # depends on the size here
        return self.activation_offset + Activation.count()

    @property
    def length(self) -> int:
        return RecurrentArch.length_for(self.num_nodes)

    def describe(self) -> str:
        return f"{self.num_nodes} nodes"

    def encode(self, arch: RecurrentArch) -> list[int]:
        if not isinstance(arch, RecurrentArch) or arch.num_nodes != self.num_nodes:
            raise EncodingError(
                f"NAO rnn tokens: expected an rnn cell of {self.describe()}, found {_describe(arch)}"
            )
        tokens = []
        for node in arch.nodes:
            tokens += [node.prev + RNN_INDEX_OFFSET, node.activation.enas_id + self.activation_offset]
        return tokens

    def decode(self, tokens: Sequence[int]) -> RecurrentArch:
        tokens = list(tokens)
        self.check(tokens)
        pairs = zip(tokens[::INTS_PER_NODE], tokens[1::INTS_PER_NODE])
        return RecurrentArch(tuple(
            RecurrentNode(index - RNN_INDEX_OFFSET, Activation(act - self.activation_offset))
            for index, act in pairs
        ))

    def allowed(self, position: int) -> range:
        _check_position(position, self.length)
        if position % INTS_PER_NODE == 0:  # the prev index of node l: any of 0..l-1
            node = position // INTS_PER_NODE + FIRST_NODE
            return range(RNN_INDEX_OFFSET, RNN_INDEX_OFFSET + node)
        return range(self.activation_offset, self.vocab_size)


TOKEN_SCHEMES: dict[str, type[TokenScheme]] = {
    cls.space: cls for cls in (MicroTokens, MacroTokens, RecurrentTokens)
}


def build_token_scheme(config) -> TokenScheme:
    """The token scheme of ``config.space`` at the config's architecture size."""
    return _scheme_class(config.space).from_config(config)


def scheme_for_arch(arch: Any) -> TokenScheme:
    """The token scheme that fits ``arch`` (its space and size)."""
    return _scheme_class(getattr(arch, "space", type(arch).__name__)).for_arch(arch)


def _scheme_class(space: str) -> type[TokenScheme]:
    try:
        return TOKEN_SCHEMES[space]
    except KeyError:
        raise EnasError(
            f"space {space!r} has no NAO token scheme; supported spaces: {', '.join(TOKEN_SCHEMES)}"
        ) from None


def _check_position(position: int, length: int) -> None:
    if not 0 <= position < length:
        raise IndexError(f"token position {position} outside 0..{length - 1}")


def _describe(arch: Any) -> str:
    if isinstance(arch, MicroArch):
        return f"a micro architecture of {arch.num_blocks} blocks per cell"
    if isinstance(arch, MacroArch):
        return f"a macro architecture of {arch.num_layers} layers"
    if isinstance(arch, RecurrentArch):
        return f"an rnn cell of {arch.num_nodes} nodes"
    return f"a {type(arch).__name__}"
