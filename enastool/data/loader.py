"""Batches from a split that lives on the device as one tensor.

The split is normalised once when the loader is built; each batch is then cut from it with
tensor ops only (no worker processes, no per-image Python loop, no host-device sync):

- shuffle: ``torch.randperm`` on the device, from a generator seeded by (seed, epoch), so an
  epoch's order can be rebuilt from its number alone;
- random crop: the split is zero-padded once (zero *after* normalisation, i.e. the mean pixel,
  as the authors did); each batch gathers an H x W window at per-image offsets;
- horizontal flip: a per-image random mask;
- cutout: a per-image square (centre anywhere in the image, clipped at the edges) set to zero.

All augmentation randomness comes from one device generator whose state is part of
:meth:`DeviceLoader.state_dict`, together with the epoch and the position in it: a run that
reloads the state continues with exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from ..errors import EnasError
from .datasets import DatasetInfo, Split

PIXEL_MAX = 255.0
# Crop padding per image side: 4 pixels for 32x32 (the authors'), so size // 8 (1 for 8x8).
PAD_PER_SIZE = 8
FLIP_PROBABILITY = 0.5
# Mixes the epoch into the shuffle seed; a large prime keeps (seed, epoch) pairs apart.
EPOCH_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Augment:
    """Training augmentation: crop padding per side, random horizontal flip, cutout side (0: off)."""

    pad: int = 4
    flip: bool = True
    cutout: int = 0

    @classmethod
    def for_size(cls, size: int, flip: bool = True, cutout: int = 0) -> "Augment":
        """The authors' 4-pixel padding scaled to the image size (8x8 digits get 1)."""
        return cls(pad=size // PAD_PER_SIZE, flip=flip, cutout=cutout)


NO_AUGMENT = Augment(pad=0, flip=False, cutout=0)


class DeviceLoader:
    """Iterates ``(x, y)`` batches over one epoch at a time; ``len()`` is batches per epoch.

    ``train=True`` shuffles, augments and (by default) drops the ragged last batch;
    ``train=False`` gives every image once, in order, unaugmented. ``shuffle`` overrides the
    order alone (validation reward batches: shuffled but not augmented).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        device: torch.device | str = "cpu",
        mean: tuple[float, ...] = (0.0,),
        std: tuple[float, ...] = (1.0,),
        train: bool = True,
        augment: Augment | None = None,
        drop_last: bool | None = None,
        seed: int = 0,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        shuffle: bool | None = None,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4 or labels.shape != images.shape[:1]:
            raise ValueError(f"expected uint8 images (N, C, H, W) and N labels, got {tuple(images.shape)} "
                             f"{images.dtype} and {tuple(labels.shape)}")
        if batch_size < 1:
            raise EnasError(f"batch size {batch_size}: must be at least 1")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.train = train
        self.shuffle = train if shuffle is None else shuffle
        self.augment = (augment or Augment()) if train else NO_AUGMENT
        self.drop_last = train if drop_last is None else drop_last
        self.seed = int(seed)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.num_examples, _, self.height, self.width = images.shape
        self._check_augment()
        self.epoch = 0
        self.position = 0  # batches already handed out in this epoch

        channels = images.shape[1]
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).reshape(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).reshape(1, -1, 1, 1)
        if mean_t.shape[1] not in (1, channels) or std_t.shape[1] not in (1, channels):
            raise ValueError(f"mean/std need 1 or {channels} values, got {len(mean)} and {len(std)}")
        data = (images.to(self.device).float() / PIXEL_MAX - mean_t) / std_t
        pad = self.augment.pad
        # Padding once here is what makes every crop a plain gather later.
        self._data = F.pad(data, (pad, pad, pad, pad)).to(dtype) if pad else data.to(dtype)
        self._labels = labels.to(self.device, torch.int64)
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(self.seed)

    def _check_augment(self) -> None:
        """Refuse augmentation that destroys the images (CIFAR-10 settings on 8x8 digits)."""
        side = min(self.height, self.width)
        hint = "the paper presets are for 32x32 CIFAR-10; --preset smoke suits 8x8 digits"
        if self.augment.cutout >= side:
            raise EnasError(
                f"cutout {self.augment.cutout} covers the whole {self.height}x{self.width} image: "
                f"lower --cutout ({hint})"
            )
        if 2 * self.augment.pad >= side:
            raise EnasError(
                f"augment_pad {self.augment.pad} shifts {self.height}x{self.width} images by half "
                f"their size or more: lower augment_pad ({hint})"
            )

    @classmethod
    def for_split(cls, split: Split, info: DatasetInfo, batch_size: int, train: bool,
                  cutout: int = 0, **options) -> "DeviceLoader":
        """A loader normalised with ``info``'s statistics and crop padding scaled to its size."""
        augment = Augment.for_size(info.size, cutout=cutout) if train else NO_AUGMENT
        return cls(split.images, split.labels, batch_size, mean=info.mean, std=info.std,
                   train=train, augment=augment, **options)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The rest of the current epoch (all of it unless resumed mid-epoch)."""
        self._roll_over()
        order = self._order(self.epoch)
        while self.position < len(self):
            start = self.position * self.batch_size
            index = order[start:start + self.batch_size]
            self.position += 1
            yield self._batch(index)
        self._roll_over()

    def state_dict(self) -> dict:
        """Epoch, position in it and generator state: enough to resume at the exact batch."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.seed = int(state["seed"])
        self._generator.set_state(state["generator"])

    def _roll_over(self) -> None:
        if self.position >= len(self) > 0:
            self.epoch += 1
            self.position = 0

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_examples, device=self.device)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed * EPOCH_SEED_STRIDE + epoch)
        return torch.randperm(self.num_examples, generator=generator, device=self.device)

    def _batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._crop(index) if self.augment.pad else self._data[index]
        if self.augment.flip:
            x = self._flip(x)
        if self.augment.cutout:
            x = self._cutout(x)
        return x.contiguous(memory_format=self.memory_format), self._labels[index]

    def _random_ints(self, high: int, count: int) -> torch.Tensor:
        return torch.randint(0, high, (count,), generator=self._generator, device=self.device)

    def _crop(self, index: torch.Tensor) -> torch.Tensor:
        """An H x W window of each padded image, at a random offset per image."""
        count, span = index.shape[0], 2 * self.augment.pad + 1
        top, left = self._random_ints(span, count), self._random_ints(span, count)
        rows = (top[:, None] + torch.arange(self.height, device=self.device))[:, :, None]  # B,H,1
        cols = (left[:, None] + torch.arange(self.width, device=self.device))[:, None, :]  # B,1,W
        # Advanced indices around the channel slice put their broadcast shape first: B,H,W,C.
        return self._data[index[:, None, None], :, rows, cols].permute(0, 3, 1, 2)

    def _flip(self, x: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(x.shape[0], generator=self._generator, device=self.device) < FLIP_PROBABILITY
        return torch.where(flip[:, None, None, None], x.flip(3), x)

    def _cutout(self, x: torch.Tensor) -> torch.Tensor:
        """Zero a ``cutout`` x ``cutout`` square per image, its centre uniform over the image."""
        count, side = x.shape[0], self.augment.cutout
        centre_y, centre_x = self._random_ints(self.height, count), self._random_ints(self.width, count)
        top, left = centre_y - side // 2, centre_x - side // 2
        ys = torch.arange(self.height, device=self.device)
        xs = torch.arange(self.width, device=self.device)
        in_rows = (ys >= top[:, None]) & (ys < top[:, None] + side)  # B,H
        in_cols = (xs >= left[:, None]) & (xs < left[:, None] + side)  # B,W
        square = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # B,1,H,W
        return x.masked_fill(square, 0.0)


def endless(loader: DeviceLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches forever, epoch after epoch (the controller's validation reward batches)."""
    if len(loader) == 0:
        raise EnasError(
            f"batch size {loader.batch_size} is larger than the {loader.num_examples} images of the split; "
            "lower it or keep the last partial batch"
        )
    return _forever(loader)


def _forever(loader: DeviceLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield from loader
