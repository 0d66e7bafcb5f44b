"""Recurrent language models of the ENAS Penn Treebank space (reference sec. 8).

Two networks share one time loop (``cell_step``) and one input/output pipeline: the
shared-weight search network ``RecurrentSupernet`` (every candidate matrix, the sampled cell
picks its own) and the final network ``RecurrentNet`` (one matrix per node of one cell). Both
follow the authors' corrected code (google-research ``enas_lm``: ``child.py`` for the search,
``fixed_lib.py`` for the final network); where that code has a fault, it is named below.

The cell, per time step (x = the embedded input, s = the state from the step before, H the
hidden size, masks as below):

- node 0: ``[x * mask_x, s * mask_l] @ W0`` (W0 is 2H x 2H) split into (h, t);
  ``s0 = s + sigmoid(t) * (tanh(h) - s)``;
- node l = 1..N reading node p with activation f: ``(s_p * mask_l) @ W_l`` split into (h, t);
  ``s_l = s_p + sigmoid(t) * (f(h) - s_p)``; the highway term uses the unmasked s_p, as the
  authors' code does;
- the step's output, and the state carried to the next step, is the mean of nodes 1..N (the
  authors' GPU code; see ``enastool.encoding.recurrent``).

Node 0's product is computed as ``x @ W0[:H] + (s * mask_l) @ W0[H:]``, the first term for all
steps of the window in one matrix product before the loop (it does not depend on the state):
the same sum as the concatenated product, up to float rounding, with half the per-step work.

Interface. ``tokens`` are token ids shaped ``[batch, time]`` (batch-first, as the authors'
``x: [batch_size, num_steps]`` and as the data side delivers BPTT windows); ``state`` is the
hidden state ``[batch, H]`` carried between windows (None: zeros). The caller detaches it
between windows and resets it where the reference does (validation: fresh zero state per
batch). ``forward`` returns an ``LMOutput``: ``logits`` ``[batch, time, vocab]``, the next
``state`` ``[batch, H]`` (the last step's output, still attached to the graph), and
``outputs`` ``[batch, time, H]``, the undropped cell outputs the activation regularisers read
(``activation_penalty``). Token ids are not range-checked here (that would read the device):
the data side builds them from its own vocabulary.

Tied embedding. The embedding matrix ``[vocab, H]`` is also the softmax weight matrix
(``logits = outputs @ E^T``), with no softmax bias, as in the authors' code.

Dropout (rates, never keep probabilities; ``DropRates``). In training mode every ``forward``
draws one set of variational masks (``draw_masks``) and uses it at every time step of the
window: the authors draw them once per session run, i.e. once per BPTT window. Kept values are
scaled by 1 / (1 - rate).

- ``words``: whole rows of the embedding: every occurrence of a dropped word in the window is
  zero (mask ``[vocab]``, applied to the looked-up rows; the softmax keeps the undropped
  matrix, as the authors' ``w_soft``);
- ``embedding``: the embedding output, one mask ``[batch, H]`` for all steps;
- ``inputs``: the RNN input x inside node 0 (``mask_x``, ``[batch, H]``);
- ``hidden``: between nodes (``mask_l``, ``[batch, H]``): one mask applied to the state read by
  node 0 and to the input of every node, as the authors' single ``layer_mask``;
- ``output``: the cell output before the softmax, ``[batch, H]`` for all steps;
- ``weights``: DropConnect on the recurrent matrices (W0's state rows, every node matrix), one
  ``[H, 2H]`` mask per matrix per window. The rate is 0 in both reference settings; it is
  supported because it costs one multiply per used matrix per window and nothing at rate 0.

Eval mode draws no masks: the forward is deterministic and its logits give perplexity
directly. Masks passed explicitly (``masks=``) are applied in either mode (tests, and any
caller that wants the same masks twice).

Regularisers (what the loss adds; the weights are the caller's):

- ``l2_penalty``: the sum of squared weights (no 1/2, the authors' final network's
  ``reduce_sum(w ** 2)``). Search: W0 and the N node matrices the sampled cell used, nothing
  else (embedding not decayed, as the authors' search). Two faults of the authors' search code
  are not copied: it penalised ``tf.nn.l2_loss(w ** 2)``, a sum of fourth powers / 2 (with
  weights near 0.04 about a thousandth of the intended decay), and it left node 1's matrix out
  (a leftover of the final code's ``[None, W_2, ...]`` list). Final: every parameter, embedding
  included, as the authors' final network.
- ``activation_penalty(outputs, alpha, beta)``: ``alpha * mean(out ** 2)`` (activation L2) plus
  ``beta * mean((out[:, 1:] - out[:, :-1]) ** 2)`` (slowness), on the undropped outputs of the
  window, as the authors. Reference settings: search alpha 0, beta 1; final alpha 0.7, beta 0
  (``SEARCH_ALPHA`` ... ``FINAL_BETA``).

Shared weights. The supernet keeps one ``[H, 2H]`` parameter per (node l, activation, prev
index): the authors' ``[4, l, H, 2H]`` tensor of node l, held as separate parameters so that a
step's backward reaches exactly the matrices its cell used and every other one keeps
``grad is None`` (and SGD, weight decay and clipping leave it alone). ``weight(l, act, prev)``
names one. At the search size (H = 200, N = 8) that is 144 matrices, 11.5M values.

Initialisation: every parameter, embedding included, uniform in ``[-init_range, init_range]``
(search 0.04, final 0.05).

Speed. The architecture is a host-side object used only to pick matrices and activation
functions once per window; nothing about it goes to the device, no device value is read back
(no ``.item()``, no Python branch on a tensor), so a new cell per step costs no host-device
sync, and nothing runs for cells not sampled. The loop over time steps and nodes is inherent in
a recurrent cell (step t needs step t - 1). ``cell_step`` is a pure function of fixed shapes,
independent of the window length, and each network calls it through its ``step`` attribute:
``net.step = torch.compile(cell_step)`` (or CUDA graphs of the final network's step) is the GPU
speed path, compiled once per cell (the activation functions are guarded constants) and reused
for every window length; compiling a whole ``forward`` instead unrolls the window and
recompiles for every length the random BPTT draws. Nothing is compiled by default.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, ClassVar, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..encoding.ops import Activation
from ..encoding.recurrent import FIRST_NODE, PUBLISHED_NODES, RecurrentArch
from ..errors import EnasError
from .counting import count_params

GATES = 2  # every node's product is split into (h, t): candidate and highway gate
PTB_VOCAB = 10_000  # Mikolov's preprocessed Penn Treebank


@dataclass(frozen=True)
class DropRates:
    """Dropout rates of a recurrent language model (rates of dropping, in [0, 1))."""

    words: float = 0.0  # whole embedding rows (the authors' drop_e)
    embedding: float = 0.0  # embedding output (drop_i)
    inputs: float = 0.0  # RNN input x in node 0 (drop_x)
    hidden: float = 0.0  # between nodes, and the state read by node 0 (drop_l)
    output: float = 0.0  # cell output before the softmax (drop_o)
    weights: float = 0.0  # DropConnect on the recurrent matrices (drop_w)

    def __post_init__(self) -> None:
        for f in fields(self):
            rate = getattr(self, f.name)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
                raise EnasError(f"rnn dropout rate {f.name} must be in [0, 1), found {rate!r}")


# Search network (reference sec. 8; enas_lm child.py).
SEARCH_HIDDEN = 200
SEARCH_INIT_RANGE = 0.04
SEARCH_DROP_RATES = DropRates(words=0.10, embedding=0.20, inputs=0.75, hidden=0.25, output=0.75, weights=0.0)
SEARCH_ALPHA = 0.0  # activation L2
SEARCH_BETA = 1.0  # activation slowness

# Final network (reference sec. 8; enas_lm fixed_lib.py).
FINAL_HIDDEN = 800
FINAL_INIT_RANGE = 0.05
FINAL_DROP_RATES = DropRates(words=0.125, embedding=0.175, inputs=0.725, hidden=0.225, output=0.75, weights=0.0)
FINAL_ALPHA = 0.7
FINAL_BETA = 0.0  # the authors' final network has no slowness term

NO_DROPOUT = DropRates()


def _identity(h: torch.Tensor) -> torch.Tensor:
    return h


# What each activation of the encoding computes (the enum is the only list of their names).
ACTIVATION_FUNCTIONS: dict[Activation, Callable[[torch.Tensor], torch.Tensor]] = {
    Activation.TANH: torch.tanh,
    Activation.RELU: torch.relu,
    Activation.SIGMOID: torch.sigmoid,
    Activation.IDENTITY: _identity,
}


class LMOutput(NamedTuple):
    """What ``forward`` returns (see the module docstring)."""

    logits: torch.Tensor  # [batch, time, vocab]
    state: torch.Tensor  # [batch, H], the last step's output
    outputs: torch.Tensor  # [batch, time, H], undropped: for activation_penalty


class DropoutMasks(NamedTuple):
    """One window's variational masks; None where the rate is 0 (nothing is multiplied)."""

    words: torch.Tensor | None  # [vocab]
    embedding: torch.Tensor | None  # [batch, H]
    inputs: torch.Tensor | None  # [batch, H]
    hidden: torch.Tensor | None  # [batch, H]
    output: torch.Tensor | None  # [batch, H]
    weights: tuple[torch.Tensor, ...] | None  # N + 1 masks [H, 2H]: W0's state rows, nodes 1..N


NO_MASKS = DropoutMasks(None, None, None, None, None, None)


class CellNode(NamedTuple):
    """Node l of the cell as the loop runs it: which node it reads, f, and its [H, 2H] matrix."""

    prev: int
    function: Callable[[torch.Tensor], torch.Tensor]
    weight: torch.Tensor


def cell_step(
    xw: torch.Tensor,
    s: torch.Tensor,
    w0_state: torch.Tensor,
    nodes: Sequence[CellNode],
    hidden_mask: torch.Tensor | None,
) -> torch.Tensor:
    """One time step of the cell: the new state (mean of nodes 1..N), ``[batch, H]``.

    ``xw`` is this step's ``(x * mask_x) @ W0[:H]`` (``[batch, 2H]``), ``s`` the state from the
    step before, ``w0_state`` is ``W0[H:]`` (``[H, 2H]``).
    """
    read = s if hidden_mask is None else s * hidden_mask
    h, t = (xw + read @ w0_state).chunk(GATES, dim=-1)
    states = [s + torch.sigmoid(t) * (torch.tanh(h) - s)]
    for node in nodes:
        prev = states[node.prev]
        read = prev if hidden_mask is None else prev * hidden_mask
        h, t = (read @ node.weight).chunk(GATES, dim=-1)
        states.append(prev + torch.sigmoid(t) * (node.function(h) - prev))
    total = states[FIRST_NODE]
    for state in states[FIRST_NODE + 1 :]:
        total = total + state
    return total / len(nodes)


def activation_penalty(outputs: torch.Tensor, alpha: float = 0.0, beta: float = 0.0) -> torch.Tensor:
    """``alpha * mean(out^2) + beta * mean((out[:, t+1] - out[:, t])^2)`` of ``[batch, time, H]``
    undropped outputs (a scalar; zero when both weights are 0)."""
    total = outputs.new_zeros(())
    if alpha:
        total = total + alpha * outputs.pow(2).mean()
    if beta and outputs.shape[1] > 1:
        total = total + beta * (outputs[:, 1:] - outputs[:, :-1]).pow(2).mean()
    return total


def _keep_mask(shape, rate: float, like: torch.Tensor, generator) -> torch.Tensor | None:
    """Bernoulli(1 - rate) / (1 - rate) on ``like``'s device and dtype; None when rate is 0."""
    if rate == 0.0:
        return None
    keep = 1.0 - rate
    mask = torch.empty(shape, device=like.device, dtype=like.dtype)
    return mask.bernoulli_(keep, generator=generator).div_(keep)


class _RecurrentLM(nn.Module):
    """What both networks share: the tied embedding, node 0's W0, masks and the time loop.

    Subclasses add the node matrices and call ``reset_parameters`` when they are built.
    """

    label: ClassVar[str]  # how messages name the network

    def __init__(self, vocab_size: int, hidden: int, num_nodes: int, drop: DropRates, init_range: float):
        super().__init__()
        name = self.label
        if vocab_size < 1 or hidden < 1:
            raise EnasError(f"{name}: vocab_size and hidden must be >= 1, found {vocab_size}, {hidden}")
        if not init_range > 0:
            raise EnasError(f"{name}: init_range must be positive, found {init_range}")
        if not isinstance(drop, DropRates):
            raise EnasError(f"{name}: drop must be a DropRates, found {type(drop).__name__}")
        self.vocab_size = vocab_size
        self.hidden = hidden
        self.num_nodes = num_nodes
        self.drop = drop
        self.init_range = init_range
        self.embedding = nn.Embedding(vocab_size, hidden)  # also the softmax weights (tied)
        self.w0 = nn.Parameter(torch.empty(2 * hidden, GATES * hidden))  # rows: [x; s]
        self.step: Callable = cell_step  # the time step; replace with a compiled cell_step for speed

    def reset_parameters(self) -> None:
        for param in self.parameters():
            nn.init.uniform_(param, -self.init_range, self.init_range)

    def draw_masks(self, batch: int, generator: torch.Generator | None = None) -> DropoutMasks:
        """A fresh set of variational masks for one window of ``batch`` sequences."""
        d, h, like = self.drop, self.hidden, self.w0
        weights = None
        if d.weights:
            weights = tuple(_keep_mask((h, GATES * h), d.weights, like, generator) for _ in range(self.num_nodes + 1))
        return DropoutMasks(
            words=_keep_mask((self.vocab_size,), d.words, like, generator),
            embedding=_keep_mask((batch, h), d.embedding, like, generator),
            inputs=_keep_mask((batch, h), d.inputs, like, generator),
            hidden=_keep_mask((batch, h), d.hidden, like, generator),
            output=_keep_mask((batch, h), d.output, like, generator),
            weights=weights,
        )

    def _masks(self, tokens: torch.Tensor, masks: DropoutMasks | None, generator) -> DropoutMasks:
        if masks is not None:
            return masks
        return self.draw_masks(tokens.shape[0], generator) if self.training else NO_MASKS

    def _run(
        self, tokens: torch.Tensor, state: torch.Tensor | None, nodes: list[CellNode], masks: DropoutMasks
    ) -> LMOutput:
        name = self.label
        if tokens.dim() != 2:
            raise EnasError(f"{name}: tokens must be [batch, time] token ids, found shape {tuple(tokens.shape)}")
        batch, h = tokens.shape[0], self.hidden
        if state is None:
            state = self.w0.new_zeros(batch, h)
        elif tuple(state.shape) != (batch, h):
            raise EnasError(
                f"{name}: state must be [batch, hidden] = [{batch}, {h}], found {tuple(state.shape)}; "
                "pass None for a fresh zero state"
            )
        x = F.embedding(tokens, self.embedding.weight)
        if masks.words is not None:
            x = x * masks.words[tokens].unsqueeze(-1)
        for mask in (masks.embedding, masks.inputs):  # both [batch, H], constant over time
            if mask is not None:
                x = x * mask.unsqueeze(1)
        w0_state = self.w0[h:]
        if masks.weights is not None:
            w0_state = w0_state * masks.weights[0]
            nodes = [n._replace(weight=n.weight * m) for n, m in zip(nodes, masks.weights[FIRST_NODE:])]
        xw = x @ self.w0[:h]  # node 0's input half for every step at once: [batch, time, 2H]
        outputs = []
        for xw_t in xw.unbind(1):
            state = self.step(xw_t, state, w0_state, nodes, masks.hidden)
            outputs.append(state)
        out = torch.stack(outputs, dim=1)
        top = out if masks.output is None else out * masks.output.unsqueeze(1)
        return LMOutput(F.linear(top, self.embedding.weight), state, out)


def _check_arch(name: str, arch, num_nodes: int) -> None:
    if not isinstance(arch, RecurrentArch):
        raise EnasError(f"{name}: expected an rnn architecture, found {type(arch).__name__}")
    if arch.num_nodes != num_nodes:
        raise EnasError(
            f"{name} has {num_nodes} nodes but the architecture has {arch.num_nodes}; "
            f"use a {num_nodes}-node architecture"
        )


class RecurrentSupernet(_RecurrentLM):
    """The search network: one [H, 2H] matrix per (node, activation, prev index).

    ``forward(tokens, arch)`` runs exactly the cell ``arch``; see the module docstring.
    """

    label = "rnn supernet"

    def __init__(
        self,
        vocab_size: int,
        num_nodes: int = PUBLISHED_NODES,
        hidden: int = SEARCH_HIDDEN,
        drop: DropRates = SEARCH_DROP_RATES,
        init_range: float = SEARCH_INIT_RANGE,
    ):
        if num_nodes < 1:
            raise EnasError(f"rnn supernet: num_nodes must be >= 1, found {num_nodes}")
        super().__init__(vocab_size, hidden, num_nodes, drop, init_range)
        # node_weights[l - 1][activation id * l + prev]: the authors' [4, l, H, 2H] of node l.
        self.node_weights = nn.ModuleList(
            nn.ParameterList(
                nn.Parameter(torch.empty(hidden, GATES * hidden)) for _ in range(Activation.count() * l)
            )
            for l in range(FIRST_NODE, num_nodes + 1)
        )
        self.reset_parameters()

    def weight(self, node: int, activation: Activation, prev: int) -> nn.Parameter:
        """The matrix node ``node`` (1-based) uses when it reads ``prev`` through ``activation``."""
        return self.node_weights[node - FIRST_NODE][activation.enas_id * node + prev]

    def cell_nodes(self, arch: RecurrentArch) -> list[CellNode]:
        return [
            CellNode(n.prev, ACTIVATION_FUNCTIONS[n.activation], self.weight(l, n.activation, n.prev))
            for l, n in enumerate(arch.nodes, start=FIRST_NODE)
        ]

    def used_weights(self, arch: RecurrentArch) -> list[nn.Parameter]:
        """W0 and the N node matrices ``arch`` uses: what its L2 penalty covers."""
        _check_arch(self.label, arch, self.num_nodes)
        return [self.w0] + [node.weight for node in self.cell_nodes(arch)]

    def l2_penalty(self, arch: RecurrentArch) -> torch.Tensor:
        """Sum of the squares of the matrices ``arch`` uses (not multiplied by any decay)."""
        return _sum_of_squares(self.used_weights(arch))

    def forward(
        self,
        tokens: torch.Tensor,
        arch: RecurrentArch,
        state: torch.Tensor | None = None,
        masks: DropoutMasks | None = None,
        generator: torch.Generator | None = None,
    ) -> LMOutput:
        """Run cell ``arch`` over one window; ``generator`` draws the masks (training mode)."""
        _check_arch(self.label, arch, self.num_nodes)
        return self._run(tokens, state, self.cell_nodes(arch), self._masks(tokens, masks, generator))


class RecurrentNet(_RecurrentLM):
    """The final network: one [H, 2H] matrix per node of the cell ``arch`` (no sharing)."""

    label = "rnn network"

    def __init__(
        self,
        arch: RecurrentArch,
        vocab_size: int,
        hidden: int = FINAL_HIDDEN,
        drop: DropRates = FINAL_DROP_RATES,
        init_range: float = FINAL_INIT_RANGE,
    ):
        if not isinstance(arch, RecurrentArch):
            raise EnasError(f"{self.label}: expected an rnn architecture, found {type(arch).__name__}")
        super().__init__(vocab_size, hidden, arch.num_nodes, drop, init_range)
        self.arch = arch
        self.node_weights = nn.ParameterList(
            nn.Parameter(torch.empty(hidden, GATES * hidden)) for _ in arch.nodes
        )
        self._functions = [ACTIVATION_FUNCTIONS[n.activation] for n in arch.nodes]
        self.reset_parameters()

    def cell_nodes(self) -> list[CellNode]:
        return [
            CellNode(n.prev, f, w) for n, f, w in zip(self.arch.nodes, self._functions, self.node_weights)
        ]

    def l2_penalty(self) -> torch.Tensor:
        """Sum of the squares of every parameter, embedding included (the authors' final)."""
        return _sum_of_squares(list(self.parameters()))

    def forward(
        self,
        tokens: torch.Tensor,
        state: torch.Tensor | None = None,
        masks: DropoutMasks | None = None,
        generator: torch.Generator | None = None,
    ) -> LMOutput:
        return self._run(tokens, state, self.cell_nodes(), self._masks(tokens, masks, generator))


def _sum_of_squares(weights: list[torch.Tensor]) -> torch.Tensor:
    total = weights[0].pow(2).sum()
    for w in weights[1:]:
        total = total + w.pow(2).sum()
    return total


# ----------------------------------------------------------------- counting
COUNT_TOKENS = 1  # the FLOP count runs one token of one sequence: counts are per token


def recurrent_counts(
    arch: RecurrentArch, hidden: int = FINAL_HIDDEN, vocab_size: int = PTB_VOCAB
) -> dict[str, int]:
    """``params`` and forward ``flops`` per token of the final network of ``arch``.

    Measured on the real module, built on the meta device (no memory is allocated, so the
    paper size counts instantly): params = vocab x H (the tied embedding) + 2H x 2H (W0) +
    N x H x 2H. FLOPs count the matrix products (multiply-add = 2), softmax included.
    """
    with torch.device("meta"):
        net = RecurrentNet(arch, vocab_size, hidden, drop=NO_DROPOUT).eval()
        tokens = torch.zeros(COUNT_TOKENS, COUNT_TOKENS, dtype=torch.long)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(tokens)
    return {"params": count_params(net), "flops": int(counter.get_total_flops()) // COUNT_TOKENS}
