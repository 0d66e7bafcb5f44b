"""Registry of search spaces. A new space is a sibling module whose architecture class is added
here; the readers, writers and commands find it through this table."""

from __future__ import annotations

from .macro import MacroArch
from .micro import MicroArch
from .recurrent import RecurrentArch

SPACES: dict[str, type] = {cls.space: cls for cls in (MacroArch, MicroArch, RecurrentArch)}

Arch = MacroArch | MicroArch | RecurrentArch

# What the networks of each space learn from. The data kind selects the data sets a space can
# use, its search task and its final trainer (registries keyed by kind, outside this package).
IMAGES, TEXT = "images", "text"
DATA_KINDS: dict[str, str] = {MacroArch.space: IMAGES, MicroArch.space: IMAGES, RecurrentArch.space: TEXT}


def data_kind(space: str) -> str:
    """The data kind of ``space`` (``images`` or ``text``)."""
    space_class(space)  # an unknown space is the caller's error
    return DATA_KINDS[space]


def space_class(name: str) -> type:
    from ..errors import EnasError

    try:
        return SPACES[name]
    except KeyError:
        raise EnasError(f"unknown space {name!r}, expected one of {', '.join(SPACES)}") from None
