"""The one place that decides device, autocast dtype, memory format and compilation.

Every setting accepts "auto" and resolves the same way for search and final training:
CUDA gets bf16 autocast, channels_last and torch.compile; the CPU (tests, laptops) gets plain
fp32, NCHW and eager mode, so the same code path runs everywhere.

float16 is for CUDA only: on a CPU, float16 autocast runs through slow emulation (a smoke
training ran some 30x slower) and without loss scaling its small range costs accuracy, so
training refuses it there. Scoring a float16 run on a CPU (derive, evaluate) computes in
float32 instead: the same weights, a wider format.
"""

from __future__ import annotations

import torch

from ..errors import EnasError

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
    """channels_last memory format: ``auto`` turns it on for CUDA (tensor cores prefer NHWC)."""
    return _switch(getattr(config, "channels_last", AUTO), "--channels-last", device.type == "cuda")


def use_compile(config, device: torch.device) -> bool:
    """torch.compile: ``auto`` turns it on for CUDA only (on CPU compile time outweighs the gain)."""
    return _switch(getattr(config, "compile", AUTO), "--compile", device.type == "cuda")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context that is a no-op when ``dtype`` is None."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)
