"""Building blocks shared by the supernets and the final networks (reference sec. 5).

Every block is layout-agnostic: it reshapes nothing with ``.view`` and slices only along
named dimensions, so channels_last input works as well as NCHW.

Each block that contains batch norm takes a keyword-only ``track_running_stats`` (default
True, the final networks' choice); the supernets pass False, which makes every batch norm a
``GhostBatchNorm2d``: it always uses the statistics of the current batch, or of each ghost
batch when the supernet sets a ghost batch size (see ``enastool.nn.supernet``).

ReLU placement follows the authors' code (``micro_child.py``, ``general_child.py``):
``FactorizedReduce`` has no ReLU of its own. The authors put one in front of it only when it
calibrates a micro cell input (``Calibrate``); the macro reductions of every previous layer,
the micro identity op at stride 2 and the loose input nodes of a micro reduction cell reduce
the raw tensor.

Depthwise and 1x1 convolutions and the average pooling are the modules of
``enastool.nn.kernels``: torch's own ops, or a faster formulation of the same map where the
device policy (``enastool.train.device``) picks one.

Reductions follow the authors' formula for every layer count: with ``d = N // 3`` they come
after the 0-based layers (or normal cells) ``d - 1`` and ``2d - 1``
(``reduction_positions``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..encoding.ops import MacroOp, MicroOp, OpKind
from ..errors import EnasError
from .kernels import AvgPool2d, DepthwiseConv2d, PointwiseConv2d

POOL_KERNEL = 3  # every pooling op of both spaces is 3x3
POOL_PADDING = POOL_KERNEL // 2
REDUCTION_STRIDE = 2


class GhostBatchNorm2d(nn.BatchNorm2d):
    """Batch norm that always normalises with batch statistics, per ghost batch when asked.

    ``ghost_batch_size`` 0 (the default) uses the statistics of the whole batch; a positive
    value splits the batch along dim 0 into ghost batches of that many images (the last one
    may be smaller) and normalises each with its own statistics (Hoffer et al. 2017, used for
    one-shot training by Bender et al. 2018). The same rule holds in training and eval mode,
    so a candidate is scored with the statistics it was trained with. No running averages
    exist. Splitting and concatenating along the batch dimension keeps any memory layout.
    """

    def __init__(self, c: int, affine: bool = True):
        super().__init__(c, affine=affine, track_running_stats=False)
        self.ghost_batch_size = 0  # set by the owning supernet; not part of the state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ghost = self.ghost_batch_size
        if ghost <= 0 or x.shape[0] <= ghost:
            return super().forward(x)
        norm = super().forward
        return torch.cat([norm(part) for part in x.split(ghost)])


def bn(c: int, affine: bool = True, track_running_stats: bool = True) -> nn.BatchNorm2d:
    """A batch norm; without running statistics it is a ``GhostBatchNorm2d``."""
    if not track_running_stats:
        return GhostBatchNorm2d(c, affine=affine)
    return nn.BatchNorm2d(c, affine=affine)


def _pool(kind: OpKind, stride: int) -> nn.Module:
    if kind is OpKind.AVG_POOL:
        # Border pixels average only real pixels, not zero padding (count_include_pad=False).
        return AvgPool2d(POOL_KERNEL, stride)
    if kind is OpKind.MAX_POOL:
        return nn.MaxPool2d(POOL_KERNEL, stride, POOL_PADDING)
    raise ValueError(f"not a pooling kind: {kind}")


class ConvBN(nn.Sequential):
    """[ReLU] conv (same padding, no bias) BN."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 1,
        stride: int = 1,
        relu_first: bool = True,
        *,
        track_running_stats: bool = True,
    ):
        layers: list[nn.Module] = [nn.ReLU()] if relu_first else []
        conv = (PointwiseConv2d(c_in, c_out, stride) if kernel == 1
                else nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False))
        layers += [conv, bn(c_out, track_running_stats=track_running_stats)]
        super().__init__(*layers)


class FactorizedReduce(nn.Module):
    """Halve the spatial size without discarding three pixels in four.

    Two 1x1 stride-2 convs, one on x and one on x shifted by one pixel (zero pad
    right/bottom), concatenated on channels, then BN. Both halves have ceil(H/2) x ceil(W/2)
    pixels, so odd sizes work. No leading ReLU, as in the authors' ``_factorized_reduction``:
    where they want one (micro input calibration) the caller adds it.

    The shifted half reads the odd pixels ``x[1::2, 1::2]`` (a zero row / column added when
    the size is odd) with a stride-1 1x1 conv: the same map as a stride-2 conv on the padded,
    shifted copy, without building that copy.
    """

    def __init__(self, c_in: int, c_out: int, *, track_running_stats: bool = True):
        super().__init__()
        half = c_out // 2
        self.conv_a = nn.Conv2d(c_in, half, 1, REDUCTION_STRIDE, bias=False)
        self.conv_b = PointwiseConv2d(c_in, c_out - half)  # on the odd pixels (see above)
        self.bn = bn(c_out, track_running_stats=track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        odd = x[:, :, 1::REDUCTION_STRIDE, 1::REDUCTION_STRIDE]
        if height % REDUCTION_STRIDE or width % REDUCTION_STRIDE:
            odd = F.pad(odd, (0, width % REDUCTION_STRIDE, 0, height % REDUCTION_STRIDE))
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(odd)], dim=1))


class SepConv(nn.Sequential):
    """(ReLU, depthwise kxk, pointwise 1x1, BN) x repeats.

    The stride applies to the first depthwise conv and the channel change to the first
    pointwise conv, so later repeats run at the output size and width.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        repeats: int = 2,
        *,
        track_running_stats: bool = True,
    ):
        layers: list[nn.Module] = []
        c = c_in
        for r in range(repeats):
            layers += [
                nn.ReLU(),
                DepthwiseConv2d(c, kernel, stride if r == 0 else 1),
                PointwiseConv2d(c, c_out),
                bn(c_out, track_running_stats=track_running_stats),
            ]
            c = c_out
        super().__init__(*layers)


class MacroBranch(nn.Sequential):
    """One macro-space op at stride 1: a 1x1 conv-BN-ReLU, then the op.

    Conv ops: kxk conv (a true depthwise + pointwise pair for separable ops), BN, ReLU.
    Pool ops: 3x3 pool, stride 1, padding 1.
    """

    def __init__(self, op: MacroOp, c_in: int, c_out: int, *, track_running_stats: bool = True):
        stats = track_running_stats
        layers: list[nn.Module] = [
            PointwiseConv2d(c_in, c_out),
            bn(c_out, track_running_stats=stats),
            nn.ReLU(),
        ]
        k, pad = op.kernel, op.kernel // 2
        if op.kind is OpKind.CONV:
            layers += [nn.Conv2d(c_out, c_out, k, padding=pad, bias=False)]
        elif op.kind is OpKind.SEP_CONV:
            layers += [DepthwiseConv2d(c_out, k), PointwiseConv2d(c_out, c_out)]
        else:
            layers += [_pool(op.kind, stride=1)]
        if not op.kind.is_pool:
            layers += [bn(c_out, track_running_stats=stats), nn.ReLU()]
        super().__init__(*layers)
        self.op = op


def micro_op(op: MicroOp, c: int, stride: int, *, track_running_stats: bool = True) -> nn.Module:
    """One micro-space op on ``c`` channels (width never changes inside a cell)."""
    if op.kind is OpKind.SEP_CONV:
        return SepConv(c, c, op.kernel, stride, repeats=2, track_running_stats=track_running_stats)
    if op.kind.is_pool:
        return _pool(op.kind, stride)
    if op.kind is OpKind.IDENTITY:
        if stride == 1:
            return nn.Identity()
        return FactorizedReduce(c, c, track_running_stats=track_running_stats)
    raise ValueError(f"no micro module for {op!r}")


class Calibrate(nn.Module):
    """Bring a cell input to the cell's width and size.

    ReLU then FactorizedReduce when the spatial size halves (``reduce``), else ReLU-1x1
    conv-BN when the channel count differs, else nothing: the authors' ``_maybe_calibrate_size``,
    the one place where their factorised reduction has a ReLU in front.
    """

    def __init__(self, c_in: int, c_out: int, reduce: bool, *, track_running_stats: bool = True):
        super().__init__()
        if reduce:
            self.op: nn.Module = nn.Sequential(
                nn.ReLU(), FactorizedReduce(c_in, c_out, track_running_stats=track_running_stats)
            )
        elif c_in != c_out:
            self.op = ConvBN(c_in, c_out, 1, track_running_stats=track_running_stats)
        else:
            self.op = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


# ----------------------------------------------------------------- where reductions happen
MIN_LAYERS = 3  # two reductions, each after at least one layer
STAGES = 3  # the reductions cut the network into three stages


def reduction_positions(num_layers: int, what: str) -> tuple[int, int]:
    """0-based layers after which the authors reduce: ``d - 1`` and ``2d - 1``, ``d = N // 3``.

    This is the ``pool_layers`` of both of the authors' children (``general_child.py`` counts
    layers, ``micro_child.py`` counts cells with the reductions included, which gives the same
    normal-cell positions). When N is not a multiple of 3 the last stage takes the extra layers.
    """
    if num_layers < MIN_LAYERS:
        raise EnasError(
            f"{what}: found {num_layers} layers, need at least {MIN_LAYERS} "
            "(reductions follow layers N//3 and 2*(N//3)); use 3 or more layers"
        )
    distance = num_layers // STAGES
    return (distance - 1, 2 * distance - 1)


def macro_reduction_positions(num_layers: int) -> tuple[int, ...]:
    """0-based layers after which every prev entry is factorised-reduced.

    12 layers give (3, 7), 24 give (7, 15), 14 give (3, 7), as in the authors' code.
    """
    return reduction_positions(num_layers, "macro network")


def micro_reduction_positions(num_layers: int) -> tuple[int, int]:
    """0-based normal cells after which a reduction cell is inserted.

    6 layers give N N R N N R N N and the positions (1, 3); 15 give (4, 9); 8 give
    N N R N N R N N N N, as the authors' ``pool_layers = [d, 2d + 1]`` among L + 2 cells.
    """
    return reduction_positions(num_layers, "micro network")
