"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images, 10 classes.

The data ships inside scikit-learn, so it needs no download: it is the data set for tests,
demos and laptops. Images stay 8x8 (the networks handle any size; padding them to 32x32 would
only add blank pixels and compute). Values 0..16 are scaled to uint8 0..255.

The split is fixed and uses no random numbers, so it is the same on every machine and every
library version: within each class, in the file's order, position p goes to

- test when p % 10 is 0 or 1 (20%), valid when p % 10 is 2 (10%), train otherwise (70%),

which gives 1,248 train / 181 valid / 368 test images, every class in every split.
For ``purpose="final"``, train = train + valid and valid = test (as for CIFAR-10).
"""

from __future__ import annotations

import numpy as np
import torch

CHANNELS = 1
SIZE = 8
NUM_CLASSES = 10
SOURCE_MAX = 16  # the digits' pixel values run 0..16
PIXEL_MAX = 255
SPLIT_PERIOD = 10
TEST_SLOTS = (0, 1)
VALID_SLOTS = (2,)


def split_slots(labels: np.ndarray) -> np.ndarray:
    """Each example's position within its class, modulo ``SPLIT_PERIOD``."""
    slots = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        slots[members] = np.arange(len(members)) % SPLIT_PERIOD
    return slots


def read_digits(data_dir=None, purpose: str = "search"):
    """(train, valid, test) pairs of (uint8 images N,1,8,8, int64 labels) for ``purpose``.

    ``data_dir`` is ignored (the data is bundled); it is there so every reader has one signature.
    """
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    bunch = load_digits()
    scaled = np.rint(bunch.images * (PIXEL_MAX / SOURCE_MAX)).astype(np.uint8)
    images = torch.from_numpy(scaled).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    slots = split_slots(bunch.target)
    test = torch.from_numpy(np.isin(slots, TEST_SLOTS))
    valid = torch.from_numpy(np.isin(slots, VALID_SLOTS))
    train = ~(test | valid)
    if purpose == "final":
        train = train | valid
        valid = test
    return tuple((images[mask], labels[mask]) for mask in (train, valid, test))
