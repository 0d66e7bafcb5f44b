"""Language-model batches: a token split cut into parallel streams, read in BPTT windows.

**Streams.** A split of N tokens becomes ``batch_size`` contiguous streams of
L = N // batch_size tokens each, row b holding tokens ``b*L .. b*L + L - 1`` (the last
N - batch_size*L tokens are dropped), as the reference's ``input_producer`` and AWD-LSTM's
``batchify`` do. The (batch_size, L) int64 tensor lives on the device; a window is a slice of
it, so nothing per token runs in Python.

**Windows.** A window starting at column s of length n gives ``x = streams[:, s:s+n]`` and the
targets ``y = streams[:, s+1:s+n+1]`` (the next token of each position), both (batch_size, n),
batch first, as the reference's ``x``/``y``. Iterating yields :class:`Window` ``(x, y, seq_len)``;
the reference scales the learning rate by ``seq_len / bptt``.

- ``random_length=False`` (evaluation): windows of ``bptt`` tokens at 0, bptt, 2*bptt, ...; the
  last one is shorter and holds the rest, so every target of every stream is predicted once
  (weight each window's mean loss by ``seq_len`` for a perplexity over tokens).
  ``drop_last=True`` keeps the full windows only, ``(L - 1) // bptt`` of them, as the
  reference's fixed-length producer.
- ``random_length=True`` (training, the reference's ``random_len=True``): each window's
  length is drawn (:func:`draw_length`): a base of ``bptt`` with probability 0.95, else
  ``bptt / 2``; plus 5 times a standard normal redrawn until it lies within 2 (TensorFlow's
  ``truncated_normal``); cut to an integer toward zero; at most ``bptt + 20`` (the reference's
  cap, which the truncation already ensures); at least 1 (ours: the reference has no lower
  bound, and its draw reaches zero or below for bptt < 22); and at most what is left of the
  stream. With bptt = 35 lengths are 25..44 (base 35) or 7..27 (base 17.5). The epoch ends
  after the window that ends within 3 tokens of the stream end (the reference's
  ``should_reset``: end >= L - 3), so up to 2 trailing tokens per stream go unused in an epoch.

**Epochs.** An epoch is one pass along the streams: the reference's epoch, which it counts each
time ``should_reset`` fires. ``len()`` is the exact number of windows in the current epoch:
each epoch's lengths are drawn when it starts, from a generator seeded by (seed, epoch), so the
count varies a little from epoch to epoch. The mean length is about 0.96 bptt (33.6 for 35), so
an epoch has a few percent more windows than ``(L - 1) // bptt``, the reference's
``num_batches_per_epoch`` (PTB, batch 128, bptt 35: 214 to 216 windows against 207), which it
multiplies by its epoch count to get its step budget; that figure is
:attr:`TextBatches.nominal_windows`.

**Hidden state.** The reference carries the recurrent state from window to window and zeroes it
at the start of every epoch (``reset_batch_states`` with ``reset_start_idx``);
:attr:`TextBatches.at_epoch_start` is True exactly when the next window is the first of an
epoch. The state itself is the caller's: save it beside :meth:`TextBatches.state_dict` to resume
mid-epoch exactly. In evaluation the reference's search starts every validation window from a
zero state, while its final training carries the state through valid and through test (batch
1, one token per window, which with the state carried equals any window length).

**Resume.** :meth:`TextBatches.state_dict` holds the seed, epoch and position (plus the shape
it was made for, checked on load): the epoch's lengths are rebuilt from (seed, epoch), so no
generator bytes need saving, and a reloaded loader continues with exactly the windows it would
have given. The dict holds numbers and a bool only (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import torch

from ..errors import EnasError
from .loader import EPOCH_SEED_STRIDE

LONG_BASE_PROBABILITY = 0.95  # the reference's chance that a window's base length is bptt ...
SHORT_BASE_FRACTION = 0.5  # ... else bptt / 2
LENGTH_STD = 5.0  # the spread of the length around its base, in tokens
TRUNCATION_STDS = 2.0  # a normal beyond 2 standard deviations is redrawn (TF truncated_normal)
LENGTH_CAP_OVER_BPTT = 20  # the reference's upper bound: bptt + 20
MIN_LENGTH = 1  # our lower bound; the reference has none
EPOCH_END_MARGIN = 3  # an epoch ends after a window ending at or past L - 3 (the reference's)


class Window(NamedTuple):
    """One BPTT window: inputs and next-token targets, both (batch, seq_len) int64."""

    x: torch.Tensor
    y: torch.Tensor
    seq_len: int


def make_streams(tokens: torch.Tensor, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(batch_size, N // batch_size) int64 on ``device``: the split cut into contiguous rows."""
    if tokens.dim() != 1:
        raise ValueError(f"expected a 1-D token tensor, got shape {tuple(tokens.shape)}")
    if batch_size < 1:
        raise EnasError(f"batch size {batch_size}: must be at least 1")
    length = tokens.numel() // batch_size
    if length < 2:
        raise EnasError(
            f"{tokens.numel()} tokens cut into {batch_size} streams leave {length} per stream, fewer "
            "than the 2 a window needs (an input and its target); lower the batch size"
        )
    rows = tokens[: batch_size * length].reshape(batch_size, length)
    return rows.to(device=device, dtype=torch.int64).contiguous()


def draw_length(bptt: int, generator: torch.Generator) -> int:
    """One random window length as the reference draws it (see the module doc), before the stream end."""
    base = bptt if torch.rand((), generator=generator).item() < LONG_BASE_PROBABILITY \
        else bptt * SHORT_BASE_FRACTION
    normal = torch.randn((), generator=generator).item()
    while abs(normal) > TRUNCATION_STDS:
        normal = torch.randn((), generator=generator).item()
    length = int(base + LENGTH_STD * normal)  # toward zero, as TensorFlow's cast to int32
    return max(MIN_LENGTH, min(length, bptt + LENGTH_CAP_OVER_BPTT))


def random_schedule(stream_len: int, bptt: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """(start, length) of each window of one random-length epoch over streams of ``stream_len``."""
    windows, start = [], 0
    while True:
        length = min(draw_length(bptt, generator), stream_len - 1 - start)
        windows.append((start, length))
        start += length
        if start >= stream_len - EPOCH_END_MARGIN:
            return windows


def fixed_schedule(stream_len: int, bptt: int, drop_last: bool = False) -> list[tuple[int, int]]:
    """(start, length) of windows of ``bptt`` covering every target; the short last one optional."""
    targets = stream_len - 1
    windows = [(start, min(bptt, targets - start)) for start in range(0, targets, bptt)]
    return [w for w in windows if w[1] == bptt] if drop_last else windows


class TextBatches:
    """Iterates the :class:`Window` s of one epoch at a time over a token split; see the module doc.

    ``tokens`` is a 1-D id tensor (a :class:`~enastool.data.text.Corpus` split); it is cut into
    ``batch_size`` streams on ``device``. ``random_length`` chooses the reference's training
    windows; ``seed`` feeds the length draws (nothing else is random).
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        batch_size: int,
        bptt: int,
        device: torch.device | str = "cpu",
        random_length: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ):
        if bptt < 1:
            raise EnasError(f"bptt {bptt}: must be at least 1")
        self.device = torch.device(device)
        self.streams = make_streams(tokens, batch_size, self.device)
        self.batch_size, self.stream_len = self.streams.shape
        self.bptt = int(bptt)
        self.random_length = bool(random_length)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0  # windows already handed out in this epoch
        self._generator = torch.Generator()  # CPU: lengths are host integers that slice the streams
        self._schedule = self._schedule_of(self.epoch)

    @property
    def nominal_windows(self) -> int:
        """``(L - 1) // bptt``: the reference's windows per epoch, which sizes its step budget."""
        return (self.stream_len - 1) // self.bptt

    @property
    def at_epoch_start(self) -> bool:
        """True when the next window is the first of an epoch: zero the hidden state before it."""
        self._roll_over()
        return self.position == 0

    def __len__(self) -> int:
        """Windows in the current epoch (random-length epochs differ slightly in count)."""
        self._roll_over()
        return len(self._schedule)

    def __iter__(self) -> Iterator[Window]:
        """The rest of the current epoch (all of it unless resumed mid-epoch)."""
        self._roll_over()
        schedule = self._schedule
        while self.position < len(schedule):
            start, length = schedule[self.position]
            self.position += 1
            yield self.window(start, length)
        self._roll_over()

    def next_window(self) -> Window:
        """The next window, rolling over into the next epoch after the last one of this one
        (a loop that takes windows one at a time, as the search and final training do)."""
        self._roll_over()
        if not self._schedule:
            raise EnasError(no_window_message(self))
        start, length = self._schedule[self.position]
        self.position += 1
        return self.window(start, length)

    def window(self, start: int, length: int) -> Window:
        """The window of ``length`` tokens at column ``start`` (copies, not views of the streams)."""
        x = self.streams[:, start:start + length].contiguous()
        y = self.streams[:, start + 1:start + length + 1].contiguous()
        return Window(x, y, length)

    def state_dict(self) -> dict:
        """Seed, epoch and position, and the shape they belong to: enough to resume exactly."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                "batch_size": self.batch_size, "stream_len": self.stream_len, "bptt": self.bptt,
                "random_length": self.random_length}

    def load_state_dict(self, state: dict) -> None:
        saved = (int(state["batch_size"]), int(state["stream_len"]), int(state["bptt"]), bool(state["random_length"]))
        mine = (self.batch_size, self.stream_len, self.bptt, self.random_length)
        if saved != mine:
            raise EnasError(
                "text batch state was saved for batch {}, streams of {} tokens, bptt {}, random lengths "
                "{}; this loader has batch {}, {} tokens, bptt {}, random lengths {}: resume with the "
                "run's own data set and settings".format(*saved, *mine)
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._schedule = self._schedule_of(self.epoch)

    def _roll_over(self) -> None:
        if self.position >= len(self._schedule) > 0:
            self.epoch += 1
            self.position = 0
            self._schedule = self._schedule_of(self.epoch)

    def _schedule_of(self, epoch: int) -> list[tuple[int, int]]:
        if not self.random_length:
            return fixed_schedule(self.stream_len, self.bptt, self.drop_last)
        self._generator.manual_seed(self.seed * EPOCH_SEED_STRIDE + epoch)
        return random_schedule(self.stream_len, self.bptt, self._generator)


def no_window_message(batches: TextBatches) -> str:
    return (f"streams of {batches.stream_len} tokens hold no full window of bptt {batches.bptt}; "
            "lower bptt or the batch size, or keep the last short window")


def endless_windows(batches: TextBatches) -> Iterator[Window]:
    """Windows forever, epoch after epoch (the controller's validation reward windows)."""
    if len(batches) == 0:
        raise EnasError(no_window_message(batches))
    return _forever(batches)


def _forever(batches: TextBatches) -> Iterator[Window]:
    while True:
        yield from batches
