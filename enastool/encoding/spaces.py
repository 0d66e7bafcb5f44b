"""Registry of search spaces. A new space (e.g. the recurrent PTB cell) is a sibling module
whose architecture class is added here; nothing else has to change."""

from __future__ import annotations

from .macro import MacroArch
from .micro import MicroArch

SPACES: dict[str, type] = {MacroArch.space: MacroArch, MicroArch.space: MicroArch}

Arch = MacroArch | MicroArch


def space_class(name: str) -> type:
    from ..errors import EnasError

    try:
        return SPACES[name]
    except KeyError:
        raise EnasError(f"unknown space {name!r}, expected one of {', '.join(SPACES)}") from None
