"""Ops with a second implementation that is faster on some devices (chosen in train/device.py).

Each module here computes exactly the function of its torch counterpart, with the same
parameters, state_dict keys and initialisation; only *how* differs, by its ``kernels``
attribute:

- ``"native"`` (the default): torch's own op, as everywhere else.
- ``"cpu"``: a formulation measured faster on the CPU in channels_last (BENCHMARKS.md), where
  oneDNN and ATen leave speed on the table:

  * ``DepthwiseConv2d``: the weight gradient of a depthwise conv with a kernel wider than 3
    falls off oneDNN's depthwise path into its generic grouped convolution, about 10x slower
    per FLOP than a 3-wide kernel (5x5 on 64x20x32x32: 12 ms against 1.1 ms for 3x3). The
    backward here computes it from fast pieces: the middle three columns as one (k x 3)
    depthwise weight gradient, each outer column as a (k x 1) one against the input shifted
    sideways. The input gradient at stride 1 is the forward conv of the gradient with the
    flipped kernel (oneDNN's forward depthwise kernel beats its backward-data one).
  * ``PointwiseConv2d``: a 1x1 stride-1 conv on a channels_last tensor is a matrix product on
    its (N*H*W, C) view; ``F.linear`` on the NHWC permutation skips oneDNN's reorders.
  * ``AvgPool2d``: 3x3 average pooling that counts only real pixels is a depthwise conv with a
    kernel of ones times the reciprocal pixel count of each output position; the conv runs on
    oneDNN's depthwise kernel, about 3x faster than ATen's channels_last pooling both ways.

  Each falls back to the native op where its formulation does not apply (an input that is
  not channels_last, a stride or kernel it does not cover), so ``"cpu"`` is always correct.

Results agree with the native ops up to floating-point summation order. ``set_kernels``
switches every such module of a network; ``native_kernels`` switches them back for a while
(FLOP counting counts the native ops: the ones-kernel of the pooling is not a FLOP of the
network).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

NATIVE = "native"
CPU = "cpu"
KERNELS = (NATIVE, CPU)
ONEDNN_DEPTHWISE_GRAD_WIDTH = 3  # widest depthwise kernel whose weight gradient oneDNN does fast


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


def _conv_grad(grad, x, weight, stride, padding, which: str) -> torch.Tensor:
    """One gradient of a depthwise conv from ATen's convolution backward."""
    mask = [which == "input", which == "weight", False]
    out = torch.ops.aten.convolution_backward(
        grad, x, weight, None, list(stride), list(padding), [1, 1], False, [0, 0], x.shape[1], mask
    )
    return out[0] if which == "input" else out[1]


def _shift_columns(x: torch.Tensor, offset: int) -> torch.Tensor:
    """``x`` moved sideways so that column w holds column w + offset (zeros where none), in
    channels_last (two strided copies: faster than ``F.pad`` with a negative side)."""
    width = x.shape[3]
    out = torch.empty_like(x, memory_format=torch.channels_last)
    keep = max(width - abs(offset), 0)
    if offset >= 0:
        out[..., keep:].zero_()
        out[..., :keep].copy_(x[..., width - keep:])
    else:
        out[..., : width - keep].zero_()
        out[..., width - keep:].copy_(x[..., :keep])
    return out


def depthwise_weight_grad(grad, x, weight_shape, stride, padding) -> torch.Tensor:
    """The weight gradient of a depthwise conv, from oneDNN's fast (k x 3) and (k x 1) pieces."""
    channels, _, kh, kw = weight_shape
    if kw <= ONEDNN_DEPTHWISE_GRAD_WIDTH:
        return _conv_grad(grad, x, x.new_empty(weight_shape), stride, padding, "weight")
    pad_h, pad_w = padding
    middle = kw // 2  # the kernel column over the output pixel's own column (odd kernels)
    probe3 = x.new_empty((channels, 1, kh, ONEDNN_DEPTHWISE_GRAD_WIDTH))
    probe1 = x.new_empty((channels, 1, kh, 1))
    columns: list[torch.Tensor] = []
    j = 0
    while j < kw:
        if j == middle - 1:  # columns middle-1 .. middle+1 in one (k x 3) piece, as if padded by 1
            inner = _conv_grad(grad, x, probe3, stride, (pad_h, pad_w - (middle - 1)), "weight")
            columns.append(inner)
            j += ONEDNN_DEPTHWISE_GRAD_WIDTH
        else:  # column j reads input column w * stride + j - pad_w
            shifted = _shift_columns(x, j - pad_w)
            columns.append(_conv_grad(grad, shifted, probe1, stride, (pad_h, 0), "weight"))
            j += 1
    return torch.cat(columns, dim=3)


class _DepthwiseConv(torch.autograd.Function):
    """Depthwise conv whose backward uses ``depthwise_weight_grad`` (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            kh, kw = weight.shape[2:]
            same_size = tuple(stride) == (1, 1) and (kh - 1 - 2 * padding[0], kw - 1 - 2 * padding[1]) == (0, 0)
            if same_size:
                grad_x = F.conv2d(grad, weight.flip(2, 3), None, 1, padding, 1, x.shape[1])
            else:
                grad_x = _conv_grad(grad, x, weight, stride, padding, "input")
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(grad, x, weight.shape, stride, padding)
        return grad_x, grad_w, None, None


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise kxk conv without bias (``groups == channels``), odd kernel, same padding."""

    def __init__(self, channels: int, kernel: int, stride: int = 1):
        super().__init__(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)
        self.kernels = NATIVE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels == CPU and _is_channels_last(x):
            return _DepthwiseConv.apply(x, self.weight, self.stride, self.padding)
        return super().forward(x)


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 conv without bias."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__(c_in, c_out, 1, stride, bias=False)
        self.kernels = NATIVE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels == CPU and self.stride == (1, 1) and _is_channels_last(x):
            weight = self.weight.view(self.out_channels, self.in_channels)
            return F.linear(x.permute(0, 2, 3, 1), weight).permute(0, 3, 1, 2)
        return super().forward(x)


class AvgPool2d(nn.Module):
    """k x k average pooling with same padding over real pixels only (``count_include_pad=False``)."""

    count_include_pad = False  # as torch's AvgPool2d names it; the only mode this module has

    def __init__(self, kernel: int, stride: int = 1):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel, stride, kernel // 2
        self.kernels = NATIVE
        self._ones: dict = {}  # (channels, dtype, device) -> ones kernel; not state
        self._reciprocals: dict = {}  # (height, width, dtype, device) -> 1 / pixels per window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels == CPU and _is_channels_last(x):
            return self._as_conv(x)
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, count_include_pad=False)

    def _as_conv(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = x.shape[1:]
        k, s, p = self.kernel_size, self.stride, self.padding
        key = (c, x.dtype, x.device)
        if key not in self._ones:
            self._ones[key] = torch.ones(c, 1, k, k, dtype=x.dtype, device=x.device).contiguous(
                memory_format=torch.channels_last)
        where = (h, w, x.dtype, x.device)
        if where not in self._reciprocals:
            window = torch.ones(1, 1, k, k, dtype=x.dtype, device=x.device)
            counts = F.conv2d(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device), window, None, s, p)
            self._reciprocals[where] = counts.reciprocal()
        return F.conv2d(x, self._ones[key], None, s, p, 1, c) * self._reciprocals[where]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


SWITCHABLE = (DepthwiseConv2d, PointwiseConv2d, AvgPool2d)


def set_kernels(module: nn.Module, kernels: str) -> nn.Module:
    """Switch every op of ``module`` that has a choice to ``kernels`` (``native`` or ``cpu``)."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels {kernels!r}: expected one of {', '.join(KERNELS)}")
    for m in module.modules():
        if isinstance(m, SWITCHABLE):
            m.kernels = kernels
    return module


@contextmanager
def native_kernels(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` with the native ops for a while, then restore each op's choice."""
    saved = [(m, m.kernels) for m in module.modules() if isinstance(m, SWITCHABLE)]
    try:
        for m, _ in saved:
            m.kernels = NATIVE
        yield module
    finally:
        for m, kernels in saved:
            m.kernels = kernels
