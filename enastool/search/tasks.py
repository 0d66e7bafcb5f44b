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
micro, text for rnn) to its task class; a new kind of data registers its task here. Tasks are built by the loop and by derive with the same config,
so a derive scores with exactly the data and network the search trained.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable, ClassVar, Iterator

import torch
import torch.nn.functional as F

from ..data import Augment, DatasetInfo, DeviceLoader, Split, channel_stats, endless, load_dataset
from ..encoding.spaces import IMAGES, SPACES, data_kind
from ..errors import EnasError
from ..nn.supernet import SUPERNETS
from ..train.device import autocast
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


TASKS: dict[str, type[SearchTask]] = {IMAGES: ImageTask}


def build_task(config, device, dtype, channels_last) -> SearchTask:
    """The task of ``config.space``'s data kind, built (data, supernet) from ``config``."""
    kind = data_kind(config.space)
    try:
        cls = TASKS[kind]
    except KeyError:
        raise EnasError(f"search: no search task for {kind} (space {config.space}) yet") from None
    return cls(config, device, dtype, channels_last)
