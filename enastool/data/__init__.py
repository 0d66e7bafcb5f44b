"""enastool.data: data sets (CIFAR-10 pickles, bundled digits) and on-device batch loading."""

from .datasets import (
    DATASETS,
    PURPOSES,
    DatasetInfo,
    Split,
    Splits,
    channel_stats,
    dataset_names,
    default_data_dir,
    load_dataset,
)
from .download import CIFAR10_MD5, CIFAR10_URL, download_cifar10
from .loader import NO_AUGMENT, Augment, DeviceLoader, endless

__all__ = [
    "DATASETS", "PURPOSES", "DatasetInfo", "Split", "Splits", "channel_stats", "dataset_names",
    "default_data_dir", "load_dataset", "CIFAR10_MD5", "CIFAR10_URL", "download_cifar10",
    "NO_AUGMENT", "Augment", "DeviceLoader", "endless",
]
