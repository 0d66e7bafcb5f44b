"""What a search needs from the data and the networks of its space: a *task*.

The search loop (``loop.py``) is the same for every space and strategy: steps of the shared
weights, strategy updates, epoch records, checkpoints, exact resume. Everything that depends on
what the networks learn lives in a task, one class per kind of data:

- the data: the training batches of an epoch (and their position, for resume), the validation
  batches that rewards and scores read;
- the supernet of the config's space, built at the config's size;
- the loss of one training step of a child, and the running figures it adds to;
- the reward of an architecture (next validation batch, shared weights, no grad), the
  scores derive ranks candidates by, and one fixed scoring batch of a given size (nao scores
  its pool on it);
- the optimiser's parameter groups (who is decayed, and how).

``TASKS`` maps each data kind (``enastool.encoding.spaces.DATA_KINDS``: images for macro and
micro, text for rnn) to its task class; a new kind of data registers its task here. Tasks are
built by the loop and by derive with the same config, so a derive scores with exactly the
data and network the search trained.

A score is one number, higher is better, that derive ranks by; ``score_figures`` says what
it means in the task's own terms (the text task's score is 80 / perplexity, and its figure
is the perplexity), so that derive and evaluate can show both.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Callable, ClassVar, Iterator

import torch
import torch.nn.functional as F

from ..data import (
    Augment, DatasetInfo, DeviceLoader, Split, channel_stats, endless, load_corpus, load_dataset,
    Window,
)
from ..encoding.spaces import IMAGES, SPACES, TEXT, data_kind
from ..errors import EnasError
from ..nn.recurrent import RecurrentSupernet, activation_penalty
from ..nn.supernet import SUPERNETS
from ..train.device import autocast
from ..train.lm import drop_rates, perplexity, text_batches, token_loss
from ..train.trainer import parameter_groups

RUN_KIND = "search"
VALID_SEED_OFFSET = 1  # the validation batches are shuffled by their own stream

Callback = Callable[[dict], None]


# ---------------------------------------------------------------------------- architectures
# The size of a space's architectures: (config field, keyword of the arch class's ``sample``,
# arch attribute, what the number counts).
ARCH_SIZES: dict[str, tuple[str, str, str, str]] = {
    "macro": ("layers", "num_layers", "num_layers", "layers"),
    "micro": ("num_blocks", "num_blocks", "num_blocks", "blocks per cell"),
    "rnn": ("num_nodes", "num_nodes", "num_nodes", "nodes"),
}


def uniform_arch(config, rng: random.Random):
    """A uniformly random architecture of the config's space and size."""
    field, keyword, _, _ = ARCH_SIZES[config.space]
    return SPACES[config.space].sample(rng, **{keyword: getattr(config, field)})


def check_archs(config, archs, where: str) -> None:
    """EnasError naming the first architecture a supernet of ``config`` cannot run."""
    field, _, attribute, noun = ARCH_SIZES[config.space]
    for number, arch in enumerate(archs, start=1):
        space = getattr(arch, "space", None)
        if space != config.space:
            raise EnasError(
                f"architecture {number} is a {space or type(arch).__name__} architecture, but "
                f"{where} searched the {config.space} space"
            )
        size, expected = getattr(arch, attribute), getattr(config, field)
        if size != expected:
            raise EnasError(
                f"architecture {number} has {size} {noun}, but {where} searched {config.space} "
                f"architectures of {expected} {noun}"
            )


# ---------------------------------------------------------------------------- the interface
class SearchTask:
    """The data, supernet and loss of one kind of search; built from a resolved SearchConfig.

    After construction: ``supernet`` (on the device, in the chosen memory format),
    ``steps_per_epoch``, ``unit`` (what the throughput counts: images, tokens) and
    ``network`` (the plain numbers a checkpoint keeps to rebuild the supernet).
    """

    unit: ClassVar[str] = "images"

    def __init__(self, config, device: torch.device, dtype: torch.dtype | None, channels_last: bool):
        self.config = config
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last

    # ------------------------------------------------------------------ training
    def train_batches(self) -> Iterator:
        """The rest of the current epoch's training batches."""
        raise NotImplementedError

    def lr_factor(self, batch) -> float:
        """Multiplies the scheduled learning rate for this batch (1 unless the task scales it)."""
        return 1.0

    def train_loss(self, batch, strategy, child, epoch: float):
        """(loss to backpropagate, loss to report, correct count or None, examples) of one
        step of the shared weights on ``child`` (inside autocast; the loop does backward)."""
        raise NotImplementedError

    def parameter_groups(self) -> list[dict]:
        """The optimiser's parameter groups (weight decay per group)."""
        raise NotImplementedError

    def figures(self, reading: dict) -> dict:
        """The training figures of a meter reading (``loss``, ``acc``, ``seconds``) for a record."""
        raise NotImplementedError

    # ------------------------------------------------------------------ validation
    def reward(self, arch) -> torch.Tensor:
        """The quality of ``arch`` on the next validation batch (a device scalar, higher is
        better), with the shared weights, in eval mode, without grad."""
        raise NotImplementedError

    def reward_figures(self, rewards: list[float]) -> dict:
        """What a list of rewards says, for records (e.g. the mean validation accuracy)."""
        raise NotImplementedError

    def score_data(self, batches: int | None) -> list:
        """The first ``batches`` validation batches in a fixed order (None: the whole split),
        the same for every candidate so that scores compare."""
        raise NotImplementedError

    def describe_score_data(self, data: list) -> str:
        """What ``score_data`` holds, in words (for progress displays)."""
        raise NotImplementedError

    def score_batch(self, examples: int, seed: int) -> list:
        """ONE fixed validation batch of ``examples`` examples (the task's unit: images; a
        text task chooses what an example is), drawn without replacement by a generator
        seeded with ``seed``, in the form ``scores`` reads: every architecture scored on it is
        scored on the same data, and batch statistics span all of it (nao scores its pool so).
        EnasError when the validation split cannot give that many."""
        raise NotImplementedError(f"{type(self).__name__} gives no fixed scoring batch")

    def scores(self, archs, data: list, callback: Callback | None = None) -> list[dict]:
        """One dict per architecture: ``score`` (higher is better) and the figures behind it."""
        raise NotImplementedError

    @classmethod
    def score_figures(cls, score: float) -> dict:
        """What a score says in the task's own terms, beyond the score itself (for display)."""
        return {}

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------- images
def search_data(config) -> tuple[Split, Split, DatasetInfo]:
    """(train, valid, info) of an image search: the data set's search cut, or ``val_size``'s.

    With ``val_size`` the last ``val_size`` images of train + valid are held out (for CIFAR-10
    that is the end of the training batches, as the authors did) and the normalisation
    statistics are recomputed on the new training part.
    """
    splits = load_dataset(config.dataset, config.data_dir, purpose=RUN_KIND)
    train, valid, info = splits.train, splits.valid, splits.info
    if config.val_size is not None:
        images = torch.cat([train.images, valid.images])
        labels = torch.cat([train.labels, valid.labels])
        if config.val_size >= images.shape[0]:
            raise EnasError(
                f"val_size = {config.val_size} leaves no training images of the "
                f"{images.shape[0]} in {config.dataset}; lower it"
            )
        cut = images.shape[0] - config.val_size
        train, valid = Split(images[:cut], labels[:cut]), Split(images[cut:], labels[cut:])
        mean, std = channel_stats(train.images)
        info = replace(info, mean=mean, std=std)
    return train, valid, info


class ImageTask(SearchTask):
    """Image classification (macro and micro spaces): cross-entropy, accuracy rewards.

    Training batches come from the ``train`` split, shuffled and augmented; rewards read the
    next batch of the shuffled, unaugmented ``valid`` split (all batches of one size: the
    supernets' batch norm uses batch statistics); derive scores read its first batches in a
    fixed order. The test split is never read.
    """

    unit = "images"

    def __init__(self, config, device, dtype, channels_last):
        super().__init__(config, device, dtype, channels_last)
        train, valid, self.info = search_data(config)
        self.valid_split = valid
        supernet = SUPERNETS[config.space](config, self.info.channels, self.info.num_classes)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.supernet = supernet.to(device, memory_format=memory_format)
        self.network = {"in_channels": self.info.channels, "num_classes": self.info.num_classes}
        common = dict(device=device, mean=self.info.mean, std=self.info.std, channels_last=channels_last)
        augment = Augment(pad=config.augment_pad, flip=config.augment_flip, cutout=config.cutout)
        self.train_loader = DeviceLoader(
            *train, batch_size=config.batch_size, train=True, augment=augment, drop_last=True,
            seed=config.seed, **common,
        )
        self.valid_loader = DeviceLoader(
            *valid, batch_size=config.batch_size, train=False, shuffle=True, drop_last=True,
            seed=config.seed + VALID_SEED_OFFSET, **common,
        )
        self._common = common
        for loader, split in ((self.train_loader, "training"), (self.valid_loader, "validation")):
            if len(loader) == 0:
                raise EnasError(
                    f"--batch-size {config.batch_size} is larger than the {loader.num_examples} "
                    f"{split} images of {config.dataset}; lower it"
                )
        self.steps_per_epoch = len(self.train_loader)
        self._valid_batches: Iterator | None = None

    # ------------------------------------------------------------------ training
    def train_batches(self):
        return iter(self.train_loader)

    def train_loss(self, batch, strategy, child, epoch):
        x, y = batch
        logits = strategy.logits(self.supernet, x, child, epoch).float()
        loss = F.cross_entropy(logits, y)
        return loss, loss.detach(), (logits.detach().argmax(dim=1) == y).sum(), y.shape[0]

    def parameter_groups(self):
        return parameter_groups(self.supernet, self.config.l2)

    def figures(self, reading):
        return {"loss": reading["loss"], "acc": reading["acc"]}

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def reward(self, arch) -> torch.Tensor:
        if self._valid_batches is None:  # from the loader's (possibly restored) position
            self._valid_batches = endless(self.valid_loader)
        x, y = next(self._valid_batches)
        with autocast(self.device, self.dtype):
            logits = self.supernet(x, arch)
        return (logits.argmax(dim=1) == y).float().mean()

    def reward_figures(self, rewards):
        return {"valid_acc": sum(rewards) / len(rewards)}

    def score_data(self, batches):
        loader = DeviceLoader(*self.valid_split, batch_size=self.config.batch_size, train=False,
                              drop_last=False, **self._common)
        data = []
        for x, y in loader:
            if batches is not None and len(data) == batches:
                break
            data.append((x, y))
        return data

    def describe_score_data(self, data):
        return f"{sum(y.shape[0] for _, y in data)} validation images"

    def score_batch(self, examples, seed):
        images, labels = self.valid_split
        available = labels.shape[0]
        if not 2 <= examples <= available:  # batch statistics need two images at least
            raise EnasError(
                f"a scoring batch of {examples} images does not fit the {available} validation "
                f"images of {self.config.dataset} (2..{available})"
            )
        chosen = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:examples]
        chosen = chosen.sort().values  # the split's order: the same batch whatever the draw order
        loader = DeviceLoader(images[chosen], labels[chosen], batch_size=examples, train=False,
                              shuffle=False, drop_last=False, **self._common)
        return list(loader)

    @torch.no_grad()
    def scores(self, archs, data, callback=None):
        images = sum(y.shape[0] for _, y in data)
        correct = []
        for number, arch in enumerate(archs, start=1):
            total = torch.zeros((), dtype=torch.int64, device=self.device)
            for x, y in data:
                with autocast(self.device, self.dtype):
                    logits = self.supernet(x, arch)
                total += (logits.argmax(dim=1) == y).sum()
            correct.append(total)
            if callback is not None:
                callback({"kind": "step", "step": number})
        counts = torch.stack(correct).tolist() if correct else []
        return [{"score": c / images, "valid_acc": c / images, "images": images} for c in counts]

    # ------------------------------------------------------------------ resume
    def state_dict(self):
        return {"train_loader": self.train_loader.state_dict(), "valid_loader": self.valid_loader.state_dict()}

    def load_state_dict(self, state):
        self.train_loader.load_state_dict(state["train_loader"])
        self.valid_loader.load_state_dict(state["valid_loader"])
        self._valid_batches = None


# ---------------------------------------------------------------------------- text
REWARD_CONSTANT = 80.0  # reward (and derive score) = 80 / validation perplexity (reference sec. 8)


class TextTask(SearchTask):
    """Language modelling (rnn space): the reference's search (enas_lm ``child.py``).

    - Training: the train split cut into ``batch_size`` parallel streams, read in windows of
      random length around ``bptt`` (``TextBatches``); the learning rate of each step is scaled
      by ``seq_len / bptt``. The hidden state is carried from window to window (detached) and
      zeroed whenever the stream starts a new pass, as the reference. A loop epoch is the
      reference's step budget per epoch, ``nominal_windows`` windows of the endless stream (a
      pass is about 4 % longer: random windows average 0.96 bptt).
    - Loss: cross-entropy + ``l2 * sum(w^2)`` over W0 and the matrices the sampled cell used
      (``RecurrentSupernet.l2_penalty``) + the activation penalties (``alpha``, ``beta``); the
      optimiser decays nothing itself. The strategy's child is run directly: ``oneshot``,
      the one strategy whose forward differs, is refused for rnn when the config resolves.
    - Reward: 80 / perplexity of the child on the next validation window (``batch_size``
      streams, ``bptt`` tokens, fixed windows), from a zero state, shared weights, eval mode
      (no dropout), no grad. The validation windows cycle through the valid split.
    - Derive scores: the same on the first ``batches`` validation windows (None: the whole
      split, its short last window included), each from a zero state, the cross-entropy summed
      over every token: score = 80 / perplexity, figure ``valid_ppl``.
    - Scoring batch (nao): an example is a segment of ``bptt`` validation tokens (and its
      next-token targets); ``score_batch`` draws that many of the split's non-overlapping
      segments and stacks them into ONE window, every row read from a zero state, so that
      ``nao_score_examples`` means the same for text as for images (the NAO-WS authors' 500).

    The test split is never read.
    """

    unit = "tokens"

    def __init__(self, config, device, dtype, channels_last):
        super().__init__(config, device, dtype, channels_last)
        corpus = load_corpus(config.dataset, config.data_dir)
        self.corpus = corpus
        self.info = corpus.info
        self.train_stream = text_batches(corpus, "train", config.batch_size, config.bptt, device,
                                         random_length=True, seed=config.seed)
        self.valid_stream = text_batches(corpus, "valid", config.batch_size, config.bptt, device,
                                         drop_last=True)
        for split, windows in (("train", self.train_stream.nominal_windows), ("valid", len(self.valid_stream))):
            if windows == 0:
                raise EnasError(
                    f"--batch-size {config.batch_size} and --bptt {config.bptt} leave no full window in "
                    f"the {corpus.info.tokens[split]} {split} tokens of {config.dataset}; lower them"
                )
        self.supernet = RecurrentSupernet(
            corpus.info.vocab_size, num_nodes=config.num_nodes, hidden=config.hidden_size,
            drop=drop_rates(config), init_range=config.init_range,
        ).to(device)
        self.network = {"vocab_size": corpus.info.vocab_size, "corpus_digest": corpus.info.digest}
        self.steps_per_epoch = self.train_stream.nominal_windows
        self.hidden = self._zero_state()  # carried between training windows (float32)
        self.windows_taken = 0  # training windows handed out since the start of the run

    # ------------------------------------------------------------------ training
    def train_batches(self):
        end = (self.windows_taken // self.steps_per_epoch + 1) * self.steps_per_epoch
        while self.windows_taken < end:
            if self.train_stream.at_epoch_start:
                self.hidden = self._zero_state()  # a new pass over the training streams
            window = self.train_stream.next_window()
            self.windows_taken += 1
            yield window

    def lr_factor(self, batch) -> float:
        return batch.seq_len / self.config.bptt

    def train_loss(self, batch, strategy, child, epoch):
        config = self.config
        output = self.supernet(batch.x, child, state=self.hidden)
        loss = token_loss(output.logits, batch.y)
        total = (loss + config.l2 * self.supernet.l2_penalty(child)
                 + activation_penalty(output.outputs.float(), config.alpha, config.beta))
        self.hidden = output.state.detach().float()
        return total, loss.detach(), None, batch.y.numel()

    def _zero_state(self) -> torch.Tensor:
        return torch.zeros(self.config.batch_size, self.config.hidden_size, device=self.device)

    def parameter_groups(self):
        # The weight decay is in the loss (l2 * sum(w^2) of the used matrices), as the reference.
        return [{"params": [p for p in self.supernet.parameters() if p.requires_grad], "weight_decay": 0.0}]

    def figures(self, reading):
        return {"loss": reading["loss"], "ppl": perplexity(reading["loss"])}

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def reward(self, arch) -> torch.Tensor:
        window = self.valid_stream.next_window()
        with autocast(self.device, self.dtype):
            output = self.supernet(window.x, arch)
        return REWARD_CONSTANT / torch.exp(token_loss(output.logits, window.y))

    def reward_figures(self, rewards):
        # Every reward window has the same token count: the mean log perplexity is the log
        # perplexity over all the tokens read.
        mean_log = sum(math.log(REWARD_CONSTANT / r) for r in rewards) / len(rewards)
        return {"valid_ppl": perplexity(mean_log)}

    def score_data(self, batches):
        stream = text_batches(self.corpus, "valid", self.config.batch_size, self.config.bptt, self.device)
        data = []
        for window in stream:
            if batches is not None and len(data) == batches:
                break
            data.append(window)
        return data

    def score_batch(self, examples, seed):
        tokens, length = self.corpus.valid, self.config.bptt
        available = (tokens.numel() - 1) // length  # segments with all their targets
        if not 2 <= examples <= available:
            raise EnasError(
                f"a scoring batch of {examples} segments of {length} tokens does not fit the "
                f"{tokens.numel()} validation tokens of {self.config.dataset} (2..{available})"
            )
        chosen = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:examples]
        starts = (chosen.sort().values * length).tolist()  # the split's order, as for images
        x = torch.stack([tokens[s:s + length] for s in starts])
        y = torch.stack([tokens[s + 1:s + length + 1] for s in starts])
        return [Window(x.to(self.device), y.to(self.device), length)]

    def describe_score_data(self, data):
        return f"{sum(w.y.numel() for w in data)} validation tokens"

    @torch.no_grad()
    def scores(self, archs, data, callback=None):
        tokens = sum(w.y.numel() for w in data)
        sums = []
        for number, arch in enumerate(archs, start=1):
            total = torch.zeros((), dtype=torch.float64, device=self.device)
            for window in data:
                with autocast(self.device, self.dtype):
                    output = self.supernet(window.x, arch)
                total += token_loss(output.logits, window.y, reduction="sum").double()
            sums.append(total)
            if callback is not None:
                callback({"kind": "step", "step": number})
        losses = (torch.stack(sums) / tokens).tolist() if sums else []
        results = []
        for loss in losses:
            ppl = perplexity(loss)
            results.append({"score": REWARD_CONSTANT / ppl, "valid_ppl": ppl, "tokens": tokens})
        return results

    @classmethod
    def score_figures(cls, score):
        return {"valid_ppl": REWARD_CONSTANT / score if score > 0 else math.inf}

    # ------------------------------------------------------------------ resume
    def state_dict(self):
        return {
            "train_stream": self.train_stream.state_dict(),
            "valid_stream": self.valid_stream.state_dict(),
            "hidden": self.hidden,
            "windows_taken": self.windows_taken,
        }

    def load_state_dict(self, state):
        self.train_stream.load_state_dict(state["train_stream"])
        self.valid_stream.load_state_dict(state["valid_stream"])
        self.hidden = state["hidden"].to(self.device)
        self.windows_taken = int(state["windows_taken"])


TASKS: dict[str, type[SearchTask]] = {IMAGES: ImageTask, TEXT: TextTask}


def score_figures(space: str, score: float) -> dict:
    """What a derive score of ``space`` says in its task's own terms (e.g. valid_ppl)."""
    return TASKS[data_kind(space)].score_figures(score)


def build_task(config, device, dtype, channels_last) -> SearchTask:
    """The task of ``config.space``'s data kind, built (data, supernet) from ``config``."""
    kind = data_kind(config.space)
    try:
        cls = TASKS[kind]
    except KeyError:
        raise EnasError(f"search: no search task for {kind} (space {config.space}) yet") from None
    return cls(config, device, dtype, channels_last)
