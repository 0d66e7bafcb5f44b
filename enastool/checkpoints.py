"""Checking a checkpoint against the run that loads it: once, in one place, before any use.

Every reader of a checkpoint (search ``--resume``, train-final ``--resume``, derive, evaluate)
first builds what it will load into, then calls :func:`check_checkpoint` with

- ``kind`` and ``version``: the run kind and the checkpoint format it reads;
- ``expected``: values that must be the run's own (its space, strategy, architecture, the
  shape of its data), each with the fix to print when they are not;
- ``template``: the structure it needs, which is simply a checkpoint it would write itself
  (its fresh ``state_dict()``s, counters and generator states) or any part of one. Live
  optimizers may stand in for their state dicts, so that their moments are checked against the
  parameters they belong to.

Nothing here knows a space, a strategy or a network: a new one declares what it loads by what
it saves. A mismatch is one EnasError naming the file, the entry and what does not fit, before
``load_state_dict`` or a restore can fail half-way with a traceback.

What "fits the template" means, by the template's value:

- a tensor: a tensor of the same shape and dtype;
- a mapping whose values are all tensors (a module's state dict): exactly the same keys;
- any other non-empty mapping: at least the template's keys, each value fitting in turn;
- an empty mapping (what accumulates while training: sums of figures, optimizer moments):
  any mapping of numbers, tensors and such mappings;
- a live ``torch.optim.Optimizer``: as many parameter groups with as many parameters each, group
  settings of the right types, and moments shaped like their parameters;
- a non-empty list of tensors (per-GPU generator states): a list of tensors of any length,
  since the saving machine may have had another number of GPUs;
- any other list or tuple: one of the same length, element by element (an empty one: any);
- an int: an int in 0 .. 2**63-1 (counts, seeds and generator words; never a bool);
- a float: a number; a str or a bool: the same type;
- None (no value yet, e.g. a baseline before the first reward): None, a number or a string.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .errors import EnasError

MAX_INT = 2**63 - 1  # ints in a checkpoint are counters, seeds and generator words: int64
LISTED = 3  # names listed in a message before "and N more"
DEFAULT_FIX = "it is not this run's checkpoint, or it is damaged; put the run's own checkpoint back"


def resume_fix(name: str) -> str:
    """The fix a resume offers for its checkpoint ``name`` (it may start over without it)."""
    return f"it is not this run's checkpoint, or it is damaged; put the run's own {name} back, or delete it to restart the run"


def check_checkpoint(
    state: Mapping[str, Any],
    path,
    *,
    kind: str,
    version: int,
    expected: Mapping[str, tuple[Any, str]] | None = None,
    template: Mapping[str, Any] | None = None,
    fix: str = DEFAULT_FIX,
) -> None:
    """EnasError ``"<path>: <what does not match>; <fix>"`` unless ``state`` is a ``kind``
    checkpoint of format ``version`` whose ``expected`` values (key -> (value, fix)) match and
    whose structure fits ``template`` (see the module doc)."""
    found_kind = state.get("kind")
    if found_kind != kind:
        what = (f"a {_short(found_kind).strip(chr(39))} checkpoint" if isinstance(found_kind, str)
                else "not an enastool checkpoint (no run kind in it)")
        raise EnasError(f"{path}: {what}, but this is a {kind} run; {fix}")
    found_version = state.get("version")
    if found_version != version or isinstance(found_version, bool):
        raise EnasError(
            f"{path}: checkpoint format {_short(found_version)}, but this enastool reads format "
            f"{version}; it was written by another enastool version"
        )
    for key, (value, value_fix) in (expected or {}).items():
        found = state.get(key)
        if not _equal_plain(found, value):
            raise EnasError(f"{path}: {key} is {_short(found)}, but the run's is {_short(value)}; {value_fix}")
    problem = _mismatch(state, template or {}, ())
    if problem is not None:
        raise EnasError(f"{path}: {problem}; {fix}")


# --------------------------------------------------------------------------------------------
# The rules.
# --------------------------------------------------------------------------------------------


def _mismatch(value: Any, template: Any, where: tuple) -> str | None:
    """What about ``value`` does not fit ``template``, or None."""
    if isinstance(template, torch.optim.Optimizer):
        return _optimizer_mismatch(value, template, where)
    if isinstance(template, torch.Tensor):
        return _tensor_mismatch(value, template, where)
    if template is None:
        ok = value is None or _is_number(value) or isinstance(value, str)
        return None if ok else f"{_name(where)} is {_kind(value)}, expected a number or nothing"
    if isinstance(template, bool):
        return None if isinstance(value, bool) else f"{_name(where)} is {_kind(value)}, expected true or false"
    if isinstance(template, int):
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT:
            return None
        return f"{_name(where)} is {_kind(value)}, expected a count from 0 to {MAX_INT}"
    if isinstance(template, float):
        return None if _is_number(value) else f"{_name(where)} is {_kind(value)}, expected a number"
    if isinstance(template, str):
        return None if isinstance(value, str) else f"{_name(where)} is {_kind(value)}, expected text"
    if isinstance(template, Mapping):
        return _mapping_mismatch(value, template, where)
    if isinstance(template, (list, tuple)):
        return _sequence_mismatch(value, template, where)
    raise TypeError(f"check_checkpoint: no rule for a template {type(template).__name__} at {_name(where)}")


def _tensor_mismatch(value: Any, template: torch.Tensor, where: tuple) -> str | None:
    if not isinstance(value, torch.Tensor):
        return f"{_name(where)} is {_kind(value)}, expected a tensor"
    if value.shape != template.shape:
        # Generator states are byte tensors whose length depends on the device type.
        hint = " (a generator of another device type: resume on the device the run started on)" \
            if template.dtype == torch.uint8 else " (what the run's configuration builds)"
        return f"{_name(where)} has shape {list(value.shape)}, expected {list(template.shape)}{hint}"
    if value.dtype != template.dtype:
        return f"{_name(where)} holds {value.dtype}, expected {template.dtype}"
    return None


def _mapping_mismatch(value: Any, template: Mapping, where: tuple) -> str | None:
    if not isinstance(value, Mapping):
        return f"{_name(where)} is {_kind(value)}, expected a mapping"
    if not template:
        return _numeric_mismatch(value, where)
    missing = [key for key in template if key not in value]
    if missing:
        return f"{_name(where)} lacks {_listing(missing)}"
    if all(isinstance(item, torch.Tensor) for item in template.values()):  # a state dict
        extra = [key for key in value if key not in template]
        if extra:
            return f"{_name(where)} has {_listing(extra)}, which the network built from the run's configuration lacks"
    for key, item in template.items():
        problem = _mismatch(value[key], item, (*where, key))
        if problem is not None:
            return problem
    return None


def _sequence_mismatch(value: Any, template: list | tuple, where: tuple) -> str | None:
    if not isinstance(value, (list, tuple)):
        return f"{_name(where)} is {_kind(value)}, expected a list"
    if not template:
        return _numeric_mismatch(value, where)
    if all(isinstance(item, torch.Tensor) for item in template):  # one state per device
        bad = next((i for i, item in enumerate(value) if not isinstance(item, torch.Tensor)), None)
        return None if bad is None else f"{_name((*where, bad))} is {_kind(value[bad])}, expected a tensor"
    if len(value) != len(template):
        return f"{_name(where)} has {len(value)} entries, expected {len(template)}"
    for index, (item, expected) in enumerate(zip(value, template)):
        problem = _mismatch(item, expected, (*where, index))
        if problem is not None:
            return problem
    return None


def _numeric_mismatch(value: Any, where: tuple) -> str | None:
    """Accumulated training state: numbers, tensors, None, and mappings or lists of them."""
    if value is None or _is_number(value) or isinstance(value, torch.Tensor):
        return None
    items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, (list, tuple)) else None
    if items is None:
        return f"{_name(where)} is {_kind(value)}, expected numbers"
    for key, item in items:
        problem = _numeric_mismatch(item, (*where, key))
        if problem is not None:
            return problem
    return None


def _optimizer_mismatch(value: Any, optimizer: torch.optim.Optimizer, where: tuple) -> str | None:
    """An optimizer state dict that ``optimizer`` can load and step with."""
    fresh = optimizer.state_dict()
    if not isinstance(value, Mapping):
        return f"{_name(where)} is {_kind(value)}, expected an optimizer state"
    for key, kind in (("state", Mapping), ("param_groups", list)):
        if not isinstance(value.get(key), kind):
            return f"{_name((*where, key))} is {_kind(value.get(key))}, expected a {kind.__name__.lower()}"
    problem = _numeric_mismatch(value["state"], (*where, "state"))
    if problem is not None:
        return problem
    groups = value["param_groups"]
    if len(groups) != len(fresh["param_groups"]):
        return f"{_name((*where, 'param_groups'))} has {len(groups)} groups, expected {len(fresh['param_groups'])}"
    indices = []
    for number, (group, expected) in enumerate(zip(groups, fresh["param_groups"])):
        here = (*where, "param_groups", number)
        if not isinstance(group, Mapping) or not isinstance(group.get("params"), list):
            return f"{_name(here)} is not a parameter group"
        if len(group["params"]) != len(expected["params"]):
            return f"{_name(here)} has {len(group['params'])} parameters, the run's network {len(expected['params'])}"
        # Settings this torch knows but an older one did not write are filled in on loading.
        for key in expected.keys() & group.keys():
            problem = _mismatch(group[key], expected[key], (*here, key))
            if problem is not None:
                return problem
        indices += group["params"]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    shapes = dict(zip(indices, (p.shape for p in params)))
    for index, moments in value["state"].items():
        here = (*where, "state", index)
        if index not in shapes:
            return f"{_name(here)} belongs to no parameter of the run's network"
        if not isinstance(moments, Mapping):
            return f"{_name(here)} is {_kind(moments)}, expected a mapping"
        for name, moment in moments.items():
            if isinstance(moment, torch.Tensor) and moment.dim() > 0 and moment.shape != shapes[index]:
                return (f"{_name((*here, name))} has shape {list(moment.shape)}, but its parameter "
                        f"has {list(shapes[index])}")
    return None


# --------------------------------------------------------------------------------------------
# Words.
# --------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal_plain(found: Any, value: Any) -> bool:
    """``found == value`` for plain data (a tensor in ``found`` is never equal)."""
    if isinstance(found, torch.Tensor) or type(found) is not type(value):
        return False
    if isinstance(value, Mapping):
        return found.keys() == value.keys() and all(_equal_plain(found[k], value[k]) for k in value)
    return found == value


def _name(where: tuple) -> str:
    """``progress.step``, ``supernet['stem.0.weight']``, ``rng.python[1]``."""
    if not where:
        return "the checkpoint"
    text = str(where[0])
    for key in where[1:]:
        text += f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"
    return text


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if value is None:
        return "nothing (None)"
    name = type(value).__name__
    return f"{_short(value)} ({'an' if name[0] in 'aeiou' else 'a'} {name})"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _listing(keys: list) -> str:
    shown = ", ".join(repr(k) for k in keys[:LISTED])
    return shown + (f" and {len(keys) - LISTED} more" if len(keys) > LISTED else "")
