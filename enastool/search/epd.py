"""NAO's encoder-predictor-decoder (EPD), the core of NAO-WS (Luo et al. 2018; reference sec. 9).

An architecture is a token sequence (``enastool.encoding.tokens``: the EPD works on any
space's :class:`~enastool.encoding.tokens.TokenScheme` and assumes nothing else about it).

- **Encoder**: a token embedding (32) and a one-layer LSTM (64 units) that reads the sequence
  ``tokens_per_step`` (2) tokens per step: the embeddings of a step's tokens are concatenated.
  Each output is L2-normalised; the architecture's *embedding* is their mean, normalised again.
- **Predictor**: an MLP on the embedding, a sigmoid at the end: a score in (0, 1).
- **Decoder**: an LSTM (64 units) started from (h, c) = (embedding, embedding), with attention
  over the encoder outputs; it emits ``scheme.length`` tokens, each chosen among the tokens the
  scheme allows at that position (the others are masked out), so every decoded sequence is a
  valid architecture, trained or not.

:class:`EPDTrainer` trains it (loss = 0.8 x MSE + 0.2 x NLL, Adam, batch 100, gradient clip 5,
targets = the scores min-max normalised to [0, 1], symmetry augmentation, 10% of the pool held
out for the predictor's pairwise ranking accuracy and the decoder's Hamming distance).
:class:`EPDGenerator` generates: the encoder outputs of the top architectures move along the
gradient of the predicted score, ``o <- o + eta * d(score)/d(o)``, are re-normalised, averaged
and normalised again into a new embedding, and decoded, for eta = 1, 2, 3, ... up to
``max_eta``, until ``new_archs`` new architectures exist: valid, distinct up to the space's
symmetry, and not in the pool.

Both are resumable units: ``train(epochs)`` and ``step()`` (one eta round) can be called in
chunks, and ``state_dict()`` holds everything the next chunk depends on, as tensors, numbers,
strings, lists and dicts (loadable with ``torch.load(weights_only=True)``). Training in chunks
with a save and load in between gives the same weights, bit for bit on the CPU, as one call.

Where sec. 9 is silent, the authors' code (``NAO_V1``: ``controller.py``, ``encoder.py``,
``decoder.py``, ``train_search.py``, ``utils.py``) decides:

- the predictor MLP has 3 hidden layers of 200 ReLU units with dropout 0.1; Adam has weight
  decay 1e-4; the decoder's token embedding is as wide as its LSTM (64);
- attention: the decoder output is projected (no bias) and dotted with each encoder output; the
  softmax-weighted mix is concatenated with the decoder output, projected back (no bias) and
  passed through tanh before the output layer;
- the decoder's first input is the start symbol (token 0), then the previous token (teacher
  forcing in training, its own previous choice when decoding); decoding is greedy;
- the augmentation is the authors' ``controller_expand`` path (the one that holds data out): the
  pool is shuffled, the last 10% held out, and the training part repeated ``augment_copies``
  (10) times in all: as given once, then 9 copies in which one node per cell has its two
  inputs swapped; targets are min-max normalised over the whole pool;
- the Hamming distance is the mean number of tokens per architecture where the greedy
  reconstruction (from the architecture's own embedding) differs from the input;
- generation runs with the model in eval mode (no dropout) and stops inside a round as soon as
  enough new architectures exist; the seeds are taken in score order, so the best seeds'
  candidates come first.

Choices where we differ, and why:

- The reconstruction NLL is taken over the masked distribution (the tokens the scheme allows at
  each position), the distribution decoding draws from; the authors mask only when decoding.
- New architectures are distinct up to the space's symmetry (``scheme.canonical``); the
  authors compare token strings, so two spellings of one cell could both enter the pool.
- Pairwise accuracy counts the held-out pairs whose targets differ, a tie in the predictions
  counting one half; the authors count target ties one-sidedly.
- A pool whose scores are all equal gets targets of 0.5 (the authors would divide by zero).
- A space without a symmetry is not repeated (copies would only duplicate the data).
- A sequence of odd length (e.g. 5 macro layers: 15 tokens) is padded for the encoder with the
  start/end symbol to a whole number of steps.
- Dropout draws from the trainer's own generator (not the global one), so a resumed training
  draws the same masks. That generator (batch order and dropout masks) is a CPU generator on
  every device: the draws are small, and its state is the same on every device, so the
  trainer's state saved on a GPU loads on a CPU (derive reads a GPU search's EPD there).
- eta runs 1, 2, ..., ``max_eta`` (50) inclusive; the authors' loop stops after 51. The gradient
  does not depend on eta, so it is computed once per generation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..encoding.tokens import BOUNDARY_TOKEN, TokenScheme
from ..errors import EnasError

STATE_VERSION = 1  # bumped when the layout of a trainer's or generator's state changes
# The trainer's random draws (batch order, dropout masks) on every device: see the module doc.
GENERATOR_DEVICE = torch.device("cpu")


@dataclass(frozen=True)
class EPDSettings:
    """Every setting of the EPD, its training and generation (defaults: reference sec. 9)."""

    embedding_size: int = 32  # encoder token embedding
    hidden_size: int = 64  # encoder and decoder LSTM units = the architecture embedding's size
    tokens_per_step: int = 2  # the encoder reads two tokens per LSTM step
    mlp_layers: int = 3  # predictor hidden layers (authors' code)
    mlp_hidden_size: int = 200  # units per predictor hidden layer (authors' code)
    mlp_dropout: float = 0.1  # predictor dropout (authors' code)
    epochs: int = 1000  # training epochs per round
    batch_size: int = 100
    lr: float = 1e-3  # Adam
    weight_decay: float = 1e-4  # Adam's L2 (authors' code)
    grad_clip: float = 5.0  # gradient norm clip (0 = off)
    mse_weight: float = 0.8  # loss = mse_weight x MSE + (1 - mse_weight) x NLL
    augment_copies: int = 10  # the training part in all, counting the original
    holdout_fraction: float = 0.1  # of the pool, for pairwise accuracy and Hamming distance
    top: int = 100  # generation starts from the best ``top`` of the pool
    new_archs: int = 300  # new architectures wanted per generation
    max_eta: int = 50  # step sizes eta = 1, 2, ..., max_eta

    def __post_init__(self) -> None:
        positive = ("embedding_size", "hidden_size", "tokens_per_step", "mlp_hidden_size", "epochs",
                    "batch_size", "augment_copies", "top", "new_archs", "max_eta")
        for name in positive:
            if getattr(self, name) < 1:
                raise EnasError(f"EPD settings: {name} must be >= 1, found {getattr(self, name)}")
        if self.mlp_layers < 0:
            raise EnasError(f"EPD settings: mlp_layers must be >= 0, found {self.mlp_layers}")
        for name in ("mlp_dropout", "holdout_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise EnasError(f"EPD settings: {name} must be in [0, 1), found {getattr(self, name)}")
        if not 0 <= self.mse_weight <= 1:
            raise EnasError(f"EPD settings: mse_weight must be in [0, 1], found {self.mse_weight}")
        if self.lr <= 0:
            raise EnasError(f"EPD settings: lr must be > 0, found {self.lr}")
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise EnasError(f"EPD settings: {name} must be >= 0, found {getattr(self, name)}")


# --------------------------------------------------------------------------------------------
# The model.
# --------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """Tokens (B, L) -> L2-normalised LSTM outputs (B, ceil(L / tokens_per_step), hidden)."""

    def __init__(self, vocab_size: int, settings: EPDSettings):
        super().__init__()
        self.tokens_per_step = settings.tokens_per_step
        self.embedding = nn.Embedding(vocab_size, settings.embedding_size)
        step_width = settings.tokens_per_step * settings.embedding_size  # a step's embeddings, concatenated
        self.lstm = nn.LSTM(step_width, settings.hidden_size, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = -tokens.shape[1] % self.tokens_per_step
        if pad:
            tokens = F.pad(tokens, (0, pad), value=BOUNDARY_TOKEN)
        x = self.embedding(tokens)
        x = x.reshape(x.shape[0], -1, self.tokens_per_step * x.shape[2])
        outputs, _ = self.lstm(x)
        return F.normalize(outputs, dim=-1)


def embed(outputs: torch.Tensor) -> torch.Tensor:
    """The architecture embedding: the mean of the (normalised) encoder outputs, normalised."""
    return F.normalize(outputs.mean(dim=1), dim=-1)


class Predictor(nn.Module):
    """Embedding (B, hidden) -> score (B,) in (0, 1): ReLU MLP with dropout, then a sigmoid."""

    def __init__(self, settings: EPDSettings):
        super().__init__()
        widths = [settings.hidden_size] + [settings.mlp_hidden_size] * settings.mlp_layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.out = nn.Linear(widths[-1], 1)
        self.dropout = settings.mlp_dropout

    def forward(self, embedding: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = embedding
        for layer in self.hidden:
            x = torch.relu(layer(x))
            if self.training and self.dropout > 0:
                # Drawn from the caller's generator (on its own device, see the module doc), so
                # that a resumed training draws the same masks.
                where = generator.device if generator is not None else x.device
                keep = (torch.rand(x.shape, generator=generator, device=where) >= self.dropout).to(x.device)
                x = x * keep / (1 - self.dropout)
        return torch.sigmoid(self.out(x))[:, 0]


class Attention(nn.Module):
    """Decoder outputs (B, T, H) attend over encoder outputs (B, S, H) -> (B, T, H)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.combine = nn.Linear(2 * hidden_size, hidden_size, bias=False)

    def forward(self, h: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.query(h) @ source.transpose(1, 2), dim=-1)
        return torch.tanh(self.combine(torch.cat([weights @ source, h], dim=-1)))


class Decoder(nn.Module):
    """An attention LSTM that emits only the tokens the scheme allows at each position."""

    def __init__(self, scheme: TokenScheme, settings: EPDSettings):
        super().__init__()
        hidden = settings.hidden_size
        self.length = scheme.length
        self.embedding = nn.Embedding(scheme.vocab_size, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.attention = Attention(hidden)
        self.out = nn.Linear(hidden, scheme.vocab_size)
        valid = torch.zeros(scheme.length, scheme.vocab_size, dtype=torch.bool)
        for position, allowed in enumerate(scheme.ranges()):
            valid[position, allowed.start : allowed.stop] = True
        self.register_buffer("valid", valid, persistent=False)  # derived from the scheme

    def _log_probs(self, inputs, state, source, positions: slice):
        """Masked log-probabilities (B, T, V) of the tokens at ``positions``, and the new state."""
        h, state = self.lstm(self.embedding(inputs), state)
        logits = self.out(self.attention(h, source))
        logits = logits.masked_fill(~self.valid[positions], float("-inf"))
        return F.log_softmax(logits, dim=-1), state

    @staticmethod
    def _initial_state(embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = embedding[None].contiguous()  # (layers = 1, B, H)
        return e, e

    def forward(self, targets: torch.Tensor, embedding: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: log-probabilities (B, L, V) of every position given the true prefix."""
        start = targets.new_full((targets.shape[0], 1), BOUNDARY_TOKEN)
        inputs = torch.cat([start, targets[:, :-1]], dim=1)
        log_probs, _ = self._log_probs(inputs, self._initial_state(embedding), source, slice(None))
        return log_probs

    def greedy(self, embedding: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The most likely allowed token at each position, fed back in: tokens (B, L)."""
        state = self._initial_state(embedding)
        token = torch.full((embedding.shape[0], 1), BOUNDARY_TOKEN, dtype=torch.long, device=embedding.device)
        tokens = []
        for position in range(self.length):
            log_probs, state = self._log_probs(token, state, source, slice(position, position + 1))
            token = log_probs.argmax(dim=-1)
            tokens.append(token)
        return torch.cat(tokens, dim=1)


class EPD(nn.Module):
    """Encoder, predictor and decoder of one token scheme."""

    def __init__(self, scheme: TokenScheme, settings: EPDSettings | None = None):
        super().__init__()
        self.scheme = scheme
        self.settings = settings or EPDSettings()
        self.encoder = Encoder(scheme.vocab_size, self.settings)
        self.predictor = Predictor(self.settings)
        self.decoder = Decoder(scheme, self.settings)

    @property
    def device(self) -> torch.device:
        return self.decoder.valid.device

    def tokens_of(self, archs: Sequence[Any]) -> torch.Tensor:
        """The scheme's tokens of ``archs`` as a (B, L) tensor on the model's device."""
        rows = [self.scheme.encode(a) for a in archs]
        return torch.tensor(rows, dtype=torch.long, device=self.device).reshape(len(rows), self.scheme.length)

    def forward(self, tokens: torch.Tensor, generator: torch.Generator | None = None):
        """(predicted scores (B,), teacher-forced log-probabilities (B, L, V))."""
        outputs = self.encoder(tokens)
        embedding = embed(outputs)
        return self.predictor(embedding, generator), self.decoder(tokens, embedding, outputs)

    def predict(self, tokens: torch.Tensor) -> torch.Tensor:
        """Predicted scores (B,)."""
        return self.predictor(embed(self.encoder(tokens)))

    def reconstruct(self, tokens: torch.Tensor) -> torch.Tensor:
        """Greedy decoding of each sequence from its own embedding."""
        outputs = self.encoder(tokens)
        return self.decoder.greedy(embed(outputs), outputs)

    def score_gradient(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder outputs and d(predicted score)/d(outputs), both detached (B, S, H)."""
        with torch.enable_grad():
            outputs = self.encoder(tokens).detach().requires_grad_()
            score = self.predictor(embed(outputs))
            (grad,) = torch.autograd.grad(score.sum(), outputs)  # each score sees its own outputs only
        return outputs.detach(), grad

    @staticmethod
    def move(outputs: torch.Tensor, grad: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs moved by ``eta`` along ``grad`` and re-normalised, and their embedding."""
        moved = F.normalize(outputs + eta * grad, dim=-1)
        return moved, embed(moved)

    def decode(self, outputs: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Greedy tokens (B, L) from an embedding, attending over ``outputs``."""
        return self.decoder.greedy(embedding, outputs)


# --------------------------------------------------------------------------------------------
# Figures.
# --------------------------------------------------------------------------------------------


def pairwise_accuracy(targets: Sequence[float], predictions: Sequence[float]) -> float | None:
    """The fraction of pairs with different targets that the predictions order the same way
    (a tie in the predictions counts one half); None when no pair has different targets."""
    agree, pairs = 0.0, 0
    for i in range(len(targets)):
        for j in range(i + 1, len(targets)):
            if targets[i] == targets[j]:
                continue
            pairs += 1
            if predictions[i] == predictions[j]:
                agree += 0.5
            elif (targets[i] < targets[j]) == (predictions[i] < predictions[j]):
                agree += 1
    return agree / pairs if pairs else None


def hamming_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean number of differing tokens per row of two (B, L) tensors (B >= 1)."""
    return (a != b).sum(dim=1).float().mean().item()


def normalised_scores(scores: Sequence[float]) -> list[float]:
    """Min-max normalised to [0, 1]; all 0.5 when every score is the same."""
    low, high = min(scores), max(scores)
    if high == low:
        return [0.5] * len(scores)
    return [(s - low) / (high - low) for s in scores]


# --------------------------------------------------------------------------------------------
# Training.
# --------------------------------------------------------------------------------------------


class EPDTrainer:
    """One round of EPD training on a scored pool, resumable between epochs.

    ``train(epochs)`` runs up to ``epochs`` more epochs (all remaining ones when None) and
    returns one figures dict per epoch ({"epoch", "loss", "mse", "nll"}); ``evaluate()`` scores
    the held-out part. The model keeps its weights across rounds (a new trainer per round gets
    a fresh optimiser, as in the authors' code); the trainer's state includes them.

    To resume, build a trainer on the same model and call :meth:`load_state_dict`: the model,
    the optimiser, the generator, the progress and the data set (the split and augmented rows
    the constructor built) all come from the state.
    """

    def __init__(self, model: EPD, archs: Sequence[Any], scores: Sequence[float], seed: int):
        if len(archs) != len(scores):
            raise ValueError(f"{len(archs)} architectures but {len(scores)} scores")
        if len(archs) < 2:
            raise EnasError(f"EPD training needs at least 2 scored architectures, found {len(archs)}")
        self.model = model
        self.settings = settings = model.settings
        self.scheme = scheme = model.scheme
        device = model.device
        rng = random.Random(seed)  # the split and the augmentation
        tokens = [scheme.encode(a) for a in archs]
        targets = normalised_scores([float(s) for s in scores])
        order = list(range(len(tokens)))
        rng.shuffle(order)
        holdout = round(len(order) * settings.holdout_fraction)
        train, held = order[: len(order) - holdout], order[len(order) - holdout :]
        train_tokens = [tokens[i] for i in train]
        train_targets = [targets[i] for i in train]
        copies = settings.augment_copies if scheme.symmetric else 1
        for _ in range(copies - 1):
            for i in train:
                train_tokens.append(scheme.augment(tokens[i], rng))
                train_targets.append(targets[i])
        self.train_tokens = _token_tensor(train_tokens, scheme.length, device)
        self.train_targets = torch.tensor(train_targets, dtype=torch.float32, device=device)
        self.holdout_tokens = _token_tensor([tokens[i] for i in held], scheme.length, device)
        self.holdout_targets = torch.tensor([targets[i] for i in held], dtype=torch.float32, device=device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.generator = torch.Generator(GENERATOR_DEVICE).manual_seed(seed)  # batch order and dropout
        self.epoch = 0  # epochs done

    @property
    def done(self) -> bool:
        return self.epoch >= self.settings.epochs

    def train(self, epochs: int | None = None) -> list[dict]:
        remaining = self.settings.epochs - self.epoch
        count = remaining if epochs is None else min(epochs, remaining)
        self.model.train()
        return [self._epoch() for _ in range(count)]

    def _epoch(self) -> dict:
        settings, model = self.settings, self.model
        n = len(self.train_tokens)
        order = torch.randperm(n, generator=self.generator, device=GENERATOR_DEVICE).to(self.train_tokens.device)
        sums = torch.zeros(3, device=self.train_tokens.device)  # loss, mse, nll; read once per epoch
        for first in range(0, n, settings.batch_size):
            batch = order[first : first + settings.batch_size]
            tokens, targets = self.train_tokens[batch], self.train_targets[batch]
            predicted, log_probs = model(tokens, self.generator)
            mse = F.mse_loss(predicted, targets)
            nll = F.nll_loss(log_probs.flatten(0, 1), tokens.flatten())
            loss = settings.mse_weight * mse + (1 - settings.mse_weight) * nll
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            self.optimizer.step()
            sums += torch.stack([loss, mse, nll]).detach() * len(batch)
        self.epoch += 1
        loss, mse, nll = (sums / n).tolist()
        return {"epoch": self.epoch, "loss": loss, "mse": mse, "nll": nll}

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Held-out figures: {"pairwise_accuracy", "hamming", "holdout"} (None where undefined)."""
        figures = {"pairwise_accuracy": None, "hamming": None, "holdout": len(self.holdout_tokens)}
        if not len(self.holdout_tokens):
            return figures
        was_training = self.model.training
        self.model.eval()
        try:
            predicted = self.model.predict(self.holdout_tokens)
            rebuilt = self.model.reconstruct(self.holdout_tokens)
        finally:
            self.model.train(was_training)
        figures["pairwise_accuracy"] = pairwise_accuracy(self.holdout_targets.tolist(), predicted.tolist())
        figures["hamming"] = hamming_distance(rebuilt, self.holdout_tokens)
        return figures

    def state_dict(self) -> dict:
        return {
            "version": STATE_VERSION,
            "scheme": _scheme_key(self.scheme),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "train_tokens": self.train_tokens,
            "train_targets": self.train_targets,
            "holdout_tokens": self.holdout_tokens,
            "holdout_targets": self.holdout_targets,
        }

    def load_state_dict(self, state: dict) -> None:
        _check_state(state, self.scheme, "EPD trainer")
        device = self.model.device
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.epoch = int(state["epoch"])
        for name in ("train_tokens", "train_targets", "holdout_tokens", "holdout_targets"):
            setattr(self, name, state[name].to(device))


# --------------------------------------------------------------------------------------------
# Generation.
# --------------------------------------------------------------------------------------------


class EPDGenerator:
    """New architectures from the best of a scored pool, one eta round per ``step()``.

    ``archs`` holds the new architectures found so far (in the order found); the generation is
    ``done`` when ``settings.new_archs`` exist or eta reached ``settings.max_eta`` (then
    ``len(archs)`` says how many were found). The generator does not change the model, so its
    state holds no weights (save the model with the search): only the seeds, the pool, the
    rounds done and what was found. To resume, build a generator on the same (restored) model
    and call :meth:`load_state_dict`.
    """

    def __init__(self, model: EPD, archs: Sequence[Any], scores: Sequence[float]):
        if len(archs) != len(scores):
            raise ValueError(f"{len(archs)} architectures but {len(scores)} scores")
        self.model = model
        self.scheme = model.scheme
        self.settings = model.settings
        best = sorted(range(len(archs)), key=lambda i: -float(scores[i]))[: self.settings.top]
        self.seed_tokens = model.tokens_of([archs[i] for i in best])
        self.pool_tokens = model.tokens_of(list(archs))
        self.found: list[list[int]] = []
        self.rounds = 0  # eta rounds done; round r uses eta = r
        self._reset_caches()

    def _reset_caches(self) -> None:
        canonical = self.scheme.canonical
        self._taken = {canonical(t) for t in self.pool_tokens.tolist()} | {canonical(t) for t in self.found}
        self._gradient: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def done(self) -> bool:
        return len(self.found) >= self.settings.new_archs or self.rounds >= self.settings.max_eta

    @property
    def archs(self) -> list[Any]:
        return [self.scheme.decode(t) for t in self.found]

    def step(self) -> dict:
        """One eta round: {"eta", "new" (found this round), "found" (in all)}."""
        if self.done:
            raise RuntimeError("generation is done")
        was_training = self.model.training
        self.model.eval()
        try:
            if self._gradient is None:
                self._gradient = self.model.score_gradient(self.seed_tokens)
            eta = float(self.rounds + 1)
            with torch.no_grad():
                candidates = self.model.decode(*self.model.move(*self._gradient, eta)).tolist()
        finally:
            self.model.train(was_training)
        before = len(self.found)
        for tokens in candidates:
            key = self.scheme.canonical(tokens)
            if key not in self._taken:
                self._taken.add(key)
                self.found.append(tokens)
                if len(self.found) >= self.settings.new_archs:
                    break
        self.rounds += 1
        return {"eta": eta, "new": len(self.found) - before, "found": len(self.found)}

    def run(self, rounds: int | None = None) -> list[dict]:
        """Up to ``rounds`` more eta rounds (all when None), stopping when done."""
        figures = []
        while not self.done and (rounds is None or len(figures) < rounds):
            figures.append(self.step())
        return figures

    def state_dict(self) -> dict:
        return {
            "version": STATE_VERSION,
            "scheme": _scheme_key(self.scheme),
            "seed_tokens": self.seed_tokens,
            "pool_tokens": self.pool_tokens,
            "found": _token_tensor(self.found, self.scheme.length, torch.device("cpu")),
            "rounds": self.rounds,
        }

    def load_state_dict(self, state: dict) -> None:
        _check_state(state, self.scheme, "EPD generator")
        device = self.model.device
        self.seed_tokens = state["seed_tokens"].to(device)
        self.pool_tokens = state["pool_tokens"].to(device)
        self.found = state["found"].tolist()
        self.rounds = int(state["rounds"])
        self._reset_caches()


def _token_tensor(rows: list[list[int]], length: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long, device=device).reshape(len(rows), length)


def _scheme_key(scheme: TokenScheme) -> dict:
    return {"space": scheme.space, "length": scheme.length, "vocab_size": scheme.vocab_size}


def _check_state(state: dict, scheme: TokenScheme, what: str) -> None:
    if state.get("version") != STATE_VERSION:
        raise EnasError(f"{what} state: version {state.get('version')!r} is not {STATE_VERSION}")
    if state.get("scheme") != _scheme_key(scheme):
        raise EnasError(
            f"{what} state: it was saved for {state.get('scheme')!r}, not {_scheme_key(scheme)!r}; "
            "resume with the settings the run was started with"
        )
