"""Architecture encodings of the ENAS search spaces (plain Python: no torch import)."""

from .macro import MacroArch, MacroLayer
from .micro import Block, Cell, MicroArch
from .ops import MacroOp, MicroOp, OpKind
from .spaces import SPACES, Arch, space_class

__all__ = [
    "Arch", "Block", "Cell", "MacroArch", "MacroLayer", "MacroOp", "MicroArch", "MicroOp",
    "OpKind", "SPACES", "space_class",
]
