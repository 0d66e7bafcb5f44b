"""enastool: efficient neural architecture search with typed architecture encodings.

Importing this package (and ``enastool.encoding``) does not import torch. The Python API
(``enastool.api``) is re-exported here on first use: ``enastool.parse`` stays torch-free,
``enastool.build_network`` and ``enastool.load_run`` import torch when called.
"""

import importlib

__version__ = "0.1.0"

# Public name -> the submodule defining it, imported on first access (PEP 562), so that
# `import enastool` stays instant and torch-free.
_LAZY = {
    "parse": "api", "build_network": "api", "load_run": "api", "TrainedRun": "api",
    "TrainedTextRun": "api",
    "EnasError": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'enastool' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
