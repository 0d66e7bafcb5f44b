"""Writing a trained final network out of enastool: torch.export (.pt2), ONNX (.onnx), TorchScript (.ts).

What is written is the network of a final run (``enastool.api.load_run``) in eval mode, with
its input normalisation folded in (``NormalizedNetwork``): the program takes images as the data
set holds them, ``images`` uint8 N x C x H x W (pixels 0..255, any batch size N), and returns
``logits`` float32 N x classes. Nobody has to remember the training set's mean and std; they
are also recorded, with the architecture and the checkpoint, in the file's metadata
(``METADATA_NAME``: an extra file of the .pt2 and .ts archives, ONNX ``metadata_props``).

Eval mode means dropout and drop path are not in the program: the micro network decides drop
path in Python on ``self.training``, so tracing in eval mode leaves it out, and the .pt2 program
is decomposed to the inference IR, in which eval-mode dropout is no op at all.

The exporters, for torch 2.13 on a CPU:

- .pt2: ``torch.export.export`` with a dynamic batch dimension, ``run_decompositions()``,
  ``torch.export.save``; load with ``torch.export.load(path).module()``.
- .onnx: the dynamo-based ``torch.onnx.export(..., dynamo=True)`` (torch's default exporter
  since 2.9; the TorchScript-based one is deprecated), opset ``ONNX_OPSET``, dynamic batch.
  It needs the ``onnx`` and ``onnxscript`` packages: ``pip install 'enastool[onnx]'``.
- .ts: ``torch.jit.trace`` (the networks have no data-dependent control flow in eval mode);
  TorchScript is deprecated by PyTorch, kept for runtimes that only read it (LibTorch).

Each file is written atomically (``enastool.atomic``). Runs of other data kinds (the rnn
space's language models) are refused with a message naming what is supported: their network
steps through a window in Python with a state carried between windows, and a program of a
fixed window and batch would be a trap; ``enastool.load_run`` gives the network in Python.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Callable

from . import __version__
from .atomic import write_bytes_atomic
from .encoding.spaces import DATA_KINDS, IMAGES, data_kind
from .errors import EnasError

METADATA_NAME = "enastool.json"  # the metadata entry in every exported file
INPUT_NAME, OUTPUT_NAME = "images", "logits"
ONNX_OPSET = 20
ONNX_PACKAGES = ("onnx", "onnxscript")
ONNX_EXTRA = "pip install 'enastool[onnx]'"
MAX_BATCH = 65_536  # the dynamic batch dimension's upper bound (torch.export needs one)
EXAMPLE_BATCH = 2  # traced with this many images; any batch size runs afterwards
PIXEL_RANGE = (0, 255)

# Suffix -> (format name in messages and metadata, writer).
FORMATS: dict[str, str] = {".pt2": "torch.export", ".onnx": "ONNX", ".ts": "TorchScript"}


def export_format(path: str | Path) -> str:
    """The suffix of ``path`` if it names an export format; one-line EnasError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        found = f"'{suffix}'" if suffix else "no suffix"
        raise EnasError(
            f"{path}: found {found}, expected a file ending in "
            + ", ".join(f"{s} ({name})" for s, name in FORMATS.items())
        )
    return suffix


def check_exporter(suffix: str) -> None:
    """Refuse, before anything loads, a format whose optional packages are missing."""
    if suffix == ".onnx":
        missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            raise EnasError(f"ONNX export needs the {' and '.join(missing)} package"
                            f"{'s' if len(missing) > 1 else ''}: {ONNX_EXTRA}")


def export_run(run_path: str | Path, out: str | Path, *, checkpoint: str | None = None) -> dict:
    """Write final run ``run_path``'s network to ``out`` (format from the suffix); returns the
    metadata stored in the file (see the module doc)."""
    out = Path(out)
    suffix = export_format(out)
    check_exporter(suffix)
    if not out.parent.is_dir():
        raise EnasError(f"{out}: no such directory {str(out.parent)!r}; create it first")
    from .api import load_run
    from .runs import RunDir

    run = RunDir.open(run_path)
    if run.kind != "final":
        raise EnasError(f"{run_path} is a {run.kind} run: export writes the network of a final run; "
                        "train the architecture first (enastool derive RUN | enastool train-final - --out FINAL)")
    kind = data_kind(run.config.space)
    if kind not in _EXPORTABLE:
        spaces = " and ".join(space for space, k in DATA_KINDS.items() if k in _EXPORTABLE)
        raise EnasError(f"{run_path}: export writes the networks of {spaces} final runs; this is an "
                        f"{run.config.space} run ({kind}), whose network enastool.load_run(RUN).network "
                        "gives in Python")
    trained = load_run(run_path, checkpoint=checkpoint, device="cpu")
    module, example, metadata = _EXPORTABLE[kind](trained)
    metadata = {"format": FORMATS[suffix], "enastool_version": __version__, **metadata}
    data = _WRITERS[suffix](module, example, json.dumps(metadata, indent=2))
    write_bytes_atomic(out, data)
    return metadata


# ----------------------------------------------------------------------------- what is exported
def _image_program(trained):
    """The normalised image network, an example batch and the metadata of an image run."""
    import torch

    channels, height, width = trained.input_shape
    generator = torch.Generator().manual_seed(0)
    example = torch.randint(PIXEL_RANGE[0], PIXEL_RANGE[1] + 1, (EXAMPLE_BATCH, channels, height, width),
                            dtype=torch.uint8, generator=generator)
    metadata = {
        "run": str(trained.path),
        "checkpoint": trained.checkpoint,
        "epoch": trained.epoch,
        "arch": f"{trained.arch.space} {trained.arch.format()}",
        "dataset": trained.dataset,
        "input": {
            "name": INPUT_NAME, "dtype": "uint8", "shape": ["N", channels, height, width],
            "layout": "NCHW", "range": list(PIXEL_RANGE),
            "normalisation": "folded in: (images / 255 - mean) / std per channel",
            "mean": list(trained.mean), "std": list(trained.std),
        },
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["N", trained.num_classes]},
    }
    return trained.normalized_network().eval(), (example,), metadata


# The program of a final run, per data kind (``enastool.encoding.spaces.DATA_KINDS``):
# trained run -> (eval-mode module, example inputs, metadata).
_EXPORTABLE: dict[str, Callable] = {IMAGES: _image_program}


# ----------------------------------------------------------------------------- writers
def _dynamic_batch(example) -> dict:
    import torch

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return {INPUT_NAME: {0: batch}} if len(example) == 1 else {}


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and deprecation notes; the library never prints."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _write_pt2(module, example, metadata: str) -> bytes:
    import torch

    with _quiet():
        program = torch.export.export(module, example, dynamic_shapes=_dynamic_batch(example))
        program = program.run_decompositions()  # the inference IR: no eval-mode dropout left
        buffer = io.BytesIO()
        torch.export.save(program, buffer, extra_files={METADATA_NAME: metadata})
    return buffer.getvalue()


def _write_onnx(module, example, metadata: str) -> bytes:
    import torch

    with _quiet():
        program = torch.onnx.export(
            module, example, dynamo=True, opset_version=ONNX_OPSET, verbose=False,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=_dynamic_batch(example),
        )
        proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_NAME, metadata
    return proto.SerializeToString()


def _write_torchscript(module, example, metadata: str) -> bytes:
    import torch

    with _quiet():
        traced = torch.jit.trace(module, example)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={METADATA_NAME: metadata})
    return buffer.getvalue()


_WRITERS: dict[str, Callable] = {".pt2": _write_pt2, ".onnx": _write_onnx, ".ts": _write_torchscript}
