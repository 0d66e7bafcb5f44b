"""Shared-weight supernets of the macro and micro spaces (reference sec. 4 and 5).

One supernet holds the weights of every candidate op. ``forward(x, arch)`` runs only the
architecture ``arch`` picks (ENAS and random search with weight sharing); ``forward_oneshot(x,
kept)`` runs the paths a one-shot step kept (Bender et al. 2018; see "One-shot" below). Both
use the same weights, so a supernet trained one-shot ranks candidates with ``forward(x, arch)``.

Built as the authors' search children (``general_child.py``, ``micro_child.py``):

- Macro: layer 0 is its branch alone; every later layer sums its branch and its skip inputs
  and applies BN (also with no skip set). The head pools the last layer's output directly.
- Micro: the two slots of a block (x and y in the authors' code) have their own weights, so
  a block ``(i, op, i, op)`` runs two modules, as in the final network; the ops of a slot are
  indexed by the input node they read (``ops[node][slot][input][op]``). The head applies a
  ReLU before the global pooling. Reduction cells follow the final network's layout (stride-2
  ops on nodes 0 and 1) rather than the authors' search child, which reduces the previous
  cell's output first (a known inconsistency of their code, reference sec. 6).

Speed by design. The architecture is a host-side Python object used only to pick modules: each
step indexes a ModuleList by layer, input index and op id (``branches[op.enas_id]``), so the
Python work of one step grows with the number of layers, blocks and skips the architecture
uses, never with the number of candidate ops, and nothing ever loops over all ops in
``forward(x, arch)``. No architecture value goes to the device and no device value is read
back (no ``.item()``, no Python ``if`` on a tensor), so switching architectures between steps
causes no host-device sync, and the graph of each step is just the modules it called, with
nothing to recompile. The one-shot masks are host data too, so a dropped path costs nothing.

Batch norm. Every batch norm in a supernet uses the statistics of the current batch, in
training and in eval mode alike (``track_running_stats=False``). Under weight sharing the
running averages would mix statistics of many different architectures (and of the one-shot
sum of all paths), so an architecture scored in eval mode would be normalised with numbers
that are not its own; batch statistics score every candidate fairly. This is also what the
authors' code does when it computes the controller's reward. Consequence: score with
batches of more than one image, and a candidate's logits depend on the rest of its batch.
With ``ghost_batch_size`` > 0 every batch norm takes its statistics per ghost batch of that
many images instead (``GhostBatchNorm2d``), in training and scoring alike.

One-shot (Bender et al. 2018, sec. 3; reference sec. 10). What the paper does, as far as it
could be checked here: one network runs every candidate path of every choice and sums them;
during training each incoming path of a node is dropped at random, with a per-path rate of
``r ** (1 / k)`` for a node with ``k`` incoming paths, so that all ``k`` are dropped with
probability ``r`` whatever the fan-in; ``r`` rises linearly from 0 during training; ghost
batch normalisation and L2 on the active paths only keep the training stable. What enastool
does:

- The unit of path dropout is a *choice*, the place where a candidate picks what to run.
  Macro: a layer, whose paths are its six branches and every possible skip input (``6 + k``
  for layer k). Micro: one slot (x or y) of a node, whose paths are every (input node, op)
  pair (``n x 5`` for node n), so a node always sums at least two paths, as every candidate
  does. ``oneshot_fan_ins()`` lists the fan-in of every choice in network order.
- ``draw_kept_paths`` draws the mask on the host from a CPU generator (the strategy's): path
  ``p`` of a choice with fan-in ``k`` is dropped with probability ``r ** (1 / k)``; when every
  path of a choice is dropped, one chosen uniformly is kept. One mask serves the whole batch.
- Dropped paths are not run at all. Their parameters get no gradient (``grad`` stays None),
  so SGD gives them no weight decay and no momentum step: L2 and momentum touch only the
  paths that were active, and the step is cheaper. Shared parts (stem, calibration, output
  convs, batch norms, the macro reductions of what later layers read) run in every step.
- Kept paths are summed WITHOUT rescaling: a candidate run by ``forward(x, arch)`` sums its
  paths unscaled too, and the batch norms absorb the magnitude change.
- The micro cell output combines ALL nodes in one-shot mode, so every per-node output conv is
  trained and any set of loose ends a candidate may have is ready for ranking.

Not verified against the paper here (its text was not available to this implementation):
whether the masks are drawn per example or per batch (enastool: per batch, which is what lets
dropped paths skip their computation), how the paper's choices map onto the ENAS spaces
(enastool: a macro layer, a micro slot), the ghost batch size, and the final rate ``r``; the
settings ``oneshot_drop_max`` and ``ghost_batch_size`` choose the last two.
"""

from __future__ import annotations

from typing import Callable, Sequence

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
    GhostBatchNorm2d,
    MacroBranch,
    bn,
    macro_reduction_positions,
    micro_op,
    micro_reduction_positions,
)
from .kernels import PointwiseConv2d

BATCH_STATS = dict(track_running_stats=False)  # see "Batch norm" in the module docstring
STEM_KERNEL = 3
MICRO_STEM_WIDTH = 3  # the micro stem has 3C channels
MICRO_SLOTS = 2  # the x and y branches of a block
NUM_MACRO_OPS = len(MacroOp)
NUM_MICRO_OPS = len(MicroOp)

Kept = Sequence[Sequence[int]]  # per choice, in network order: the indices of its kept paths


# ----------------------------------------------------------------- shared pieces
def _check_keep_prob(keep_prob: float) -> None:
    if not 0.0 < keep_prob <= 1.0:
        raise EnasError(f"keep_prob must be in (0, 1], found {keep_prob}; 1.0 disables dropout")


def _check_drop_rate(drop_rate: float) -> None:
    if not 0.0 <= drop_rate <= 1.0:
        raise EnasError(f"one-shot drop_rate must be in [0, 1], found {drop_rate}")


def _check_ghost_batch_size(size: int) -> None:
    if size < 0:
        raise EnasError(f"ghost_batch_size must be 0 (off) or positive, found {size}")


def path_drop_rate(drop_rate: float, fan_in: int) -> float:
    """Bender et al.'s per-path drop probability ``r ** (1 / k)`` for a choice of fan-in ``k``:
    all ``k`` paths are then dropped together with probability ``r``."""
    _check_drop_rate(drop_rate)
    return drop_rate ** (1.0 / fan_in) if drop_rate > 0 else 0.0


def draw_kept_paths(
    fan_ins: Sequence[int], drop_rate: float, generator: torch.Generator
) -> list[tuple[int, ...]]:
    """The paths each choice keeps in one one-shot step, drawn on the host from ``generator``.

    Path p of a choice with fan-in k is dropped with probability ``path_drop_rate(drop_rate,
    k)``; a choice that dropped every path keeps one chosen uniformly. ``generator`` must be a
    CPU generator: the result picks modules, so it has to be host data anyway.
    """
    rates = [path_drop_rate(drop_rate, k) for k in fan_ins]
    draws = torch.rand(sum(fan_ins), generator=generator).tolist()
    kept, start = [], 0
    for k, rate in zip(fan_ins, rates):
        choice = tuple(p for p, u in enumerate(draws[start : start + k]) if u >= rate)
        if not choice:
            choice = (int(torch.randint(k, (1,), generator=generator)),)
        kept.append(choice)
        start += k
    return kept


def _check_kept(kept: Kept, fan_ins: Sequence[int]) -> None:
    if len(kept) != len(fan_ins) or any(not paths for paths in kept):
        raise ValueError(f"kept paths for {len(kept)} choices, the supernet has {len(fan_ins)}; "
                         "draw them with draw_kept_paths(supernet.oneshot_fan_ins(), ...)")


def _set_ghost_batch_size(module: nn.Module, size: int) -> None:
    _check_ghost_batch_size(size)
    for m in module.modules():
        if isinstance(m, GhostBatchNorm2d):
            m.ghost_batch_size = size


def _sum(tensors: list[torch.Tensor]) -> torch.Tensor:
    total = tensors[0]
    for t in tensors[1:]:
        total = total + t
    return total


class ClassifierHead(nn.Module):
    """[ReLU], global average pool, dropout with probability 1 - keep_prob, linear."""

    def __init__(self, c: int, num_classes: int, keep_prob: float, relu_first: bool = False):
        super().__init__()
        _check_keep_prob(keep_prob)
        self.relu = nn.ReLU() if relu_first else nn.Identity()
        self.dropout = nn.Dropout(1.0 - keep_prob)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(self.relu(x).mean(dim=(2, 3))))


# ----------------------------------------------------------------- macro
class MacroSuperLayer(nn.Module):
    """All six branches of one macro layer (indexed by MacroOp id) and, after layer 0, the BN
    after the sum of branch and skips (the authors' layer 0 is its branch alone)."""

    def __init__(self, c: int, index: int):
        super().__init__()
        self.branches = nn.ModuleList(MacroBranch(op, c, c, **BATCH_STATS) for op in MacroOp)
        self.bn = bn(c, **BATCH_STATS) if index > 0 else None


class MacroSupernet(nn.Module):
    """The macro search network: constant width, every layer holds all six ops.

    Layer k reads prev[-1] (prev = [stem, layer 0, ...]), runs the sampled branch, adds the
    skip inputs prev[m] and (k > 0) applies BN. After the layers in ``reduction_after`` every
    entry of prev that a later layer reads, stem included, is factorised-reduced by its own
    FactorizedReduce.
    """

    def __init__(
        self,
        num_layers: int = 12,
        channels: int = 36,
        in_channels: int = 3,
        num_classes: int = 10,
        keep_prob: float = 0.9,
        *,
        ghost_batch_size: int = 0,
    ):
        super().__init__()
        self.num_layers = num_layers
        self.reduction_after = macro_reduction_positions(num_layers)
        self._reduction_index = {k: r for r, k in enumerate(self.reduction_after)}
        c = channels
        self.stem = ConvBN(in_channels, c, STEM_KERNEL, relu_first=False, **BATCH_STATS)
        self.layers = nn.ModuleList(MacroSuperLayer(c, k) for k in range(num_layers))
        # After layer k, prev holds the stem and layers 0..k: k + 2 entries to reduce.
        self.reductions = nn.ModuleList(
            nn.ModuleList(FactorizedReduce(c, c, **BATCH_STATS) for _ in range(k + 2))
            for k in self.reduction_after
        )
        self.head = ClassifierHead(c, num_classes, keep_prob)
        self.set_ghost_batch_size(ghost_batch_size)

    def set_ghost_batch_size(self, size: int) -> None:
        """Batch-norm statistics per ghost batch of ``size`` images (0: the whole batch)."""
        _set_ghost_batch_size(self, size)

    def branch(self, layer: int, op: MacroOp) -> nn.Module:
        return self.layers[layer].branches[op.enas_id]

    def oneshot_fan_ins(self) -> tuple[int, ...]:
        """Paths into each layer (one choice each): its six branches, then a skip from each
        earlier prev entry."""
        return tuple(NUM_MACRO_OPS + k for k in range(self.num_layers))

    def forward(self, x: torch.Tensor, arch: MacroArch) -> torch.Tensor:
        self._check(arch)
        return self._run(x, [((layer.op.enas_id,), layer.skip_sources) for layer in arch.layers])

    def forward_oneshot(self, x: torch.Tensor, kept: Kept) -> torch.Tensor:
        """The kept branches and skip inputs of every layer (path p < 6: branch p; else the
        skip from prev[p - 6])."""
        _check_kept(kept, self.oneshot_fan_ins())
        plans = [
            (tuple(p for p in paths if p < NUM_MACRO_OPS),
             tuple(p - NUM_MACRO_OPS for p in paths if p >= NUM_MACRO_OPS))
            for paths in kept
        ]
        return self._run(x, plans)

    def _run(self, x: torch.Tensor, plans: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> torch.Tensor:
        """``plans[k]`` = (branch ids run on prev[-1], skip sources) of layer k."""
        prev: list[torch.Tensor | None] = [self.stem(x)]
        for k, (branch_ids, skips) in enumerate(plans):
            layer = self.layers[k]
            out = _sum([layer.branches[b](prev[-1]) for b in branch_ids] + [prev[m] for m in skips])
            prev.append(out if layer.bn is None else layer.bn(out))
            if k in self._reduction_index:
                prev = self._reduce(k, prev, _read_after(plans, k))
        return self.head(prev[-1])

    def _reduce(self, k: int, prev: list, used: set[int]) -> list:
        """Reduce the entries of prev that later layers read; the others are never used."""
        reducers = self.reductions[self._reduction_index[k]]
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


def _read_after(plans, k: int) -> set[int]:
    """Indices into prev that the layers after k read: a layer j reads prev[j] (its main
    input) when it runs a branch, and its skip sources."""
    used: set[int] = set()
    for j, (branch_ids, skips) in enumerate(plans[k + 1 :], start=k + 1):
        if branch_ids:
            used.add(j)
        used.update(skips)
    return used


# ----------------------------------------------------------------- micro
class MicroSuperCell(nn.Module):
    """One cell position of the micro supernet with every candidate op of every node.

    ``ops[j][slot][i][op_id]`` is the op of node j+2's slot (0: x, 1: y) reading node i; ops
    reading nodes 0/1 of a reduction cell have stride 2. The cell output is ReLU, 1x1 conv,
    BN over the concatenated loose ends, computed as a sum of one 1x1 conv per node (the same
    map as slicing one big weight by the loose ends, without index tensors).
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
                nn.ModuleList(
                    nn.ModuleList(micro_op(op, c, stride(i), **BATCH_STATS) for op in MicroOp)
                    for i in range(j + NUM_INPUTS)
                )
                for _slot in range(MICRO_SLOTS)
            )
            for j in range(num_blocks)
        )
        # One-shot path p of either slot of node j+2 is (input, op id) = self.paths[j][p].
        self.paths = [
            [(i, op) for i in range(j + NUM_INPUTS) for op in range(NUM_MICRO_OPS)]
            for j in range(num_blocks)
        ]
        # In a reduction cell a loose input node is still at the input size.
        self.shrink = (
            nn.ModuleList(FactorizedReduce(c, c, **BATCH_STATS) for _ in range(NUM_INPUTS))
            if reduce
            else None
        )
        self.relu = nn.ReLU()
        self.out_convs = nn.ModuleList(
            PointwiseConv2d(c, c) for _ in range(num_blocks + NUM_INPUTS)
        )
        self.out_bn = bn(c, **BATCH_STATS)

    def op(self, node: int, slot: int, input_index: int, op: MicroOp) -> nn.Module:
        return self.ops[node - NUM_INPUTS][slot][input_index][op.enas_id]

    def oneshot_fan_ins(self) -> tuple[int, ...]:
        """Paths into each choice: the x and y slots of node 2, then of node 3, ..."""
        return tuple(len(paths) for paths in self.paths for _slot in range(MICRO_SLOTS))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, cell: Cell) -> torch.Tensor:
        nodes = [self.calibrate[0](s0), self.calibrate[1](s1)]
        for j, block in enumerate(cell.blocks):
            node = j + NUM_INPUTS
            nodes.append(_sum([
                self.op(node, slot, index, op)(nodes[index])
                for slot, (index, op) in enumerate(block.branches)
            ]))
        return self._combine(nodes, cell.loose_ends)

    def forward_oneshot(self, s0: torch.Tensor, s1: torch.Tensor, kept: Kept) -> torch.Tensor:
        """Each node sums the kept (input, op) paths of both slots (``kept`` holds one entry
        per slot, as ``oneshot_fan_ins``); the output combines ALL nodes."""
        nodes = [self.calibrate[0](s0), self.calibrate[1](s1)]
        for j, (ops, paths) in enumerate(zip(self.ops, self.paths)):
            terms = []
            for slot in range(MICRO_SLOTS):
                for p in kept[MICRO_SLOTS * j + slot]:
                    i, op = paths[p]
                    terms.append(ops[slot][i][op](nodes[i]))
            nodes.append(_sum(terms))
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
    normal cells in ``reduction_after`` (see ``micro_reduction_positions``). The head is ReLU,
    global average pool, dropout, linear, as in the authors' search and final children.
    """

    def __init__(
        self,
        num_layers: int = 6,
        channels: int = 20,
        num_blocks: int = 5,
        in_channels: int = 3,
        num_classes: int = 10,
        keep_prob: float = 0.9,
        *,
        ghost_batch_size: int = 0,
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
        self.head = ClassifierHead(c, num_classes, keep_prob, relu_first=True)
        self.set_ghost_batch_size(ghost_batch_size)

    def set_ghost_batch_size(self, size: int) -> None:
        """Batch-norm statistics per ghost batch of ``size`` images (0: the whole batch)."""
        _set_ghost_batch_size(self, size)

    def _layout(self) -> list[bool]:
        """Per cell position: True for a reduction cell."""
        layout = []
        for i in range(self.num_layers):
            layout.append(False)
            if i in self.reduction_after:
                layout.append(True)
        return layout

    def oneshot_fan_ins(self) -> tuple[int, ...]:
        """Paths into each choice (node slot) of each cell, cells in order."""
        return tuple(k for cell in self.cells for k in cell.oneshot_fan_ins())

    def forward(self, x: torch.Tensor, arch: MicroArch) -> torch.Tensor:
        self._check(arch)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, arch.reduce if cell.reduce else arch.normal)
        return self.head(s1)

    def forward_oneshot(self, x: torch.Tensor, kept: Kept) -> torch.Tensor:
        _check_kept(kept, self.oneshot_fan_ins())
        s0 = s1 = self.stem(x)
        per_cell_choices = MICRO_SLOTS * self.num_blocks
        for n, cell in enumerate(self.cells):
            per_cell = kept[n * per_cell_choices : (n + 1) * per_cell_choices]
            s0, s1 = s1, cell.forward_oneshot(s0, s1, per_cell)
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


# ----------------------------------------------------------------- registry
def _build_macro(config, in_channels: int, num_classes: int) -> MacroSupernet:
    return MacroSupernet(
        num_layers=config.layers, channels=config.channels, in_channels=in_channels,
        num_classes=num_classes, keep_prob=config.keep_prob,
        ghost_batch_size=config.ghost_batch_size,
    )


def _build_micro(config, in_channels: int, num_classes: int) -> MicroSupernet:
    return MicroSupernet(
        num_layers=config.layers, channels=config.channels, num_blocks=config.num_blocks,
        in_channels=in_channels, num_classes=num_classes, keep_prob=config.keep_prob,
        ghost_batch_size=config.ghost_batch_size,
    )


# Space -> builder(config, in_channels, num_classes); a new space adds one entry.
SUPERNETS: dict[str, Callable[..., nn.Module]] = {
    MacroArch.space: _build_macro,
    MicroArch.space: _build_micro,
}
