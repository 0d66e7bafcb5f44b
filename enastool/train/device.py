"""The one place that decides device, autocast dtype, memory format, op kernels and compilation.

Every setting accepts "auto" and resolves the same way for search, derive, final training and
evaluation (``resolve_placement``), and every network is put in place by ``Placement.prepare``.
The choices, each measured (BENCHMARKS.md):

- CUDA: bf16 autocast, channels_last, torch.compile for final training, torch's own kernels.
- CPU: fp32 (bf16 autocast was 2x slower on a micro supernet step, even on a CPU with
  AVX512-BF16), channels_last (oneDNN's convolutions, depthwise ones above all, and ATen's
  pooling are 2-4x faster in it; a micro supernet step 2x), eager mode (compile time outweighs
  the gain, and a supernet changes its graph every step), and the CPU formulations of
  ``enastool.nn.kernels`` (depthwise weight gradients from 3-wide pieces, 1x1 convs as matrix
  products, average pooling as a depthwise conv), which need channels_last. ``prepare`` also
  keeps freed memory in the process's heap (``tune_host``).

The same code path runs everywhere; only these switches differ.

float16 is for CUDA only: on a CPU, float16 autocast runs through slow emulation (a smoke
training ran some 30x slower) and without loss scaling its small range costs accuracy, so
training refuses it there. Scoring a float16 run on a CPU (derive, evaluate) computes in
float32 instead: the same weights, a wider format.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import EnasError
from ..nn.kernels import CPU as CPU_KERNELS
from ..nn.kernels import NATIVE as NATIVE_KERNELS
from ..nn.kernels import set_kernels

AUTO = "auto"
DEVICE_NAMES = (AUTO, "cpu", "cuda")
# Accepted spellings of the autocast dtype (None = plain fp32). float16 also needs loss
# scaling (see ``needs_grad_scaler``); bfloat16 has fp32's range and does not.
DTYPES = {
    "float32": None, "fp32": None,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}
ON_WORDS = ("on", "true", "yes", "1")
OFF_WORDS = ("off", "false", "no", "0")


def resolve_device(name: str = AUTO, index: int | None = None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU. ``index`` picks the GPU (torchrun's LOCAL_RANK)."""
    name = str(name).strip().lower()
    if name == AUTO:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EnasError("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
        if ":" in name:
            return torch.device(name)
        return torch.device("cuda", index or 0)
    if name == "cpu":
        return torch.device("cpu")
    raise EnasError(f"--device {name!r}: expected one of {', '.join(DEVICE_NAMES)}")


def _switch(value, option: str, auto_value: bool) -> bool:
    """Read an on/off/auto setting that may also be a plain bool."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word == AUTO:
        return auto_value
    if word in ON_WORDS:
        return True
    if word in OFF_WORDS:
        return False
    raise EnasError(f"{option} {value!r}: expected auto, on or off")


def autocast_dtype(config, device: torch.device, training: bool = True) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. ``auto``: bf16 on CUDA, none on CPU.

    float16 off CUDA: refused for ``training``, float32 for scoring (see the module doc).
    """
    word = str(getattr(config, "dtype", AUTO)).strip().lower()
    if word == AUTO:
        return torch.bfloat16 if device.type == "cuda" else None
    if word not in DTYPES:
        raise EnasError(f"--dtype {word!r}: expected auto, float32, bfloat16 or float16")
    dtype = DTYPES[word]
    if dtype == torch.float16 and device.type != "cuda":
        if not training:
            return None
        raise EnasError(
            f"--dtype {word} needs a CUDA device: on {device.type} float16 is emulated, many times "
            "slower and less accurate; use --dtype bfloat16 or float32 there"
        )
    return dtype


def needs_grad_scaler(dtype: torch.dtype | None) -> bool:
    """float16 gradients underflow without loss scaling; bfloat16 and fp32 ones do not."""
    return dtype == torch.float16


def use_channels_last(config, device: torch.device) -> bool:
    """channels_last memory format: ``auto`` turns it on everywhere. CUDA's tensor cores prefer
    NHWC; on the CPU oneDNN's convolutions and ATen's pooling are 2-4x faster in it."""
    return _switch(getattr(config, "channels_last", AUTO), "--channels-last", True)


def use_compile(config, device: torch.device) -> bool:
    """torch.compile: ``auto`` turns it on for CUDA only (on CPU compile time outweighs the gain)."""
    return _switch(getattr(config, "compile", AUTO), "--compile", device.type == "cuda")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context that is a no-op when ``dtype`` is None."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


def op_kernels(device: torch.device, dtype: torch.dtype | None, channels_last: bool) -> str:
    """Which implementations of ``enastool.nn.kernels`` to use: the CPU formulations on the
    CPU in fp32 channels_last (where they were measured faster), torch's own elsewhere."""
    cpu_fast = device.type == "cpu" and dtype is None and channels_last
    return CPU_KERNELS if cpu_fast else NATIVE_KERNELS


# glibc's mallopt parameters and the values tune_host sets (see there).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's largest: blocks below it come from the heap
TRIM_THRESHOLD_BYTES = 2**30  # keep up to 1 GiB of free heap instead of returning it
_host_tuned = False


def tune_host(device: torch.device) -> bool:
    """On the CPU under glibc: keep freed tensor memory in the heap. Returns whether it did.

    glibc hands blocks above its mmap threshold (128 KiB at first, moving up to the largest
    block freed) straight back to the kernel on free, and trims the heap top, so every
    training step faults its activations' pages in afresh: 10-45 thousand page faults per
    micro supernet step, about 10% of its time. Fixing the thresholds makes steps reuse the
    same memory, as CUDA's caching allocator does; the process keeps its peak size. Once per
    process; a no-op elsewhere (CUDA, macOS, musl).
    """
    global _host_tuned
    if _host_tuned or device.type != "cpu" or not sys.platform.startswith("linux"):
        return _host_tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    _host_tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _host_tuned


@dataclass(frozen=True)
class Placement:
    """How a run's networks run: device, autocast dtype, memory format, op kernels, compile."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = plain fp32
    channels_last: bool
    compile: bool
    kernels: str  # enastool.nn.kernels: "native" or "cpu"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def prepare(self, module: nn.Module) -> nn.Module:
        """``module`` on the device, in the memory format, with the op kernels (in place)."""
        tune_host(self.device)
        module = module.to(self.device, memory_format=self.memory_format)
        return set_kernels(module, self.kernels)

    def describe(self) -> dict:
        """The choices as plain values (a run's start event carries them)."""
        return {
            "device": str(self.device),
            "dtype": str(self.dtype or torch.float32).replace("torch.", ""),
            "channels_last": self.channels_last,
            "compile": self.compile,
            "kernels": self.kernels,
        }


def resolve_placement(config, device: torch.device | None = None, training: bool = True) -> Placement:
    """The placement a config asks for (``device`` overrides ``config.device``, e.g. a rank's GPU).

    ``config`` needs ``device`` (unless given) and may have ``dtype`` and ``channels_last``
    (absent = auto) and ``compile``: a config without it (a search's) runs eager, since a
    supernet's graph changes with every child. ``training`` False: for scoring (see
    ``autocast_dtype``).
    """
    device = resolve_device(config.device) if device is None else device
    dtype = autocast_dtype(config, device, training=training)
    channels_last = use_channels_last(config, device)
    return Placement(
        device=device,
        dtype=dtype,
        channels_last=channels_last,
        compile=use_compile(config, device) if hasattr(config, "compile") else False,
        kernels=op_kernels(device, dtype, channels_last),
    )
