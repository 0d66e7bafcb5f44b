"""enastool.data: image data sets (CIFAR-10 pickles, bundled digits) with on-device batch
loading, and text corpora (PTB files, the embedded pydoc corpus) with on-device BPTT streams."""

from .corpora import (
    DEFAULT_TEXT_DATASET, TEXT_DATASET_WITH_DIR, TEXT_DATASETS, TextSource, load_corpus,
    text_dataset_names,
)
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
from .download import CIFAR10_MD5, CIFAR10_URL, PTB_MD5, PTB_URL, download_cifar10, download_ptb
from .loader import NO_AUGMENT, Augment, DeviceLoader, endless
from .streams import TextBatches, Window, endless_windows, make_streams
from .text import EOS, UNK, Corpus, CorpusInfo, Vocabulary, unigram_perplexity

__all__ = [
    "DATASETS", "PURPOSES", "DatasetInfo", "Split", "Splits", "channel_stats", "dataset_names",
    "default_data_dir", "load_dataset", "CIFAR10_MD5", "CIFAR10_URL", "download_cifar10",
    "NO_AUGMENT", "Augment", "DeviceLoader", "endless",
    "DEFAULT_TEXT_DATASET", "TEXT_DATASET_WITH_DIR", "TEXT_DATASETS", "TextSource", "load_corpus",
    "text_dataset_names", "PTB_MD5", "PTB_URL", "download_ptb", "TextBatches", "Window",
    "endless_windows", "make_streams", "EOS", "UNK", "Corpus", "CorpusInfo", "Vocabulary",
    "unigram_perplexity",
]
