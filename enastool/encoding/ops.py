"""Op vocabularies of the ENAS search spaces: one enum per vocabulary.

These enums are the only list of op names in enastool. Parsers, networks, controllers,
renderers and converters all read names, kinds and kernel sizes from here.
"""

from __future__ import annotations

import enum


class OpKind(str, enum.Enum):
    CONV = "conv"
    SEP_CONV = "sep_conv"
    AVG_POOL = "avg_pool"
    MAX_POOL = "max_pool"
    IDENTITY = "identity"

    @property
    def is_pool(self) -> bool:
        return self in (OpKind.AVG_POOL, OpKind.MAX_POOL)


class _Vocabulary(enum.Enum):
    """Base of every vocabulary enum. A member's value is its ENAS integer id; ``short`` is its
    enastool name and ``darts`` its name in DARTS genotypes."""

    @property
    def enas_id(self) -> int:
        return self.value

    @classmethod
    def from_id(cls, enas_id: int):
        return cls(enas_id)

    @classmethod
    def from_name(cls, name: str):
        """Look up by short name, DARTS name or enum member name (case-insensitive)."""
        key = name.strip().lower()
        for op in cls:
            if key in (op.short, op.darts, op.name.lower()):
                return op
        raise KeyError(name)

    @classmethod
    def count(cls) -> int:
        return len(cls.__members__)

    def __str__(self) -> str:
        return self.short


class _Op(_Vocabulary):
    """Base of the convolutional op enums: each op also has a kind and a kernel size."""

    def __new__(cls, enas_id: int, short: str, darts: str, kind: OpKind, kernel: int):
        member = object.__new__(cls)
        member._value_ = enas_id
        member.short = short
        member.darts = darts
        member.kind = kind
        member.kernel = kernel
        return member


class MacroOp(_Op):
    """Macro space: one op per layer (ids as in the authors' ``cifar10_macro_*.sh``)."""

    CONV3 = (0, "conv3x3", "conv_3x3", OpKind.CONV, 3)
    SEP3 = (1, "sep3x3", "sep_conv_3x3", OpKind.SEP_CONV, 3)
    CONV5 = (2, "conv5x5", "conv_5x5", OpKind.CONV, 5)
    SEP5 = (3, "sep5x5", "sep_conv_5x5", OpKind.SEP_CONV, 5)
    AVG3 = (4, "avgpool3x3", "avg_pool_3x3", OpKind.AVG_POOL, 3)
    MAX3 = (5, "maxpool3x3", "max_pool_3x3", OpKind.MAX_POOL, 3)


class MicroOp(_Op):
    """Micro space: two ops per block (ids as in the authors' ``cifar10_micro_*.sh``)."""

    SEP3 = (0, "sep3x3", "sep_conv_3x3", OpKind.SEP_CONV, 3)
    SEP5 = (1, "sep5x5", "sep_conv_5x5", OpKind.SEP_CONV, 5)
    AVG3 = (2, "avgpool3x3", "avg_pool_3x3", OpKind.AVG_POOL, 3)
    MAX3 = (3, "maxpool3x3", "max_pool_3x3", OpKind.MAX_POOL, 3)
    IDENTITY = (4, "identity", "skip_connect", OpKind.IDENTITY, 1)


class Activation(_Vocabulary):
    """Recurrent space: the activation of a node (ids as in the authors' corrected ``enas_lm``
    code, which orders them tanh, ReLU, sigmoid, identity; the first ENAS repository used
    another order, see ``enastool.encoding.recurrent``)."""

    def __new__(cls, enas_id: int, short: str, darts: str):
        member = object.__new__(cls)
        member._value_ = enas_id
        member.short = short
        member.darts = darts
        return member

    TANH = (0, "tanh", "tanh")
    RELU = (1, "relu", "relu")
    SIGMOID = (2, "sigmoid", "sigmoid")
    IDENTITY = (3, "identity", "identity")
