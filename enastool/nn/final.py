"""Final networks: one fixed architecture, trained from scratch (reference sec. 4 and 5).

Both networks are built as the authors' final children build them (``general_child.py``,
``micro_child.py`` with a fixed architecture), with the faults listed in reference sec. 6
fixed: the macro network has true separable convs and real pooling, and the micro auxiliary
head is an ordinary trainable part of the network. Details that follow the authors' code:

- Macro layer 0 is its branch alone; every later layer concatenates its selected skips with
  the branch output and applies ReLU, 1x1 conv back to C, BN, also when no skip is set.
- Factorised reductions (macro reductions of prev, the micro identity op at stride 2, loose
  input nodes of a micro reduction cell) have no leading ReLU; the micro input calibration
  has one (``blocks.Calibrate``).
- Every micro cell passes its calibrated input 1 through ``layer_base`` (ReLU, 1x1 conv, BN)
  before its blocks read it.
- The micro auxiliary head reads the output of the normal cell that follows the second
  reduction cell (the authors' ``aux_head_indices = [pool_layers[-1] + 1]``); its 2x2 conv is
  padded SAME (zero row and column at the bottom and right), so it keeps the 2x2 map.
- Reductions follow the authors' formula for every layer count (``blocks``).

``forward(x)`` returns the logits tensor, as a user of an ``nn.Module`` expects; only a network
with an auxiliary head, in training mode, returns ``(logits, aux_logits)`` (the trainer reads
either through ``enastool.train.evaluate.network_output``). Evaluation, export and the Python
API therefore see plain logits. ``build_final_network`` picks the class from ``arch.space``
through ``FINAL_NETWORKS``; a new space adds one entry there.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..encoding.macro import MacroArch, MacroLayer
from ..encoding.micro import NUM_INPUTS, Cell, MicroArch
from ..encoding.ops import OpKind
from ..errors import EnasError
from .blocks import (
    REDUCTION_STRIDE,
    Calibrate,
    ConvBN,
    FactorizedReduce,
    MacroBranch,
    bn,
    macro_reduction_positions,
    micro_op,
    micro_reduction_positions,
)

# Final-training defaults (reference sec. 4, "macro final" and "micro final" columns).
MACRO_CHANNELS = 96
MACRO_KEEP_PROB = 0.5
MICRO_LAYERS = 15
MICRO_CHANNELS = 36
MICRO_KEEP_PROB = 0.8
MICRO_DROP_PATH_KEEP = 0.6

STEM_KERNEL = 3
MICRO_STEM_MULTIPLIER = 3  # the micro stem widens to 3C, as in the authors' code
CHANNEL_GROWTH = 2  # channels double at every reduction

# Auxiliary head (reference sec. 5), sized for the 8x8 maps CIFAR-10 has after two reductions.
AUX_POOL_KERNEL = 5
AUX_POOL_STRIDE = 3
AUX_HIDDEN = 128
AUX_FEATURES = 768
AUX_CONV_KERNEL = 2  # the 5x5/3 pool turns 8x8 into 2x2: the authors' kernel is that size


def tf_same_padding(kernel: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding of TensorFlow's SAME at stride 1: ``kernel - 1``
    in all, the odd one after the map (an explicit pad: torch's ``padding="same"`` copies the
    input for even kernels anyway)."""
    before = (kernel - 1) // 2
    after = kernel - 1 - before
    return (before, after, before, after)


def _head(x: torch.Tensor, dropout: nn.Dropout, classifier: nn.Linear) -> torch.Tensor:
    """Global average pool, dropout, linear. ``flatten`` keeps any memory layout working."""
    return classifier(dropout(F.adaptive_avg_pool2d(x, 1).flatten(1)))


# ===================================================================== macro
class MacroFinalLayer(nn.Module):
    """One macro layer: the op on the previous output; after layer 0, concatenated with the
    selected skips, then ReLU, 1x1 conv back to C, BN (layer 0 has no skip to combine, and
    the authors give it no combine at all)."""

    def __init__(self, layer: MacroLayer, c: int):
        super().__init__()
        self.input_source = layer.input_source
        self.skip_sources = layer.skip_sources
        self.branch = MacroBranch(layer.op, c, c)
        self.combine = (
            ConvBN(c * (1 + len(self.skip_sources)), c, kernel=1, relu_first=True)
            if layer.index > 0
            else None
        )

    def forward(self, prev: list[torch.Tensor | None]) -> torch.Tensor:
        out = self.branch(prev[self.input_source])
        if self.combine is None:
            return out
        return self.combine(torch.cat([out, *(prev[m] for m in self.skip_sources)], dim=1))


class MacroNet(nn.Module):
    """The macro final network: stem, N layers, two reductions doubling the width, head.

    At a reduction every entry of prev (stem included) that a later layer still reads is
    factorised-reduced to the new width. Entries no later layer reads are dropped instead of
    reduced: reducing them (as the authors do) adds parameters that never get a gradient.
    """

    def __init__(
        self,
        arch: MacroArch,
        channels: int = MACRO_CHANNELS,
        in_channels: int = 3,
        num_classes: int = 10,
        keep_prob: float = MACRO_KEEP_PROB,
    ):
        super().__init__()
        self.arch = arch
        reduce_after = macro_reduction_positions(arch.num_layers)
        self.stem = ConvBN(in_channels, channels, STEM_KERNEL, relu_first=False)
        # last_reader[m]: the last layer that reads prev[m] (prev[0] is the stem).
        last_reader = {}
        for k, layer in enumerate(arch.layers):
            for m in (layer.input_source, *layer.skip_sources):
                last_reader[m] = k

        self.layers = nn.ModuleList()
        self.reductions = nn.ModuleDict()
        c = channels
        for k, layer in enumerate(arch.layers):
            self.layers.append(MacroFinalLayer(layer, c))
            if k in reduce_after:
                live = [m for m in range(k + 2) if last_reader.get(m, -1) > k]
                self.reductions[str(k)] = nn.ModuleDict(
                    {str(m): FactorizedReduce(c, c * CHANNEL_GROWTH) for m in live}
                )
                c *= CHANNEL_GROWTH
        self.out_channels = c
        self.dropout = nn.Dropout(1.0 - keep_prob)
        self.classifier = nn.Linear(c, num_classes)
        self.aux_head = None  # the macro final network has no auxiliary head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev: list[torch.Tensor | None] = [self.stem(x)]
        for k, layer in enumerate(self.layers):
            prev.append(layer(prev))
            if str(k) in self.reductions:
                reduce = self.reductions[str(k)]
                prev = [reduce[str(m)](t) if str(m) in reduce else None for m, t in enumerate(prev)]
        return _head(prev[-1], self.dropout, self.classifier)


# ===================================================================== micro
def drop_path(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Zero whole samples of a branch output with probability ``1 - keep`` and scale the kept
    ones by ``1/keep``. ``keep`` is a 0-d tensor, so a changing value causes no recompilation
    under ``torch.compile`` and is never read on the host."""
    keep = keep.to(x.dtype)
    mask = torch.rand((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device) < keep
    return x * mask.to(x.dtype) / keep


class MicroFinalCell(nn.Module):
    """A fixed micro cell: calibrate both inputs, pass input 1 through ``base`` (ReLU, 1x1
    conv, BN: the authors' ``layer_base``), run the blocks, concatenate the loose ends.

    In a reduction cell ops reading nodes 0/1 run at stride 2, and loose input nodes are
    factorised-reduced so that every loose end has the output size. The output is the
    concatenation itself, ``len(loose_ends) * c`` channels; the next cell calibrates it.
    """

    def __init__(
        self,
        cell: Cell,
        c_prev_prev: int,
        c_prev: int,
        c: int,
        reduction: bool,
        prev_prev_larger: bool,
        drop_path_keep: float,
    ):
        super().__init__()
        self.reduction = reduction
        self.calibrate = nn.ModuleList(
            [Calibrate(c_prev_prev, c, reduce=prev_prev_larger), Calibrate(c_prev, c, reduce=False)]
        )
        self.base = ConvBN(c, c, kernel=1, relu_first=True)
        self.inputs = [index for block in cell.blocks for index, _ in block.branches]
        self.branches = nn.ModuleList()
        self.drops = []  # per branch: drop path applies (every op but identity)
        for block in cell.blocks:
            for index, op in block.branches:
                stride = REDUCTION_STRIDE if reduction and index < NUM_INPUTS else 1
                self.branches.append(micro_op(op, c, stride))
                self.drops.append(op.kind is not OpKind.IDENTITY)
        # Drop rate this cell reaches at the end of training (0: no drop path at all).
        self.final_drop_rate = 1.0 - drop_path_keep
        self.loose_ends = cell.loose_ends
        self.loose_reduce = nn.ModuleDict(
            {
                str(n): FactorizedReduce(c, c)
                for n in self.loose_ends
                if reduction and n < NUM_INPUTS
            }
        )
        self.out_channels = len(self.loose_ends) * c

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, progress: torch.Tensor) -> torch.Tensor:
        """``progress`` (0-d tensor in [0, 1]) ramps the drop rate up to ``final_drop_rate``."""
        nodes = [self.calibrate[0](s0), self.base(self.calibrate[1](s1))]
        dropping = self.training and self.final_drop_rate > 0
        keep = 1.0 - progress * self.final_drop_rate if dropping else None

        def branch(k: int, x: torch.Tensor) -> torch.Tensor:
            h = self.branches[k](x)
            return drop_path(h, keep) if dropping and self.drops[k] else h

        for k, (i1, i2) in enumerate(zip(self.inputs[0::2], self.inputs[1::2])):
            nodes.append(branch(2 * k, nodes[i1]) + branch(2 * k + 1, nodes[i2]))
        loose = [
            self.loose_reduce[str(n)](nodes[n]) if str(n) in self.loose_reduce else nodes[n]
            for n in self.loose_ends
        ]
        return torch.cat(loose, dim=1)


class AuxHead(nn.Module):
    """ReLU, 5x5 avg pool stride 3, 1x1 conv 128, BN, ReLU, 2x2 conv 768 (SAME), BN, ReLU,
    global pool, linear.

    The authors' head assumes the 8x8 map of 32x32 inputs, which the pool turns into 2x2; its
    2x2 conv is padded SAME as in their code (one zero row and column after the map, as
    TensorFlow pads an even kernel), so it outputs a 2x2 map that the global pool averages.
    Maps smaller than the 5x5 window (the 2x2 maps of 8x8 digits) are adaptively pooled to
    2x2 instead. (The authors size that conv's kernel to the pooled map; it is 2 for CIFAR-10
    and fixed at 2 here.)
    """

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(c_in, AUX_HIDDEN, 1, bias=False),
            bn(AUX_HIDDEN),
            nn.ReLU(),
            nn.ZeroPad2d(tf_same_padding(AUX_CONV_KERNEL)),
            nn.Conv2d(AUX_HIDDEN, AUX_FEATURES, AUX_CONV_KERNEL, bias=False),
            bn(AUX_FEATURES),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(AUX_FEATURES, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if min(x.shape[-2:]) >= AUX_POOL_KERNEL:
            x = F.avg_pool2d(x, AUX_POOL_KERNEL, AUX_POOL_STRIDE)
        else:
            x = F.adaptive_avg_pool2d(x, AUX_CONV_KERNEL)
        x = self.features(x)
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


class MicroNet(nn.Module):
    """The micro final network: stem to 3C, L normal cells with two reduction cells inserted,
    channels doubling at each reduction, auxiliary head on the output of the normal cell that
    follows the second reduction cell (``aux_index``), head (ReLU, pool, dropout, linear).

    Cell i of the L+2 cells drops paths (every op but identity) with final keep probability
    ``1 - (i+1)/(L+2) * (1 - drop_path_keep)``; ``set_drop_path_progress`` ramps it in
    linearly over training (the trainer sets it every step).
    """

    def __init__(
        self,
        arch: MicroArch,
        num_layers: int = MICRO_LAYERS,
        channels: int = MICRO_CHANNELS,
        in_channels: int = 3,
        num_classes: int = 10,
        keep_prob: float = MICRO_KEEP_PROB,
        drop_path_keep: float = MICRO_DROP_PATH_KEEP,
        aux_head: bool = True,
    ):
        super().__init__()
        self.arch = arch
        c_stem = channels * MICRO_STEM_MULTIPLIER
        self.stem = ConvBN(in_channels, c_stem, STEM_KERNEL, relu_first=False)
        reduce_after = micro_reduction_positions(num_layers)
        layout = []  # True for a reduction cell
        for normal_index in range(num_layers):
            layout.append(False)
            layout += [True] * reduce_after.count(normal_index)
        num_cells = len(layout)

        self.cells = nn.ModuleList()
        c, c_prev_prev, c_prev = channels, c_stem, c_stem
        reductions_prev_prev = reductions_prev = 0  # how often each cell input was reduced
        self.aux_index = None
        for i, reduction in enumerate(layout):
            if reduction:
                c *= CHANNEL_GROWTH
            keep = 1.0 - (i + 1) / num_cells * (1.0 - drop_path_keep)
            cell = MicroFinalCell(
                arch.reduce if reduction else arch.normal,
                c_prev_prev,
                c_prev,
                c,
                reduction,
                prev_prev_larger=reductions_prev_prev < reductions_prev,
                drop_path_keep=keep,
            )
            self.cells.append(cell)
            c_prev_prev, c_prev = c_prev, cell.out_channels
            reductions_prev_prev, reductions_prev = reductions_prev, reductions_prev + reduction
            if reduction and reductions_prev == len(reduce_after):
                self.aux_index = i + 1  # the normal cell after the last reduction
        aux_width = self.cells[self.aux_index].out_channels
        self.aux_head = AuxHead(aux_width, num_classes) if aux_head else None
        self.out_channels = c_prev
        # Fraction of training done, for the drop-path ramp; set by the trainer every step.
        # Not saved in checkpoints: the trainer sets it from the step counter.
        self.register_buffer("drop_path_progress", torch.zeros(()), persistent=False)
        self.dropout = nn.Dropout(1.0 - keep_prob)
        self.classifier = nn.Linear(c_prev, num_classes)

    def set_drop_path_progress(self, progress: float) -> None:
        """Training progress in [0, 1]: 0 keeps every path, 1 reaches the final drop rates.

        One in-place write to a device buffer: no recompilation, no host-device sync.
        """
        self.drop_path_progress.fill_(min(max(float(progress), 0.0), 1.0))

    def drop_path_keep_probs(self) -> list[float]:
        """The keep probability of each cell's drop path now (reads the device: for inspection)."""
        progress = float(self.drop_path_progress)
        return [1.0 - progress * cell.final_drop_rate for cell in self.cells]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; ``(logits, aux_logits)`` in training mode when the network has an aux head."""
        with_aux = self.training and self.aux_head is not None
        s0 = s1 = self.stem(x)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_progress)
            if with_aux and i == self.aux_index:
                aux_logits = self.aux_head(s1)
        logits = _head(F.relu(s1), self.dropout, self.classifier)
        return (logits, aux_logits) if with_aux else logits


# ===================================================================== registry
def _build_macro(
    arch, *, layers, channels, in_channels, num_classes, keep_prob, drop_path_keep, aux_head
):
    # The macro final network has neither drop path nor an auxiliary head: those are ignored.
    if layers is not None and layers != arch.num_layers:
        raise EnasError(
            f"--layers {layers} does not match the macro architecture's {arch.num_layers} layers; "
            f"pass --layers {arch.num_layers} or leave it out"
        )
    return MacroNet(
        arch,
        channels=MACRO_CHANNELS if channels is None else channels,
        in_channels=in_channels,
        num_classes=num_classes,
        keep_prob=MACRO_KEEP_PROB if keep_prob is None else keep_prob,
    )


def _build_micro(
    arch, *, layers, channels, in_channels, num_classes, keep_prob, drop_path_keep, aux_head
):
    return MicroNet(
        arch,
        num_layers=MICRO_LAYERS if layers is None else layers,
        channels=MICRO_CHANNELS if channels is None else channels,
        in_channels=in_channels,
        num_classes=num_classes,
        keep_prob=MICRO_KEEP_PROB if keep_prob is None else keep_prob,
        drop_path_keep=MICRO_DROP_PATH_KEEP if drop_path_keep is None else drop_path_keep,
        aux_head=True if aux_head is None else aux_head,
    )


FINAL_NETWORKS: dict[str, Callable[..., nn.Module]] = {
    MacroArch.space: _build_macro,
    MicroArch.space: _build_micro,
}


def build_final_network(
    arch,
    *,
    layers: int | None = None,
    channels: int | None = None,
    in_channels: int = 3,
    num_classes: int = 10,
    keep_prob: float | None = None,
    drop_path_keep: float | None = None,
    aux_head: bool | None = None,
) -> nn.Module:
    """The final network for ``arch``; None takes the space's final-training default."""
    try:
        build = FINAL_NETWORKS[arch.space]
    except (KeyError, AttributeError):
        raise EnasError(
            f"no final network for space {getattr(arch, 'space', arch)!r}; "
            f"expected one of {', '.join(FINAL_NETWORKS)}"
        ) from None
    return build(
        arch,
        layers=layers,
        channels=channels,
        in_channels=in_channels,
        num_classes=num_classes,
        keep_prob=keep_prob,
        drop_path_keep=drop_path_keep,
        aux_head=aux_head,
    )
