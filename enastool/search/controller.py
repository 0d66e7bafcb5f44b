"""The ENAS controllers (reference sec. 5): LSTMs that emit an architecture token by token.

One ``forward`` serves both uses. Without an architecture it *samples* one; given one it
*teacher-forces* its tokens through the same computation. Either way it returns the
architecture with the summed log-probability and entropy of its decisions (and, macro, the
skip penalty), so ``log_prob(sample.arch)`` recomputes exactly what ``sample()`` reported.

Every decision reads the top hidden state ``h`` of a stacked LSTM (``lstm_layers`` cells of
``lstm_size`` units; the authors use one layer of 64):

- an op token: softmax over ``op_tanh * tanh(W_op h / temperature)``, ``op_tanh`` =
  ``tanh_constant / op_tanh_reduce``; the next input is the op's embedding;
- an attention over anchors (the hidden states that stand for earlier nodes):
  ``score_m = tanh_constant * tanh(v . tanh(W1 a_m + W2 h) / temperature)``.

Macro, per layer k: an op token, then one more LSTM step and all k skip bits at once, bit m
set with probability ``sigmoid(score_m)``. The next input is the sum of the chosen anchors
divided by 1 + their count (the authors' formula), or the start embedding when none is chosen.
A KL penalty ``KL(Bernoulli(p_m) || Bernoulli(skip_target))``, summed over a layer's bits
and averaged over the layers that have bits (as the authors did), pulls the skip rate
toward ``skip_target``.

Micro, per cell: two LSTM steps give the keys of input nodes 0 and 1 (their anchors are
zero vectors); then per node: index_1 and index_2 (softmax over the attention scores of the
earlier nodes; the next input is the chosen node's anchor), op_1 and op_2, and a last step
whose output becomes the new node's anchor. The reduction cell starts from the LSTM state the
normal cell ended with, and both cells share all weights.

Recurrent (``rnn``, the authors' ``enas_lm`` controller), per node l = 1..N: an LSTM step
whose output h_l is node l's anchor; the prev index j in 0..l-1 from the attention scores
over the anchors of nodes 0..l-1 (node 0's anchor is a zero vector, so its key is zero too),
squashed as above and then minus ``(l - j)^2 / distance_prior``, a prior toward near nodes;
the next input is the chosen anchor divided by ``INPUT_DISTANCE_OFFSET + l - j``; a second
step gives the activation (op logits squashed the same way, no op_tanh_reduce in the
reference), whose embedding is the next node's input. The authors' settings: temperature 5,
tanh constant 2.25, prior divisor 6, weights uniform in +-0.01 (``RNN_PARAM_INIT_RANGE``),
and one matrix that is both the activation embedding and the activation head (tied here too).
Their search flag defaults to 9 nodes; the published cell, and ``num_nodes`` here, has 8.

Choices where the reference is silent or odd:

- Skip bit m of a macro layer attends to the anchor of ``prev[m]``, the node the bit really
  connects (the stem has a learned anchor). The authors' controller attends bit m to layer m,
  one off from their own child network (see the encoding, reference sec. 2).
- A skip bit is sampled with probability ``sigmoid(score)`` and the KL penalty is computed on
  that same probability. (The authors sample from ``softmax([-s, s])`` but penalise
  ``sigmoid(s)``: two different numbers.)
- The entropy is the full entropy of every decision's distribution, summed. It carries no
  gradient in REINFORCE (it enters the reward, see ``strategies``), but it is a true
  entropy, so it can be checked and compared across runs.
- The recurrent controller reports the full entropy of every decision, like the others; the
  authors' recurrent code summed ``-log p`` times ``p`` of the sampled token only.
- No learned op-logit bias: the authors' micro controller starts the two separable convs at a
  bias of +10 and adds a fixed bias to the normal cell; here every op starts equally likely.

Every weight starts uniform in ``[-param_init_range, param_init_range]`` as in the authors'
code (0.1 for the image spaces, 0.01 for the recurrent one). The LSTM cells carry biases
(``nn.LSTMCell``); the authors' recurrent LSTM had none, which only adds learnable offsets.
The controller is tiny and works one token at a time: it lives on the CPU (see
``strategies``), and its sampling draws from the ``torch.Generator`` it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..encoding.macro import MacroArch, MacroLayer
from ..encoding.micro import CELL_NAMES, NUM_INPUTS, Block, Cell, MicroArch
from ..encoding.ops import Activation, MacroOp, MicroOp
from ..encoding.recurrent import FIRST_NODE, PUBLISHED_NODES, RecurrentArch, RecurrentNode
from ..errors import EnasError

PARAM_INIT_RANGE = 0.1  # the authors initialise every controller weight uniform in +-0.1
INDICES_PER_BLOCK = 2  # a micro block reads two earlier nodes ...
OPS_PER_BLOCK = 2  # ... through one op each

# The recurrent controller (reference sec. 8; enas_lm controller.py).
RNN_PARAM_INIT_RANGE = 0.01  # enas_lm initialises its controller uniform in +-0.01
RNN_TEMPERATURE = 5.0
RNN_TANH_CONSTANT = 2.25
DISTANCE_PRIOR = 6.0  # prev-index logits minus (l - j)^2 / this: near nodes are preferred
INPUT_DISTANCE_OFFSET = 0.1  # the next input is the chosen anchor / (this + l - j)


@dataclass
class ControllerSample:
    """An architecture and the summed statistics of the decisions that produced it.

    ``log_prob`` and ``skip_penalty`` carry gradients (when computed with grad enabled);
    ``entropy`` is the summed entropy of the decision distributions.
    """

    arch: MacroArch | MicroArch | RecurrentArch
    log_prob: torch.Tensor
    entropy: torch.Tensor
    skip_penalty: torch.Tensor


class _Tape:
    """Takes one decision at a time: samples it, or reads the forced token, and sums the
    log-probability and entropy of every decision taken."""

    def __init__(self, forcing: bool, generator: torch.Generator | None, device: torch.device):
        self.forcing = forcing
        self.generator = generator
        self.log_prob = torch.zeros((), device=device)
        self.entropy = torch.zeros((), device=device)

    def categorical(self, logits: torch.Tensor, forced: int | None, what: str) -> int:
        """One token from ``softmax(logits)`` (1-d logits)."""
        log_p = F.log_softmax(logits, dim=-1)
        if self.forcing:
            if not 0 <= forced < logits.shape[-1]:
                raise EnasError(f"controller: {what} = {forced} is out of range 0..{logits.shape[-1] - 1}")
            choice = forced
        else:
            choice = int(torch.multinomial(log_p.exp(), 1, generator=self.generator))
        self.log_prob = self.log_prob + log_p[choice]
        self.entropy = self.entropy - (log_p.exp() * log_p).sum()
        return choice

    def bernoulli(self, logits: torch.Tensor, forced: tuple[int, ...] | None) -> tuple[int, ...]:
        """One bit per logit, each set with probability ``sigmoid(logit)``."""
        p = torch.sigmoid(logits)
        if self.forcing:
            bits = torch.tensor(forced, dtype=torch.bool, device=logits.device)
        else:
            bits = torch.rand(logits.shape, generator=self.generator, device=logits.device) < p
        log_on, log_off = F.logsigmoid(logits), F.logsigmoid(-logits)
        self.log_prob = self.log_prob + torch.where(bits, log_on, log_off).sum()
        self.entropy = self.entropy - (p * log_on + (1 - p) * log_off).sum()
        return tuple(int(b) for b in bits.tolist())


def bernoulli_kl(logits: torch.Tensor, target: float) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(logits)) || Bernoulli(target)), elementwise, computed in log space."""
    p = torch.sigmoid(logits)
    return p * (F.logsigmoid(logits) - math.log(target)) + (1 - p) * (
        F.logsigmoid(-logits) - math.log(1 - target)
    )


class _Controller(nn.Module):
    """What every controller shares: the LSTM stack, the op head and the attention."""

    op_enum: type = MacroOp
    param_init_range: float = PARAM_INIT_RANGE

    def __init__(
        self,
        lstm_size: int = 64,
        lstm_layers: int = 1,
        tanh_constant: float = 1.5,
        op_tanh_reduce: float = 1.0,
        temperature: float = 1.0,
    ):
        super().__init__()
        if lstm_size < 1 or lstm_layers < 1:
            raise EnasError(f"controller: lstm_size and lstm_layers must be >= 1, found {lstm_size}, {lstm_layers}")
        if temperature <= 0 or op_tanh_reduce <= 0 or tanh_constant < 0:
            raise EnasError("controller: temperature and op_tanh_reduce must be positive, tanh_constant >= 0")
        self.lstm_size = lstm_size
        self.tanh_constant = tanh_constant
        self.op_tanh_constant = tanh_constant / op_tanh_reduce
        self.temperature = temperature
        num_ops = self.op_enum.count()
        self.lstm = nn.ModuleList(nn.LSTMCell(lstm_size, lstm_size) for _ in range(lstm_layers))
        self.start = nn.Parameter(torch.empty(1, lstm_size))  # the input of a fresh decision group
        self.op_embedding = nn.Embedding(num_ops, lstm_size)
        self.op_head = nn.Linear(lstm_size, num_ops, bias=False)
        self.attn_anchor = nn.Linear(lstm_size, lstm_size, bias=False)  # W1: anchors -> keys
        self.attn_query = nn.Linear(lstm_size, lstm_size, bias=False)  # W2: the current state
        self.attn_score = nn.Linear(lstm_size, 1, bias=False)  # v
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for param in self.parameters():
            nn.init.uniform_(param, -self.param_init_range, self.param_init_range)

    # ----------------------------------------------------------------- building blocks
    def _zero_state(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        zeros = self.start.new_zeros(1, self.lstm_size)
        return [(zeros, zeros) for _ in self.lstm]

    def _step(self, inputs: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """One step of the LSTM stack; returns the top hidden state (1, lstm_size) and the state."""
        new_state = []
        for cell, (h, c) in zip(self.lstm, state):
            h, c = cell(inputs, (h, c))
            new_state.append((h, c))
            inputs = h
        return inputs, new_state

    def _squash(self, logits: torch.Tensor, constant: float) -> torch.Tensor:
        logits = logits / self.temperature
        return constant * torch.tanh(logits) if constant > 0 else logits

    def _op_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self._squash(self.op_head(h)[0], self.op_tanh_constant)

    def _attention(self, keys: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """One score per anchor (keys are ``attn_anchor(anchor)``, shape (1, lstm_size) each)."""
        scores = self.attn_score(torch.tanh(torch.cat(keys) + self.attn_query(h)))[:, 0]
        return self._squash(scores, self.tanh_constant)

    # ----------------------------------------------------------------- public API
    def sample(self, generator: torch.Generator | None = None) -> ControllerSample:
        """A fresh architecture drawn from the policy (with gradients if grad is enabled)."""
        return self(None, generator)

    def log_prob(self, arch) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probability, entropy) of ``arch`` under the policy, teacher-forced."""
        result = self(arch)
        return result.log_prob, result.entropy

    def _tape(self, arch, generator) -> _Tape:
        return _Tape(arch is not None, generator, self.start.device)


class MacroController(_Controller):
    """Emits a macro architecture: per layer an op token, then all its skip bits at once."""

    op_enum = MacroOp

    def __init__(self, num_layers: int = 12, skip_target: float = 0.4, **settings):
        super().__init__(**settings)
        if num_layers < 1:
            raise EnasError(f"macro controller: num_layers must be >= 1, found {num_layers}")
        if not 0 < skip_target < 1:
            raise EnasError(f"macro controller: skip_target must be in (0, 1), found {skip_target}")
        self.num_layers = num_layers
        self.skip_target = skip_target
        self.stem_anchor = nn.Parameter(torch.empty(1, self.lstm_size))
        nn.init.uniform_(self.stem_anchor, -PARAM_INIT_RANGE, PARAM_INIT_RANGE)

    @classmethod
    def from_config(cls, config) -> "MacroController":
        return cls(
            num_layers=config.layers, skip_target=config.skip_target, lstm_size=config.lstm_size,
            lstm_layers=config.lstm_layers, tanh_constant=config.tanh_constant,
            op_tanh_reduce=config.op_tanh_reduce, temperature=config.temperature,
        )

    def forward(self, arch: MacroArch | None = None, generator: torch.Generator | None = None) -> ControllerSample:
        if arch is not None and (not isinstance(arch, MacroArch) or arch.num_layers != self.num_layers):
            raise EnasError(
                f"macro controller: expected a {self.num_layers}-layer macro architecture, "
                f"found {_describe(arch)}"
            )
        tape = self._tape(arch, generator)
        state = self._zero_state()
        inputs = self.start
        anchors, keys = [self.stem_anchor], [self.attn_anchor(self.stem_anchor)]  # prev[m]
        penalties, layers = [], []
        for k in range(self.num_layers):
            forced = arch.layers[k] if arch is not None else None
            h, state = self._step(inputs, state)
            op_id = tape.categorical(
                self._op_logits(h), None if forced is None else forced.op.enas_id, f"layer {k} op"
            )
            h, state = self._step(self.op_embedding.weight[op_id : op_id + 1], state)
            bits: tuple[int, ...] = ()
            inputs = self.start
            if k > 0:
                # prev = [stem, layer 0, ..., layer k-1]; bit m connects prev[m], m < k.
                scores = self._attention(keys[:k], h)
                bits = tape.bernoulli(scores, None if forced is None else forced.skips)
                penalties.append(bernoulli_kl(scores, self.skip_target).sum())
                if any(bits):
                    chosen = torch.tensor(bits, dtype=h.dtype, device=h.device)
                    inputs = (chosen @ torch.cat(anchors[:k]))[None] / (1 + sum(bits))
            anchors.append(h)
            keys.append(self.attn_anchor(h))
            layers.append(MacroLayer(MacroOp(op_id), bits))
        penalty = torch.stack(penalties).mean() if penalties else tape.log_prob.new_zeros(())
        return ControllerSample(MacroArch(tuple(layers)), tape.log_prob, tape.entropy, penalty)


class MicroController(_Controller):
    """Emits a micro architecture: per node index_1, index_2, op_1, op_2; normal cell first."""

    op_enum = MicroOp

    def __init__(self, num_blocks: int = 5, **settings):
        super().__init__(**settings)
        if num_blocks < 1:
            raise EnasError(f"micro controller: num_blocks must be >= 1, found {num_blocks}")
        self.num_blocks = num_blocks

    @classmethod
    def from_config(cls, config) -> "MicroController":
        return cls(
            num_blocks=config.num_blocks, lstm_size=config.lstm_size, lstm_layers=config.lstm_layers,
            tanh_constant=config.tanh_constant, op_tanh_reduce=config.op_tanh_reduce,
            temperature=config.temperature,
        )

    def forward(self, arch: MicroArch | None = None, generator: torch.Generator | None = None) -> ControllerSample:
        if arch is not None and (not isinstance(arch, MicroArch) or arch.num_blocks != self.num_blocks):
            raise EnasError(
                f"micro controller: expected a micro architecture of {self.num_blocks} blocks "
                f"per cell, found {_describe(arch)}"
            )
        tape = self._tape(arch, generator)
        state = self._zero_state()
        cells = []
        for which in range(len(CELL_NAMES)):  # normal, then reduction
            forced = arch.cells[which] if arch is not None else None
            cell, state = self._cell(tape, state, forced)  # the reduction cell continues the state
            cells.append(cell)
        zero = tape.log_prob.new_zeros(())
        return ControllerSample(MicroArch(*cells), tape.log_prob, tape.entropy, zero)

    def _cell(self, tape: _Tape, state: list, forced: Cell | None) -> tuple[Cell, list]:
        inputs = self.start
        anchors, keys = [], []
        for _ in range(NUM_INPUTS):  # nodes 0 and 1: zero anchors, keys from the LSTM
            h, state = self._step(inputs, state)
            anchors.append(torch.zeros_like(h))
            keys.append(self.attn_anchor(h))
        blocks = []
        for j in range(self.num_blocks):
            node = j + NUM_INPUTS
            given = forced.blocks[j] if forced is not None else None
            indices = []
            for i, index in enumerate((given.index1, given.index2) if given else (None,) * INDICES_PER_BLOCK):
                h, state = self._step(inputs, state)
                chosen = tape.categorical(self._attention(keys, h), index, f"node {node} index_{i + 1}")
                indices.append(chosen)
                inputs = anchors[chosen]
            ops = []
            for i, op in enumerate((given.op1, given.op2) if given else (None,) * OPS_PER_BLOCK):
                h, state = self._step(inputs, state)
                forced_op = None if op is None else op.enas_id
                chosen = tape.categorical(self._op_logits(h), forced_op, f"node {node} op_{i + 1}")
                ops.append(chosen)
                inputs = self.op_embedding.weight[chosen : chosen + 1]
            h, state = self._step(inputs, state)
            anchors.append(h)
            keys.append(self.attn_anchor(h))
            inputs = self.start
            blocks.append(Block(indices[0], MicroOp(ops[0]), indices[1], MicroOp(ops[1])))
        return Cell(tuple(blocks)), state


class RecurrentController(_Controller):
    """Emits a recurrent cell: per node l its prev index (attention with the distance prior),
    then its activation. Defaults are the authors' recurrent settings (module docstring)."""

    op_enum = Activation
    param_init_range = RNN_PARAM_INIT_RANGE

    def __init__(
        self,
        num_nodes: int = PUBLISHED_NODES,
        distance_prior: float = DISTANCE_PRIOR,
        tanh_constant: float = RNN_TANH_CONSTANT,
        temperature: float = RNN_TEMPERATURE,
        **settings,
    ):
        super().__init__(tanh_constant=tanh_constant, temperature=temperature, **settings)
        if num_nodes < 1:
            raise EnasError(f"rnn controller: num_nodes must be >= 1, found {num_nodes}")
        if distance_prior < 0:
            raise EnasError(f"rnn controller: distance_prior must be >= 0 (0 = no prior), found {distance_prior}")
        self.num_nodes = num_nodes
        self.distance_prior = distance_prior
        self.op_head.weight = self.op_embedding.weight  # one matrix, as the authors' w_emb

    @classmethod
    def from_config(cls, config) -> "RecurrentController":
        # num_nodes and distance_prior are read with defaults: the search config may not have them.
        return cls(
            num_nodes=getattr(config, "num_nodes", PUBLISHED_NODES),
            distance_prior=getattr(config, "distance_prior", DISTANCE_PRIOR),
            lstm_size=config.lstm_size, lstm_layers=config.lstm_layers,
            tanh_constant=config.tanh_constant, op_tanh_reduce=config.op_tanh_reduce,
            temperature=config.temperature,
        )

    def prior(self, node: int) -> torch.Tensor:
        """What the prior subtracts from the prev-index logits of ``node``: (l - j)^2 / c."""
        distance = node - torch.arange(node, dtype=self.start.dtype, device=self.start.device)
        if self.distance_prior == 0:
            return torch.zeros_like(distance)
        return distance.pow(2) / self.distance_prior

    def forward(
        self, arch: RecurrentArch | None = None, generator: torch.Generator | None = None
    ) -> ControllerSample:
        if arch is not None and (not isinstance(arch, RecurrentArch) or arch.num_nodes != self.num_nodes):
            raise EnasError(
                f"rnn controller: expected an rnn cell of {self.num_nodes} nodes, found {_describe(arch)}"
            )
        tape = self._tape(arch, generator)
        state = self._zero_state()
        inputs = self.start
        anchors = [self.start.new_zeros(1, self.lstm_size)]  # node 0: a zero anchor and key
        keys = [anchors[0]]
        nodes = []
        for l in range(FIRST_NODE, self.num_nodes + 1):
            forced = arch.nodes[l - FIRST_NODE] if arch is not None else None
            h, state = self._step(inputs, state)
            logits = self._attention(keys, h) - self.prior(l)
            prev = tape.categorical(logits, None if forced is None else forced.prev, f"node {l} prev_index")
            anchors.append(h)
            keys.append(self.attn_anchor(h))
            inputs = anchors[prev] / (INPUT_DISTANCE_OFFSET + l - prev)
            h, state = self._step(inputs, state)
            forced_act = None if forced is None else forced.activation.enas_id
            act = tape.categorical(self._op_logits(h), forced_act, f"node {l} activation")
            inputs = self.op_embedding.weight[act : act + 1]
            nodes.append(RecurrentNode(prev, Activation(act)))
        zero = tape.log_prob.new_zeros(())
        return ControllerSample(RecurrentArch(tuple(nodes)), tape.log_prob, tape.entropy, zero)


CONTROLLERS: dict[str, type[_Controller]] = {
    MacroArch.space: MacroController,
    MicroArch.space: MicroController,
    RecurrentArch.space: RecurrentController,
}


def build_controller(config) -> _Controller:
    """The controller of ``config.space`` with the config's settings."""
    return CONTROLLERS[config.space].from_config(config)


def _describe(arch) -> str:
    if isinstance(arch, MacroArch):
        return f"a {arch.num_layers}-layer macro architecture"
    if isinstance(arch, MicroArch):
        return f"a micro architecture of {arch.num_blocks} blocks per cell"
    if isinstance(arch, RecurrentArch):
        return f"an rnn cell of {arch.num_nodes} nodes"
    return f"a {type(arch).__name__}"
