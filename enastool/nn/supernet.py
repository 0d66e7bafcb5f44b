"""Shared-weight supernets of the macro and micro spaces (reference sec. 4 and 5).

One supernet holds the weights of every candidate op. ``forward(x, arch)`` runs only the
architecture ``arch`` picks (ENAS and random search with weight sharing); ``forward_oneshot``
runs every candidate path at once with path dropout (one-shot, Bender et al. 2018). Both use
the same weights, so a supernet trained one-shot ranks candidates with ``forward(x, arch)``.

Speed by design. The architecture is a host-side Python object used only to pick modules: each
step indexes a ModuleList by layer, input index and op id (``branches[op.enas_id]``), so the
Python work of one step grows with the number of layers, blocks and skips the architecture
uses, never with the number of candidate ops, and nothing ever loops over all ops in
``forward(x, arch)``. No architecture value goes to the device and no device value is read
back (no ``.item()``, no Python ``if`` on a tensor), so switching architectures between steps
causes no host-device sync, and the graph of each step is just the modules it called, with
nothing to recompile. In one-shot mode the path-dropout masks are drawn on the device and
applied by multiplication; Python work there grows with the number of paths, which is
inherent in running them all.

Batch norm. Every batch norm in a supernet uses the statistics of the current batch, in
training and in eval mode alike (``track_running_stats=False``). Under weight sharing the
running averages would mix statistics of many different architectures (and of the one-shot
sum of all paths), so an architecture scored in eval mode would be normalised with numbers
that are not its own; batch statistics score every candidate fairly. This is also what the
authors' code does when it computes the controller's reward. Consequence: score with
batches of more than one image, and a candidate's logits depend on the rest of its batch.

One-shot path dropout. Each path into a node (macro: the six branches and every possible
skip input of a layer; micro: every (input node, op) pair of a node) is dropped independently
with probability ``drop_rate``; if all of a node's paths are dropped, one chosen uniformly at
random is kept. Kept paths are summed WITHOUT rescaling: a candidate run by
``forward(x, arch)`` sums its paths unscaled too, and the batch norm after every sum (macro
layer, cell output, each op's own) absorbs the magnitude change, whereas dividing by the keep
fraction would make activations depend on the drop rate and move training further from
ranking.
"""

from __future__ import annotations

import torch
from torch import nn

from ..encoding.macro import MacroArch
from ..encoding.micro import NUM_INPUTS, Cell, MicroArch
from ..encoding.ops import MacroOp, MicroOp
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

BATCH_STATS = dict(track_running_stats=False)  # see "Batch norm" in the module docstring
STEM_KERNEL = 3
MICRO_STEM_WIDTH = 3  # the micro stem has 3C channels


# ----------------------------------------------------------------- shared pieces
def _check_keep_prob(keep_prob: float) -> None:
    if not 0.0 < keep_prob <= 1.0:
        raise EnasError(f"keep_prob must be in (0, 1], found {keep_prob}; 1.0 disables dropout")


def _check_drop_rate(drop_rate: float) -> None:
    if not 0.0 <= drop_rate <= 1.0:
        raise EnasError(f"one-shot drop_rate must be in [0, 1], found {drop_rate}")


def drop_path_mask(
    num_paths: int,
    drop_rate: float,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bool mask of the kept paths: each dropped with probability ``drop_rate``, one always kept.

    Drawn on ``device`` (``generator`` must live there too) and never read on the host: when
    every path was dropped, a uniformly chosen one is switched back on by tensor ops.
    """
    _check_drop_rate(drop_rate)
    keep = torch.rand(num_paths, device=device, generator=generator) >= drop_rate
    pick = torch.randint(num_paths, (1,), device=device, generator=generator)
    fallback = torch.arange(num_paths, device=device) == pick
    return keep | (fallback & ~keep.any())


def _masked_sum(paths: list[torch.Tensor], drop_rate: float, generator) -> torch.Tensor:
    """Sum of the paths the dropout mask keeps (unscaled: see the module docstring)."""
    mask = drop_path_mask(len(paths), drop_rate, paths[0].device, generator).to(paths[0].dtype)
    total = None
    for path, keep in zip(paths, mask.unbind(0)):
        total = path * keep if total is None else total + path * keep
    return total


class ClassifierHead(nn.Module):
    """Global average pool, dropout with probability 1 - keep_prob, linear."""

    def __init__(self, c: int, num_classes: int, keep_prob: float):
        super().__init__()
        _check_keep_prob(keep_prob)
        self.dropout = nn.Dropout(1.0 - keep_prob)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(x.mean(dim=(2, 3))))


# ----------------------------------------------------------------- macro
class MacroSuperLayer(nn.Module):
    """All six branches of one macro layer (indexed by MacroOp id) and the BN after the sum."""

    def __init__(self, c: int):
        super().__init__()
        self.branches = nn.ModuleList(MacroBranch(op, c, c, **BATCH_STATS) for op in MacroOp)
        self.bn = bn(c, **BATCH_STATS)


class MacroSupernet(nn.Module):
    """The macro search network: constant width, every layer holds all six ops.

    Layer k reads prev[-1] (prev = [stem, layer 0, ...]), runs the sampled branch, adds the
    skip inputs prev[m] and applies BN. After the layers in ``reduction_after`` every entry of
    prev, stem included, is factorised-reduced by its own FactorizedReduce.
    """

    def __init__(
        self,
        num_layers: int = 12,
        channels: int = 36,
        in_channels: int = 3,
        num_classes: int = 10,
        keep_prob: float = 0.9,
    ):
        super().__init__()
        self.num_layers = num_layers
        self.reduction_after = macro_reduction_positions(num_layers)
        self._reduction_index = {k: r for r, k in enumerate(self.reduction_after)}
        c = channels
        self.stem = ConvBN(in_channels, c, STEM_KERNEL, relu_first=False, **BATCH_STATS)
        self.layers = nn.ModuleList(MacroSuperLayer(c) for _ in range(num_layers))
        # After layer k, prev holds the stem and layers 0..k: k + 2 entries to reduce.
        self.reductions = nn.ModuleList(
            nn.ModuleList(FactorizedReduce(c, c, **BATCH_STATS) for _ in range(k + 2))
            for k in self.reduction_after
        )
        self.head = ClassifierHead(c, num_classes, keep_prob)

    def branch(self, layer: int, op: MacroOp) -> nn.Module:
        return self.layers[layer].branches[op.enas_id]

    def forward(self, x: torch.Tensor, arch: MacroArch) -> torch.Tensor:
        self._check(arch)
        prev: list[torch.Tensor | None] = [self.stem(x)]
        for k, layer in enumerate(arch.layers):
            out = self.branch(k, layer.op)(prev[layer.input_source])
            for m in layer.skip_sources:
                out = out + prev[m]
            prev.append(self.layers[k].bn(out))
            if k in self._reduction_index:
                prev = self._reduce(k, prev, _used_after(arch, k))
        return self.head(prev[-1])

    def forward_oneshot(
        self, x: torch.Tensor, drop_rate: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Every layer sums all six branches and every possible skip input, with path dropout."""
        _check_drop_rate(drop_rate)
        prev: list[torch.Tensor] = [self.stem(x)]
        for k, layer in enumerate(self.layers):
            paths = [branch(prev[-1]) for branch in layer.branches] + prev[:-1]
            prev.append(layer.bn(_masked_sum(paths, drop_rate, generator)))
            if k in self._reduction_index:
                prev = self._reduce(k, prev, range(len(prev)))
        return self.head(prev[-1])

    def _reduce(self, k: int, prev: list, used) -> list:
        """Reduce the entries of prev that later layers read; the others are never used."""
        reducers = self.reductions[self._reduction_index[k]]
        used = set(used)
        return [reducers[m](t) if m in used else None for m, t in enumerate(prev)]

    def _check(self, arch) -> None:
        if not isinstance(arch, MacroArch):
            raise EnasError(
                f"macro supernet: expected a macro architecture, found {type(arch).__name__}"
            )
        if arch.num_layers != self.num_layers:
            raise EnasError(
                f"macro supernet has {self.num_layers} layers but the architecture has "
                f"{arch.num_layers}; use a {self.num_layers}-layer architecture"
            )


def _used_after(arch: MacroArch, k: int) -> set[int]:
    """Indices into prev that layers after k read: the next main input and later skips."""
    used = {k + 1}
    for layer in arch.layers[k + 1 :]:
        used.update(layer.skip_sources)
    return used


# ----------------------------------------------------------------- micro
class MicroSuperCell(nn.Module):
    """One cell position of the micro supernet with every candidate op of every node.

    ``ops[j][i][op_id]`` is the op of node j+2 reading node i; ops reading nodes 0/1 of a
    reduction cell have stride 2. The cell output is ReLU, 1x1 conv, BN over the concatenated
    loose ends, computed as a sum of one 1x1 conv per node (the same map as slicing one big
    weight by the loose ends, without index tensors).
    """

    def __init__(self, c_pp: int, c_p: int, c: int, num_blocks: int, reduce: bool, after_reduction: bool):
        super().__init__()
        self.reduce = reduce
        # Input 0 comes from before the previous cell: twice our size if that cell reduced.
        self.calibrate = nn.ModuleList(
            [Calibrate(c_pp, c, after_reduction, **BATCH_STATS), Calibrate(c_p, c, False, **BATCH_STATS)]
        )

        def stride(i: int) -> int:
            return REDUCTION_STRIDE if reduce and i < NUM_INPUTS else 1

        self.ops = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleList(micro_op(op, c, stride(i), **BATCH_STATS) for op in MicroOp)
                for i in range(j + NUM_INPUTS)
            )
            for j in range(num_blocks)
        )
        # In a reduction cell a loose input node is still at the input size.
        self.shrink = (
            nn.ModuleList(FactorizedReduce(c, c, **BATCH_STATS) for _ in range(NUM_INPUTS))
            if reduce
            else None
        )
        self.relu = nn.ReLU()
        self.out_convs = nn.ModuleList(
            nn.Conv2d(c, c, 1, bias=False) for _ in range(num_blocks + NUM_INPUTS)
        )
        self.out_bn = bn(c, **BATCH_STATS)

    def op(self, node: int, input_index: int, op: MicroOp) -> nn.Module:
        return self.ops[node - NUM_INPUTS][input_index][op.enas_id]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, cell: Cell) -> torch.Tensor:
        nodes = [self.calibrate[0](s0), self.calibrate[1](s1)]
        for j, block in enumerate(cell.blocks):
            node = j + NUM_INPUTS
            nodes.append(
                self.op(node, block.index1, block.op1)(nodes[block.index1])
                + self.op(node, block.index2, block.op2)(nodes[block.index2])
            )
        return self._combine(nodes, cell.loose_ends)

    def forward_oneshot(self, s0, s1, drop_rate: float, generator) -> torch.Tensor:
        """Each node sums op(node_i) over every earlier node i and every op, with path dropout.

        The output combines ALL nodes, so every per-node output conv is trained and any set of
        loose ends a candidate may have is ready for ranking.
        """
        nodes = [self.calibrate[0](s0), self.calibrate[1](s1)]
        for per_input in self.ops:
            paths = [op(nodes[i]) for i, ops in enumerate(per_input) for op in ops]
            nodes.append(_masked_sum(paths, drop_rate, generator))
        return self._combine(nodes, range(len(nodes)))

    def _combine(self, nodes: list[torch.Tensor], which) -> torch.Tensor:
        total = None
        for n in which:
            h = nodes[n]
            if self.shrink is not None and n < NUM_INPUTS:
                h = self.shrink[n](h)
            h = self.out_convs[n](self.relu(h))
            total = h if total is None else total + h
        return self.out_bn(total)


class MicroSupernet(nn.Module):
    """The micro search network: L normal cells and two reduction cells, width doubling at each.

    The 3x3 stem (3C channels) feeds both inputs of the first cell; reduction cells follow the
    normal cells in ``reduction_after`` (see ``micro_reduction_positions``).
    """

    def __init__(
        self,
        num_layers: int = 6,
        channels: int = 20,
        num_blocks: int = 5,
        in_channels: int = 3,
        num_classes: int = 10,
        keep_prob: float = 0.9,
    ):
        super().__init__()
        if num_blocks < 1:
            raise EnasError(f"micro supernet: num_blocks must be >= 1, found {num_blocks}")
        self.num_layers = num_layers
        self.num_blocks = num_blocks
        self.reduction_after = micro_reduction_positions(num_layers)
        c = channels
        c_stem = MICRO_STEM_WIDTH * c
        self.stem = ConvBN(in_channels, c_stem, STEM_KERNEL, relu_first=False, **BATCH_STATS)
        cells, c_pp, c_p, after_reduction = [], c_stem, c_stem, False
        for reduce in self._layout():
            if reduce:
                c *= 2
            cells.append(MicroSuperCell(c_pp, c_p, c, num_blocks, reduce, after_reduction))
            c_pp, c_p, after_reduction = c_p, c, reduce
        self.cells = nn.ModuleList(cells)
        self.head = ClassifierHead(c, num_classes, keep_prob)

    def _layout(self) -> list[bool]:
        """Per cell position: True for a reduction cell."""
        layout = []
        for i in range(self.num_layers):
            layout.append(False)
            if i in self.reduction_after:
                layout.append(True)
        return layout

    def forward(self, x: torch.Tensor, arch: MicroArch) -> torch.Tensor:
        self._check(arch)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, arch.reduce if cell.reduce else arch.normal)
        return self.head(s1)

    def forward_oneshot(
        self, x: torch.Tensor, drop_rate: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        _check_drop_rate(drop_rate)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell.forward_oneshot(s0, s1, drop_rate, generator)
        return self.head(s1)

    def _check(self, arch) -> None:
        if not isinstance(arch, MicroArch):
            raise EnasError(
                f"micro supernet: expected a micro architecture, found {type(arch).__name__}"
            )
        if arch.num_blocks != self.num_blocks:
            raise EnasError(
                f"micro supernet has {self.num_blocks} blocks per cell but the architecture has "
                f"{arch.num_blocks}; use a {self.num_blocks}-block architecture"
            )
