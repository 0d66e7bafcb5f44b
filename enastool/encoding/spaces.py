"""Registry of search spaces. A new space is a sibling module whose architecture class is added
here; the readers, writers and commands find it through this table."""

from __future__ import annotations

from .macro import MacroArch
from .micro import MicroArch
from .recurrent import RecurrentArch

SPACES: dict[str, type] = {cls.space: cls for cls in (MacroArch, MicroArch, RecurrentArch)}

Arch = MacroArch | MicroArch | RecurrentArch


def space_class(name: str) -> type:
    from ..errors import EnasError

    try:
        return SPACES[name]
    except KeyError:
        raise EnasError(f"unknown space {name!r}, expected one of {', '.join(SPACES)}") from None
