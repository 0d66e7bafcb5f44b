"""Dataset types and the registry of data sets by name.

A data set arrives as three splits of uint8 images (N, C, H, W) and int64 labels. ``purpose``
decides how they are cut, the way the ENAS authors did:

- ``"search"``: train on part of the training set, reward/score architectures on the held-out
  rest (``valid``); the test set is never looked at.
- ``"final"``: train on the whole training set; ``valid`` *is* the test set (the authors report
  test accuracy during final training). Nothing is selected on it: the architecture was fixed
  by the search, which never saw these images.

The per-channel mean and std in :class:`DatasetInfo` are computed on the ``train`` split of the
chosen purpose, so no statistic leaks from the held-out images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from ..errors import EnasError
from . import cifar10, digits

PURPOSES = ("search", "final")
PIXEL_MAX = 255.0
NUM_PIXEL_VALUES = 256
# Where data sets live when no directory is given; the environment variable overrides it.
DATA_DIR_ENV = "ENASTOOL_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/enastool/data")


class Split(NamedTuple):
    """One split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    @property
    def num_examples(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DatasetInfo:
    """Shape and normalisation of a data set; ``mean``/``std`` are per channel, in 0..1 units."""

    name: str
    channels: int
    size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class Splits:
    """The three splits of one data set for one purpose, with its info."""

    train: Split
    valid: Split
    test: Split
    info: DatasetInfo
    purpose: str

    def sizes(self) -> dict[str, int]:
        return {name: getattr(self, name).num_examples for name in ("train", "valid", "test")}


@dataclass(frozen=True)
class DatasetSource:
    """A registered data set: ``read(data_dir, purpose)`` returns (train, valid, test) pairs."""

    name: str
    description: str
    num_classes: int
    needs_files: bool
    read: Callable[[Path, str], tuple]


DATASETS = {
    "digits": DatasetSource(
        "digits", "scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)",
        digits.NUM_CLASSES, needs_files=False, read=digits.read_digits,
    ),
    "cifar10": DatasetSource(
        "cifar10", "CIFAR-10 python pickle batches (50,000 train + 10,000 test, 32x32 RGB)",
        cifar10.NUM_CLASSES, needs_files=True, read=cifar10.read_cifar10_splits,
    ),
}


def dataset_names() -> tuple[str, ...]:
    return tuple(DATASETS)


def default_data_dir() -> Path:
    """``$ENASTOOL_DATA_DIR`` if set, else ``~/.cache/enastool/data``."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), in 0..1 units.

    Computed from a 256-bin histogram per channel: exact, and it never materialises a float
    copy of the whole set (CIFAR-10 as float64 would be 1.2 GB).
    """
    values = torch.arange(NUM_PIXEL_VALUES, dtype=torch.float64) / PIXEL_MAX
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=NUM_PIXEL_VALUES)
        weights = counts.to(torch.float64) / counts.sum()
        mean = float((weights * values).sum())
        variance = float((weights * (values - mean) ** 2).sum())
        means.append(mean)
        stds.append(variance**0.5)
    return tuple(means), tuple(stds)


def load_dataset(name: str, data_dir: str | Path | None = None, purpose: str = "search") -> Splits:
    """Load data set ``name`` cut for ``purpose`` ("search" or "final"); see the module doc."""
    source = DATASETS.get(str(name).strip().lower())
    if source is None:
        raise EnasError(f"unknown data set {name!r}: expected one of {', '.join(DATASETS)}")
    if purpose not in PURPOSES:
        raise EnasError(f"data purpose {purpose!r}: expected one of {', '.join(PURPOSES)}")
    if data_dir is not None and not source.needs_files:
        raise EnasError(
            f"--data-dir {data_dir}: the {source.name} data set needs no files ({source.description}); "
            "drop --data-dir, or use --dataset cifar10"
        )
    folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    train, valid, test = (Split(*pair) for pair in source.read(folder, purpose))
    mean, std = channel_stats(train.images)
    _, channels, size, _ = train.images.shape
    info = DatasetInfo(source.name, channels, size, source.num_classes, mean, std)
    return Splits(train, valid, test, info, purpose)
