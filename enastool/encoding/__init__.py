"""Architecture encodings of the ENAS search spaces (plain Python: no torch import)."""

from .macro import MacroArch, MacroLayer
from .micro import Block, Cell, MicroArch
from .ops import Activation, MacroOp, MicroOp, OpKind
from .recurrent import RecurrentArch, RecurrentNode
from .spaces import SPACES, Arch, space_class

__all__ = [
    "Activation", "Arch", "Block", "Cell", "MacroArch", "MacroLayer", "MacroOp", "MicroArch",
    "MicroOp", "OpKind", "RecurrentArch", "RecurrentNode", "SPACES", "space_class",
]
