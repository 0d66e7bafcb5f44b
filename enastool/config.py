"""Run configuration: every hyperparameter of a search run and of a final-training run.

A configuration is resolved in layers, each later one winning:

    dataclass defaults  <  preset ("paper" or "smoke")  <  TOML file (--config)  <  CLI options

The ``paper`` preset is the authors' settings table (reference sec. 4 for the image spaces,
sec. 8 for rnn); ``smoke`` is the same recipe shrunk to run on an embedded data set (``digits``
images, the ``pydoc`` corpus) in a minute or two on two CPU cores. Both live in the tables
below, so every number with a meaning is written down exactly once. A search preset is the
space's column plus the additions of its strategy (``STRATEGY_PRESETS``: ghost batch norm is on
for one-shot search only).

Data sets belong to a data kind (``enastool.encoding.spaces.DATA_KINDS``: images for macro and
micro, text for rnn); a space accepts the data sets of its kind only, and without a
``dataset`` it reads its kind's embedded one, or the one a ``data_dir`` holds (CIFAR-10, PTB).

``l2`` means the authors' flag in every run: ``l2 * sum(w ** 2)`` added to the loss, a gradient
of ``2 * l2 * w``. The image spaces apply it as an SGD weight decay of ``2 * l2`` on every
trainable parameter (``enastool.train.trainer.parameter_groups``); rnn adds the term to the loss
itself, as the authors' language-model code does (search: the matrices the sampled cell used;
final: every weight), with no SGD decay on top. ``lr_min = lr_max`` makes the cosine schedule
the authors' constant rnn rate. Settings that only some spaces read say so in their help
(``macro:``, ``micro:``, ``rnn:``); the others leave them alone.

Every numeric setting has a checked range (``RULES``), upper bound included, so a typo such as
``epochs = 9223372036854775807`` or ``--seed 99999999999999999999999`` is one line naming the
setting and where it came from, never an overflow deep in torch or an allocation of absurd size.

This module never imports torch: the CLI can resolve and print a configuration instantly.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .encoding import SPACES, space_class
from .encoding.macro import MAX_LAYERS
from .encoding.micro import MAX_BLOCKS
from .encoding.recurrent import MAX_NODES
from .encoding.spaces import DATA_KINDS, IMAGES, TEXT, data_kind
from .encoding.tokens import build_token_scheme
from .errors import EnasError

STRATEGIES = ("enas", "random", "oneshot", "nao")
NAO = "nao"  # the strategy whose settings are checked together (``_nao_problems``)
# The strategies of a space where not all apply. One-shot needs a supernet that runs every
# candidate at once; the recurrent supernet runs one cell (the sum over every activation and
# input of every node is not a cell of the reference, and would cost 36x a cell at N = 8).
SPACE_STRATEGIES: dict[str, tuple[str, ...]] = {"rnn": ("enas", "random", NAO)}
# Data sets by data kind: (embedded, offline default; the one a data directory holds). The
# names are the registries' (enastool.data), written here because this module never imports
# torch; a test checks that they agree.
IMAGE_DATASETS = ("digits", "cifar10")
TEXT_DATASETS = ("pydoc", "ptb")
DATASETS_OF_KIND: dict[str, tuple[str, str]] = {IMAGES: IMAGE_DATASETS, TEXT: TEXT_DATASETS}
DATASETS = IMAGE_DATASETS + TEXT_DATASETS
# Whether a data set is read from a data directory (the embedded ones are not).
DATASET_READS_FILES = {name: with_dir for kind in DATASETS_OF_KIND.values()
                       for name, with_dir in zip(kind, (False, True))}
# The side of each image data set's square images (enastool.data's cifar10.SIZE and digits.SIZE,
# written here because this module never imports torch; a test checks that they agree).
IMAGE_SIDES = {"digits": 8, "cifar10": 32}
DTYPES = ("auto", "float32", "bfloat16", "float16")
AUTO = "auto"
# Tri-state switches (compile, channels_last) accept these spellings; "auto" is kept as is.
SWITCH_WORDS = {"on": True, "true": True, "off": False, "false": False}


AUTOCAST_HELP = ("autocast dtype of the computation (the weights stay float32): auto (bfloat16 on "
                 "CUDA, float32 elsewhere), float32, bfloat16, or float16 (CUDA only)")


def setting(default: Any, help: str) -> Any:
    """A config field with its one-line description (used for TOML comments and CLI help)."""
    return field(default=default, metadata={"help": help})


class _Config:
    """Shared behaviour of the two configuration dataclasses."""

    kind: ClassVar[str]

    # ----------------------------------------------------------------- introspection
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def help(cls, name: str) -> str:
        """The one-line description of field ``name``."""
        return next(f.metadata["help"] for f in fields(cls) if f.name == name)

    # ----------------------------------------------------------------- dict and JSON
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config"):
        """Build from a (possibly partial) dict; unknown keys and wrong types raise EnasError."""
        values = {}
        for key, value in data.items():
            check_known_key(cls, key, source)
            values[key] = coerce_value(cls, key, value, source)
        config = cls(**values)
        config.validate({key: source for key in values})
        return config

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def read_json(cls, path: str | Path, complete: bool = False):
        """The config in a JSON file; ``complete`` (a run's config.json, written whole when the
        run started) refuses a file that lacks any setting instead of filling in defaults."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EnasError(f"{path}: file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EnasError(f"{path}: not a readable JSON config ({e})") from None
        if not isinstance(data, dict):
            raise EnasError(f"{path}: expected a JSON object of config keys")
        missing = [name for name in cls.field_names() if name not in data] if complete else []
        if missing:
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise EnasError(
                f"{path}: missing {shown}; a run's config.json holds every {cls.kind} setting "
                "(put the original back)"
            )
        return cls.from_dict(data, source=str(path))

    # ----------------------------------------------------------------- TOML
    def to_toml(self) -> str:
        """The config as a ``[search]`` or ``[final]`` table, one commented key per field.

        A table (not a flat file) so that the file can be handed back to ``--config`` for
        either kind of run: the other kind simply ignores it.
        """
        lines = [
            f"# enastool {self.kind} configuration, fully resolved",
            "# (defaults < preset < --config file < command-line options)",
            f"[{self.kind}]",
        ]
        for f in fields(self):
            value = getattr(self, f.name)
            lines.append(f"# {f.metadata['help']}")
            if value is None:  # TOML has no null: leave the key out, so the default (None) applies
                lines.append(f"# {f.name} = (not set)")
            else:
                lines.append(f"{f.name} = {toml_value(value)}")
        return "\n".join(lines) + "\n"

    def write_toml(self, path: str | Path) -> None:
        Path(path).write_text(self.to_toml(), encoding="utf-8")

    @classmethod
    def read_toml(cls, path: str | Path):
        """Defaults overlaid with one TOML file (no preset): the inverse of ``write_toml``."""
        values = load_toml_values(cls, path)
        config = cls(**values)
        config.validate({key: str(path) for key in values})
        return config

    # ----------------------------------------------------------------- validation
    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for every invalid value."""
        found = []
        for f in fields(self):
            rule = RULES.get(f.name)
            value = getattr(self, f.name)
            message = rule(value) if rule is not None and value is not None else None
            if message:
                found.append((f.name, message))
        lr_max, lr_min = getattr(self, "lr_max"), getattr(self, "lr_min")
        if lr_min > lr_max:
            found.append(("lr_min", f"must not exceed lr_max = {lr_max}"))
        if self.space in SPACES and not found_for(found, "dataset", "space"):
            kind = data_kind(self.space)
            choices = DATASETS_OF_KIND[kind]
            if self.dataset not in choices:
                found.append(("dataset", f"is not a data set of the {self.space} space ({kind}): "
                                         f"choose {' or '.join(choices)}"))
        strategy = getattr(self, "strategy", None)
        allowed = SPACE_STRATEGIES.get(self.space, STRATEGIES)
        if strategy is not None and strategy in STRATEGIES and strategy not in allowed:
            found.append(("strategy", f"is not available for the {self.space} space: choose "
                                      f"{' or '.join(allowed)}"))
        if self.data_dir is not None and not DATASET_READS_FILES.get(self.dataset, True):
            with_dir = next((kind[1] for kind in DATASETS_OF_KIND.values() if self.dataset in kind), "")
            found.append(("data_dir", f"does not apply to the {self.dataset} data set, which needs no "
                                      f"files; drop it, or use the {with_dir} data set"))
        if strategy == NAO:
            found += _nao_problems(self)
        ghost, batch = getattr(self, "ghost_batch_size", 0), self.batch_size
        if ghost and batch % ghost:  # equal ghosts: every statistic over the same number of images
            found.append(
                ("ghost_batch_size", f"must divide batch_size = {batch}; set a divisor, or 0 for off")
            )
        return found

    def validate(self, origins: Mapping[str, str] | None = None) -> None:
        """Raise EnasError for the first invalid value, naming where it came from."""
        origins = origins or {}
        for key, message in self.problems():
            where = origins.get(key, "config")
            raise EnasError(f"{where}: {key} = {short_repr(getattr(self, key))} {message}")


# --------------------------------------------------------------------------------------------
# The two configurations. Defaults are the authors' macro-space CIFAR-10 settings; presets
# below restate every value of the reference table so the table can be checked in one place.
# --------------------------------------------------------------------------------------------


@dataclass
class SearchConfig(_Config):
    """Every hyperparameter of a search run (shared-weight training, controller, derive)."""

    kind: ClassVar[str] = "search"

    # what and where
    space: str = setting("macro", "search space: macro, micro or rnn")
    strategy: str = setting(
        "enas", "enas (controller, REINFORCE), random (uniform, weight sharing), oneshot (macro "
        "and micro) or nao (NAO-WS: a pool improved by an encoder-predictor-decoder)"
    )
    dataset: str = setting("cifar10", "data set: cifar10 or digits (images), ptb or pydoc (rnn)")
    data_dir: str | None = setting(None, "folder holding the data set; not set = default place")
    val_size: int | None = setting(
        None, "images: training images held out for validation; not set = the data set's "
        "standard split (rnn: the corpus's valid split)"
    )
    seed: int = setting(0, "seed of every random number generator")
    device: str = setting("auto", "auto (cuda when available), cpu, cuda or cuda:N")
    dtype: str = setting("auto", AUTOCAST_HELP)
    channels_last: bool | str = setting("auto", "channels-last memory format: auto, true, false")

    # shared weights (the child networks)
    epochs: int = setting(310, "epochs of shared-weight training")
    batch_size: int = setting(128, "training minibatch size")
    layers: int = setting(12, "macro: layers; micro: normal cells (2 reduction cells are added)")
    channels: int = setting(36, "channels of the first stage")
    num_blocks: int = setting(5, "micro: blocks per cell (B)")
    l2: float = setting(
        2.5e-4,
        "the authors' L2 flag: l2 x sum(w^2) joins the loss, so SGD decays each parameter a "
        "step trains by 2 x l2 (torch weight_decay = 2 x l2); rnn: the term itself joins the "
        "loss, over the sampled cell's matrices",
    )
    keep_prob: float = setting(0.9, "keep probability of the dropout before the classifier")
    lr_max: float = setting(0.05, "learning rate at the start of each cosine cycle")
    lr_min: float = setting(5e-4, "learning rate at the end of each cosine cycle (= lr_max: constant)")
    lr_t0: int = setting(10, "epochs of the first cosine cycle")
    lr_tmul: int = setting(2, "each cosine cycle is this many times longer than the last")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(True, "Nesterov momentum")
    grad_clip: float = setting(5.0, "gradient norm clipping of the shared weights (0 = off)")
    augment_pad: int = setting(4, "zero padding before the random crop (0 = no crop)")
    augment_flip: bool = setting(True, "random horizontal flips")
    cutout: int = setting(0, "cutout square size in pixels (0 = off)")
    ghost_batch_size: int = setting(
        0, "supernet batch norm takes its statistics per ghost batch of this many images; "
        "must divide batch_size (0 = the whole batch; the oneshot presets turn it on)"
    )

    # recurrent cells (space rnn; reference sec. 8)
    num_nodes: int = setting(8, "rnn: nodes of a cell after node 0 (N)")
    hidden_size: int = setting(200, "rnn: hidden state and embedding size (H)")
    bptt: int = setting(35, "rnn: BPTT window in tokens (training: random around it, lr x length / bptt)")
    drop_words: float = setting(0.10, "rnn: drop rate of whole embedding rows (words)")
    drop_embedding: float = setting(0.20, "rnn: drop rate of the embedding output")
    drop_inputs: float = setting(0.75, "rnn: drop rate of the cell input x")
    drop_hidden: float = setting(0.25, "rnn: drop rate between nodes (and of the state read by node 0)")
    drop_output: float = setting(0.75, "rnn: drop rate of the cell output before the softmax")
    drop_weights: float = setting(0.0, "rnn: DropConnect rate of the recurrent matrices")
    alpha: float = setting(0.0, "rnn: weight of the activation L2 penalty, mean(out^2)")
    beta: float = setting(1.0, "rnn: weight of the slowness penalty, mean((out_t+1 - out_t)^2)")
    init_range: float = setting(0.04, "rnn: weights start uniform in [-init_range, init_range]")

    # controller (strategy enas)
    controller_lr: float = setting(1e-3, "controller Adam learning rate")
    controller_beta1: float = setting(0.0, "controller Adam beta1")
    controller_eps: float = setting(1e-3, "controller Adam epsilon")
    controller_samples: int = setting(20, "architectures sampled per controller update")
    controller_updates: int = setting(50, "controller updates per epoch")
    lstm_size: int = setting(64, "controller LSTM hidden units")
    lstm_layers: int = setting(1, "controller LSTM layers")
    tanh_constant: float = setting(1.5, "logits squashed to C*tanh(logits) (0 = no squashing)")
    op_tanh_reduce: float = setting(1.0, "op logits use tanh_constant / this (micro: 2.5)")
    temperature: float = setting(1.0, "logits divided by this before sampling")
    entropy_weight: float = setting(1e-4, "weight of the entropy bonus in the reward")
    baseline_decay: float = setting(0.99, "decay of the moving-average reward baseline")
    skip_target: float = setting(0.4, "macro: target skip-connection rate")
    skip_weight: float = setting(0.8, "macro: weight of the KL penalty toward skip_target")
    distance_prior: float = setting(
        6.0, "rnn: prev-index logits minus (l - j)^2 / this, a prior toward near nodes (0 = none)"
    )

    # one-shot (strategy oneshot)
    oneshot_drop_max: float = setting(
        0.5, "path dropout r at the end of the ramp: each of a node's k paths is dropped with "
        "probability r^(1/k), all k with probability r"
    )
    oneshot_drop_ramp: float = setting(1.0, "fraction of the epochs over which r ramps up from 0")

    # NAO-WS (strategy nao)
    nao_pool: int = setting(600, "architectures in the pool; the shared weights train on them")
    nao_eval_every: int = setting(
        50, "epochs between evaluation points (and one after the last epoch): the pool is "
        "scored, and the encoder-predictor-decoder trained and run on it"
    )
    nao_score_examples: int = setting(
        500, "validation examples (images; rnn: segments of bptt tokens) of the one fixed batch "
        "every pool member is scored on"
    )
    nao_epd_epochs: int = setting(1000, "training epochs of the encoder-predictor-decoder per round")
    nao_top: int = setting(100, "the best of the pool that generation starts from")
    nao_new: int = setting(300, "new architectures generated per round; they replace the worst")
    nao_max_eta: int = setting(50, "largest step size of generation (eta = 1, 2, ... until enough are new)")

    # derive (after the search)
    derive_samples: int = setting(100, "architectures sampled and scored by derive")
    derive_batches: int | None = setting(
        None, "validation minibatches scoring each one; not set = the whole validation split"
    )

    # bookkeeping
    log_every: int = setting(50, "training steps between metric records")
    checkpoint_every: int = setting(1, "epochs between checkpoints")


@dataclass
class FinalConfig(_Config):
    """Every hyperparameter of training one architecture from scratch."""

    kind: ClassVar[str] = "final"

    # what and where
    space: str = setting("macro", "search space of the architecture: macro, micro or rnn")
    arch: str | None = setting(None, "the architecture's integer encoding, kept for resume")
    dataset: str = setting("cifar10", "data set: cifar10 or digits (images), ptb or pydoc (rnn)")
    data_dir: str | None = setting(None, "folder holding the data set; not set = default place")
    seed: int = setting(0, "seed of every random number generator")
    device: str = setting("auto", "auto (cuda when available), cpu, cuda or cuda:N")
    dtype: str = setting("auto", AUTOCAST_HELP)
    channels_last: bool | str = setting("auto", "channels-last memory format: auto, true, false")
    compile: bool | str = setting("auto", "torch.compile the network: auto (on CUDA), on or off")

    # network and training
    epochs: int = setting(310, "training epochs")
    batch_size: int = setting(100, "training minibatch size")
    layers: int = setting(24, "macro: layers (the arch's own count); micro: normal cells")
    channels: int = setting(96, "channels of the first stage (doubled at each reduction)")
    l2: float = setting(
        2e-4,
        "the authors' L2 flag: l2 x sum(w^2) over every parameter joins the loss, so SGD "
        "decays by 2 x l2 (torch weight_decay = 2 x l2); rnn: the term itself joins the loss",
    )
    keep_prob: float = setting(0.5, "keep probability of the dropout before the classifier")
    drop_path_keep: float = setting(1.0, "micro: drop-path keep probability (1.0 = off)")
    aux_weight: float = setting(0.0, "micro: loss weight of the auxiliary head (0 = no head)")
    lr_max: float = setting(0.05, "learning rate at the start of each cosine cycle")
    lr_min: float = setting(1e-3, "learning rate at the end of each cosine cycle (= lr_max: constant)")
    lr_t0: int = setting(10, "epochs of the first cosine cycle")
    lr_tmul: int = setting(2, "each cosine cycle is this many times longer than the last")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(True, "Nesterov momentum")
    grad_clip: float = setting(5.0, "gradient norm clipping (0 = off)")
    augment_pad: int = setting(4, "zero padding before the random crop (0 = no crop)")
    augment_flip: bool = setting(True, "random horizontal flips")
    cutout: int = setting(0, "cutout square size in pixels (0 = off)")

    # recurrent cells (space rnn; reference sec. 8)
    hidden_size: int = setting(800, "rnn: hidden state and embedding size (H)")
    bptt: int = setting(35, "rnn: BPTT window in tokens (training: random around it, lr x length / bptt)")
    drop_words: float = setting(0.125, "rnn: drop rate of whole embedding rows (words)")
    drop_embedding: float = setting(0.175, "rnn: drop rate of the embedding output")
    drop_inputs: float = setting(0.725, "rnn: drop rate of the cell input x")
    drop_hidden: float = setting(0.225, "rnn: drop rate between nodes (and of the state read by node 0)")
    drop_output: float = setting(0.75, "rnn: drop rate of the cell output before the softmax")
    drop_weights: float = setting(0.0, "rnn: DropConnect rate of the recurrent matrices")
    alpha: float = setting(0.7, "rnn: weight of the activation L2 penalty, mean(out^2)")
    beta: float = setting(0.0, "rnn: weight of the slowness penalty, mean((out_t+1 - out_t)^2)")
    init_range: float = setting(0.05, "rnn: weights start uniform in [-init_range, init_range]")
    nonmono: int = setting(
        10, "rnn: NT-ASGD starts averaging when the validation perplexity is worse than the "
        "best before the last this-many evaluations"
    )
    test_batch_size: int = setting(
        1, "rnn: parallel streams of the test evaluation (the reference: 1, the state carried)"
    )

    # bookkeeping
    eval_every: int = setting(1, "epochs between test-set evaluations (rnn: validation; test at the end)")
    log_every: int = setting(50, "training steps between metric records")
    checkpoint_every: int = setting(1, "epochs between checkpoints")


CONFIG_CLASSES: dict[str, type[_Config]] = {"search": SearchConfig, "final": FinalConfig}


def found_for(found: list[tuple[str, str]], *names: str) -> bool:
    """Whether ``found`` already has a problem with one of the fields ``names``."""
    return any(name in names for name, _ in found)


# --------------------------------------------------------------------------------------------
# Presets. PAPER is reference sec. 4 (images) and sec. 8 (rnn), column by column; SMOKE shrinks
# it for the embedded data sets on a CPU.
# Only the keys that differ from the dataclass defaults would be needed; all table rows are
# listed anyway so that each column can be read against the reference.
# --------------------------------------------------------------------------------------------

PAPER: dict[str, dict[str, dict[str, Any]]] = {
    "search": {
        "macro": dict(
            layers=12, channels=36, batch_size=128, epochs=310,
            l2=2.5e-4, keep_prob=0.9, lr_max=0.05, lr_min=5e-4,
            lr_t0=10, lr_tmul=2, controller_samples=20, controller_updates=50,
            controller_lr=1e-3, tanh_constant=1.5, op_tanh_reduce=1.0,
            skip_target=0.4, skip_weight=0.8,
        ),
        "micro": dict(
            layers=6, channels=20, num_blocks=5, batch_size=160, epochs=150,
            l2=1e-4, keep_prob=0.9, lr_max=0.05, lr_min=5e-4,
            lr_t0=10, lr_tmul=2, controller_samples=10, controller_updates=30,
            controller_lr=3.5e-3, tanh_constant=1.1, op_tanh_reduce=2.5,
            skip_weight=0.0,  # the skip penalty is a macro-controller term
            # The table's drop-path keep 0.6 for the micro search is not here: the authors'
            # search child applies drop path only to fixed architectures, and so does enastool.
        ),
        "rnn": dict(
            num_nodes=8, hidden_size=200, batch_size=128, bptt=35, epochs=600,
            # plain SGD at a constant 20 (lr_min = lr_max), times length / bptt per window
            lr_max=20.0, lr_min=20.0, momentum=0.0, nesterov=False, grad_clip=0.1, l2=8e-7,
            init_range=0.04, drop_words=0.10, drop_embedding=0.20, drop_inputs=0.75,
            drop_hidden=0.25, drop_output=0.75, drop_weights=0.0, alpha=0.0, beta=1.0,
            controller_samples=10, controller_updates=25, controller_lr=5e-5,
            controller_beta1=0.9, controller_eps=1e-8,  # TensorFlow's Adam defaults
            lstm_size=64, lstm_layers=1, temperature=5.0, tanh_constant=2.25,
            op_tanh_reduce=1.0, distance_prior=6.0, entropy_weight=1e-5, baseline_decay=0.999,
            skip_weight=0.0,  # the skip penalty is a macro-controller term
        ),
    },
    "final": {
        "macro": dict(
            layers=24, channels=96, batch_size=100, epochs=310,
            l2=2e-4, keep_prob=0.5, drop_path_keep=1.0, lr_max=0.05, lr_min=1e-3,
            lr_t0=10, lr_tmul=2, aux_weight=0.0, cutout=0,
        ),
        "micro": dict(
            layers=15, channels=36, batch_size=144, epochs=630,
            l2=2e-4, keep_prob=0.8, drop_path_keep=0.6, lr_max=0.05, lr_min=1e-4,
            lr_t0=10, lr_tmul=2, aux_weight=0.4, cutout=16,  # cutout: the 2.89% result
        ),
        "rnn": dict(
            hidden_size=800, batch_size=64, bptt=35, epochs=3000,
            lr_max=20.0, lr_min=20.0, momentum=0.0, nesterov=False, grad_clip=0.25, l2=8e-7,
            init_range=0.05, drop_words=0.125, drop_embedding=0.175, drop_inputs=0.725,
            drop_hidden=0.225, drop_output=0.75, drop_weights=0.0, alpha=0.7, beta=0.0,
            nonmono=10, test_batch_size=1, eval_every=1,
        ),
    },
}

# Smoke = paper settings of the same space, overlaid with "all" and then the space's own keys.
# digits images are 8x8 and not mirror-symmetric: no crop padding, no flips, no cutout, and
# (micro) no auxiliary head, whose 5x5 pooling needs larger maps. One cosine cycle per run.
# The final-training numbers are the ones to tune for ">= 90% test accuracy in about a minute":
# 10 epochs reach 97.8-99.5% on every architecture measured (random and the authors' cells of
# both spaces, pooling-only ones included), 2-25 s on one CPU thread; 20 gained nothing.
SMOKE_FINAL_EPOCHS = 10
# rnn on the pydoc corpus (1,700 words, 55k training tokens): a small network with lighter
# dropout than the paper's, which regularises 24M weights on PTB for thousands of epochs.
SMOKE_RNN_NETWORK = dict(
    hidden_size=64, drop_words=0.05, drop_embedding=0.1, drop_inputs=0.3, drop_hidden=0.1,
    drop_output=0.3, drop_weights=0.0,
)
SMOKE: dict[str, dict[str, dict[str, Any]]] = {
    "search": {
        "all": dict(
            # 10 epochs: the controller has learnt something (derive's best scores about 0.55
            # on digits against 0.34 after 2 epochs) in about 12 s on one CPU thread.
            epochs=10, lr_t0=10, batch_size=64, channels=8,
            augment_pad=0, augment_flip=False, cutout=0,
            controller_samples=5, controller_updates=5,
            # 50 controller updates instead of the paper's thousands: a larger step lets the
            # policy move visibly (micro entropy 20.04 -> 19.29 nats; derive's best 0.62, not 0.52;
            # measured before the micro search network had separate x/y weights, see below).
            controller_lr=0.03,
            derive_samples=10, log_every=5,
        ),
        "macro": dict(layers=4),
        "micro": dict(
            layers=3, num_blocks=2,
            # The authors' micro search network gives the x and y slots of a block their own
            # weights, so each op trains half as often as with shared ones; twice the paper's
            # rate makes up for part of that in 10 epochs (enas, derive's best for seeds 0, 1,
            # 2: 0.55, 0.34, 0.33 at 0.1; 0.45, 0.24 for seeds 0, 1 at 0.05).
            lr_max=0.1,
        ),
        "rnn": dict(SMOKE_RNN_NETWORK, epochs=6, batch_size=32, log_every=10),
    },
    "final": {
        "all": dict(
            epochs=SMOKE_FINAL_EPOCHS, lr_t0=SMOKE_FINAL_EPOCHS,
            batch_size=64, channels=16, lr_max=0.05, lr_min=1e-3, l2=2e-4,
            keep_prob=1.0, drop_path_keep=1.0, aux_weight=0.0,
            augment_pad=0, augment_flip=False, cutout=0, eval_every=5, log_every=10,
        ),
        "macro": dict(layers=4),  # replaced by the architecture's own layer count
        "micro": dict(layers=3),
        "rnn": dict(
            SMOKE_RNN_NETWORK, epochs=12, batch_size=32, lr_max=20.0, lr_min=20.0, l2=8e-7,
            alpha=0.0, nonmono=5, eval_every=1, log_every=10,
        ),
    },
}

# Additions to a search preset for one strategy, applied after the space's column: first the
# strategy's "all" keys, then those of the space. Ghost batch norm (Bender et al.'s one-shot
# training): the paper's batches of 128 (macro) and 160 (micro) in ghosts of 32, the smoke batch
# of 64 in ghosts of 16. Bender et al. trained with larger batches; the ghost size they used
# could not be checked here, so these are enastool's choice.
PAPER_GHOST_BATCH = 32
SMOKE_GHOST_BATCH = 16
# NAO-WS (reference sec. 9; the authors' NAO_V1 train_search.py): the pool and the EPD rounds
# for every space, and for micro the authors' search network and its training, which replace
# the ENAS column. Their 3 cells per stage are 9 normal cells here (2 reduction cells are
# added). Their learning rate is one cosine cycle over the run (lr_t0 = epochs), SGD without
# Nesterov. Their 3e-4 is torch's weight_decay; enastool's l2 is the authors' loss-term flag,
# decayed by 2 x l2, so the same decay is l2 = 1.5e-4. Their classifier has no dropout (keep
# 1.0); their drop-path keep 0.9 is not here (see enastool.search.nao). 90% / 10% of the
# training images train / validate: CIFAR-10's search split already holds out 5,000.
NAO_PAPER_EPOCHS = 200
NAO_PAPER = dict(
    nao_pool=600, nao_eval_every=50, nao_score_examples=500, nao_epd_epochs=1000,
    nao_top=100, nao_new=300, nao_max_eta=50,
)
NAO_PAPER_MICRO = dict(
    layers=9, channels=20, num_blocks=5, batch_size=128, epochs=NAO_PAPER_EPOCHS,
    momentum=0.9, nesterov=False, lr_max=0.025, lr_min=0.001, lr_t0=NAO_PAPER_EPOCHS,
    l2=1.5e-4, grad_clip=5.0, keep_prob=1.0,
)
# Smoke: the space's smoke recipe (10 epochs of digits) with a small pool scored at epochs
# 3, 6, 9 and 10, so that three EPD rounds run. The digits hold out 181 validation images.
NAO_SMOKE = dict(
    nao_pool=100, nao_eval_every=3, nao_score_examples=128, nao_epd_epochs=60,
    nao_top=20, nao_new=30, nao_max_eta=20,
)
# rnn: the ENAS search column (600 epochs) with the pool scored every 150 epochs, the four
# evaluation points of the authors' image run; an example is a segment of bptt validation
# tokens (``TextTask.score_batch``): 500 of them are 17,500 of PTB's 73,760. Smoke on pydoc
# (6 epochs, 180 segments): points at epochs 2, 4 and 6, two EPD rounds.
NAO_PAPER_RNN = dict(nao_eval_every=150)
NAO_SMOKE_RNN = dict(nao_eval_every=2)
STRATEGY_PRESETS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "paper": {
        "oneshot": {"all": dict(ghost_batch_size=PAPER_GHOST_BATCH)},
        "nao": {"all": NAO_PAPER, "micro": NAO_PAPER_MICRO, "rnn": NAO_PAPER_RNN},
    },
    "smoke": {
        "oneshot": {"all": dict(ghost_batch_size=SMOKE_GHOST_BATCH)},
        "nao": {"all": NAO_SMOKE, "rnn": NAO_SMOKE_RNN},
    },
}

PAPER_PRESET, SMOKE_PRESET = "paper", "smoke"
PRESETS = (PAPER_PRESET, SMOKE_PRESET)


def preset_values(kind: str, preset: str, space: str, strategy: str | None = None) -> dict[str, Any]:
    """The key/values a preset sets for a run kind and space (and, for search, strategy)."""
    if preset not in PRESETS:
        raise EnasError(f"unknown preset {preset!r}, expected one of {', '.join(PRESETS)}")
    values = dict(PAPER[kind][space])
    if preset == "smoke":
        values.update(SMOKE[kind]["all"])
        values.update(SMOKE[kind][space])
    if kind == SearchConfig.kind:
        additions = STRATEGY_PRESETS[preset].get(strategy or SearchConfig.strategy, {})
        values.update(additions.get("all", {}))
        values.update(additions.get(space, {}))
    return values


# --------------------------------------------------------------------------------------------
# Value rules: each returns what is wrong, or None. Shared by both kinds (a rule applies when
# the config has the field).
# --------------------------------------------------------------------------------------------


# Upper bounds. None is a recommendation: each sits far above any setting in use (the paper's
# in brackets), so a rule only catches a typo or a misplaced exponent, before the value can
# overflow a 64-bit integer in torch or ask for an allocation of absurd size.
MAX_SEED = 2**32 - 1  # NumPy's seed range: every run seeds NumPy's generator from it
MAX_EPOCHS = 100_000  # [310, 630]; also the bound of every "epochs between ..." setting
MAX_BATCH_SIZE = 65_536  # [128, 160, 100]
MAX_CHANNELS = 1_024  # [36, 20, 96]
MAX_IMAGES = 10_000_000  # val_size: more than any data set enastool reads holds
MAX_PIXELS = 1_024  # augment_pad, cutout: more than the side of any image [4, 16]
MAX_STEPS = 1_000_000_000  # log_every
MAX_COUNT = 1_000_000  # samples, updates and batches per epoch or per derive [20, 50, 100]
MAX_LSTM_SIZE = 4_096  # [64]
MAX_LSTM_LAYERS = 64  # [1]
MAX_CYCLE_FACTOR = 100  # lr_tmul [2]
MAX_RATE = 100.0  # learning rates [0.05, 3.5e-3; rnn 20]: SGD and Adam diverge long before
MAX_COEFFICIENT = 1_000.0  # loss weights, logit constants, clipping norm [0.8, 1.5, 5.0]


def image_problems(dataset: str, cutout: int, augment_pad: int) -> list[tuple[str, str]]:
    """(field, what is wrong) for augmentation that destroys the images of ``dataset`` (the
    paper's CIFAR-10 settings on 8x8 digits), found before anything is loaded: the rule of
    ``DeviceLoader`` (enastool.data.loader), which applies it again to the images it gets.
    Not a rule of ``validate``: a paper configuration resolved without a data directory is
    still a configuration (benchmarks and tests build networks from it)."""
    side = IMAGE_SIDES.get(dataset)
    if side is None:
        return []
    fix = ""
    if not DATASET_READS_FILES.get(dataset, True):
        fix = (f" (the paper presets are for 32x32 CIFAR-10: use --preset smoke on {dataset}, or "
               "--data-dir DIR for CIFAR-10)")
    found = []
    if cutout >= side:
        found.append(("cutout", f"covers the whole {side}x{side} image of {dataset}; lower it{fix}"))
    if 2 * augment_pad >= side:
        found.append(("augment_pad", f"shifts the {side}x{side} images of {dataset} by half their "
                                     f"size or more; lower it{fix}"))
    return found


def _nao_problems(config) -> list[tuple[str, str]]:
    """What strategy nao cannot do with ``config``: encode its architectures as NAO tokens
    (``enastool.encoding.tokens``), or keep the best of its pool."""
    found = []
    try:
        build_token_scheme(config)
    except EnasError as e:
        found.append(("strategy", f"cannot encode these architectures: {e}; choose a size it accepts, "
                                  "or another strategy"))
    pool = config.nao_pool
    if config.nao_new >= pool:
        found.append(("nao_new", f"must be less than nao_pool = {pool} (the best of the pool stay)"))
    if config.nao_top > pool:
        found.append(("nao_top", f"must not exceed nao_pool = {pool}"))
    return found


def _one_of(choices):
    return lambda v: None if v in choices else f"is not one of {', '.join(map(str, choices))}"


def _in_range(low, high, low_open=False, high_open=False):
    """A rule for numbers in [low, high] (``low_open``/``high_open``: that end excluded); NaN and
    infinities are refused too."""

    def rule(v):
        # An int may be too large for a float (math.isfinite would raise): it is finite anyway.
        finite = isinstance(v, int) or math.isfinite(v)
        ok_low = v > low if low_open else v >= low
        ok_high = v < high if high_open else v <= high
        if finite and ok_low and ok_high:
            return None
        return f"must be in {'(' if low_open else '['}{low:,}, {high:,}{')' if high_open else ']'}"

    return rule


def _switch(v):
    return None if v in (True, False, AUTO) else "must be auto, true or false"


def _non_empty(v):
    return None if v.strip() else "must not be empty"


# Upper bounds of the rnn settings: far beyond any published setting, low enough to catch a
# typo (an extra zero) before it allocates memory.
MAX_HIDDEN = 65_536
MAX_VOCAB = 10_000_000  # info --vocab: far beyond any corpus (PTB: 10,000)
MAX_BPTT = 10_000
MAX_PENALTY_WEIGHT = 1_000.0
MAX_INIT_RANGE = 1.0
MAX_DISTANCE_PRIOR = 1e6
MAX_NONMONO = 10_000
MAX_TEST_BATCH = 65_536
DROP_RATES = (
    "drop_words", "drop_embedding", "drop_inputs", "drop_hidden", "drop_output", "drop_weights",
)

# Settings that only the networks of one data kind read. Given on the command line for a
# space of the other kind they are refused (silently ignoring them would mislead); a TOML
# file may hold both kinds, since one file can serve several runs.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    IMAGES: (
        "layers", "channels", "num_blocks", "val_size", "keep_prob", "drop_path_keep", "aux_weight",
        "augment_pad", "augment_flip", "cutout", "skip_target", "skip_weight",
    ),
    TEXT: (
        "num_nodes", "hidden_size", "bptt", *DROP_RATES, "alpha", "beta", "init_range",
        "distance_prior", "nonmono", "test_batch_size",
    ),
}

def _ghost_batch_size(v):
    # A ghost of one image would normalise each image by itself.
    if v == 0 or 2 <= v <= MAX_BATCH_SIZE:
        return None
    return f"must be 0 (off) or in [2, {MAX_BATCH_SIZE}]"


def _probability(low_open=False, high_open=False):
    return _in_range(0, 1, low_open=low_open, high_open=high_open)


def _positive(high):
    return _in_range(0, high, low_open=True)


def _non_negative(high):
    return _in_range(0, high)


# One rule per setting; every numeric setting of both configs has one (a test checks that).
RULES: dict[str, Any] = {
    "space": _one_of(tuple(SPACES)),
    "strategy": _one_of(STRATEGIES),
    "dataset": _one_of(DATASETS),
    "dtype": _one_of(DTYPES),
    "device": _non_empty,
    "channels_last": _switch,
    "compile": _switch,
    "seed": _in_range(0, MAX_SEED),
    "epochs": _in_range(1, MAX_EPOCHS),
    "batch_size": _in_range(1, MAX_BATCH_SIZE),
    "layers": _in_range(1, MAX_LAYERS),
    "channels": _in_range(1, MAX_CHANNELS),
    "num_blocks": _in_range(1, MAX_BLOCKS),
    "val_size": _in_range(1, MAX_IMAGES),
    "augment_pad": _in_range(0, MAX_PIXELS),
    "cutout": _in_range(0, MAX_PIXELS),
    "ghost_batch_size": _ghost_batch_size,
    "lr_t0": _in_range(1, MAX_EPOCHS),
    "lr_tmul": _in_range(1, MAX_CYCLE_FACTOR),
    "checkpoint_every": _in_range(1, MAX_EPOCHS),
    "eval_every": _in_range(1, MAX_EPOCHS),
    "log_every": _in_range(1, MAX_STEPS),
    "lstm_size": _in_range(1, MAX_LSTM_SIZE),
    "lstm_layers": _in_range(1, MAX_LSTM_LAYERS),
    **{name: _in_range(1, MAX_COUNT)
       for name in ("controller_samples", "controller_updates", "derive_samples", "derive_batches")},
    "keep_prob": _probability(low_open=True),
    "drop_path_keep": _probability(low_open=True),
    "momentum": _probability(high_open=True),
    "baseline_decay": _probability(high_open=True),
    "controller_beta1": _probability(high_open=True),
    "oneshot_drop_max": _probability(high_open=True),
    "oneshot_drop_ramp": _probability(low_open=True),
    "nao_pool": _in_range(2, MAX_COUNT),  # the EPD trains on two at least
    "nao_eval_every": _in_range(1, MAX_EPOCHS),
    "nao_score_examples": _in_range(2, MAX_IMAGES),  # batch statistics need two
    "nao_epd_epochs": _in_range(1, MAX_EPOCHS),
    **{name: _in_range(1, MAX_COUNT) for name in ("nao_top", "nao_new", "nao_max_eta")},
    "skip_target": _probability(low_open=True, high_open=True),
    "l2": _probability(),  # weight decay of 1 would wipe the weights every step
    "lr_max": _positive(MAX_RATE),
    "lr_min": _non_negative(MAX_RATE),
    "controller_lr": _positive(MAX_RATE),
    "controller_eps": _positive(1.0),
    "op_tanh_reduce": _positive(MAX_COEFFICIENT),
    "temperature": _positive(MAX_COEFFICIENT),
    **{name: _non_negative(MAX_COEFFICIENT)
       for name in ("grad_clip", "tanh_constant", "entropy_weight", "skip_weight", "aux_weight")},
    "num_nodes": _in_range(1, MAX_NODES),
    "hidden_size": _in_range(1, MAX_HIDDEN),
    "bptt": _in_range(1, MAX_BPTT),
    **{name: _in_range(0, 1, high_open=True) for name in DROP_RATES},
    "alpha": _in_range(0, MAX_PENALTY_WEIGHT),
    "beta": _in_range(0, MAX_PENALTY_WEIGHT),
    "init_range": _in_range(0, MAX_INIT_RANGE, low_open=True),
    "distance_prior": _in_range(0, MAX_DISTANCE_PRIOR),
    "nonmono": _in_range(1, MAX_NONMONO),
    "test_batch_size": _in_range(1, MAX_TEST_BATCH),
}


# --------------------------------------------------------------------------------------------
# Types: TOML and CLI values are checked against the dataclass annotations.
# --------------------------------------------------------------------------------------------

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _allowed_types(cls, key: str) -> tuple[type, ...]:
    hint = typing.get_type_hints(cls)[key]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def coerce_value(cls, key: str, value: Any, source: str) -> Any:
    """``value`` checked against the type of field ``key`` (ints widen to floats; switch
    words become booleans); EnasError naming key, source and expected type otherwise."""
    allowed = _allowed_types(cls, key)
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, bool):
        if bool in allowed:
            return value
    elif isinstance(value, int):
        if int in allowed:
            return value
        if float in allowed:
            return float(value)
    elif isinstance(value, float):
        if float in allowed:
            return value
    elif isinstance(value, str):
        if bool in allowed and value.lower() in SWITCH_WORDS:
            return SWITCH_WORDS[value.lower()]
        if str in allowed:
            return value
    expected = " or ".join(_TYPE_WORDS[t] for t in allowed if t in _TYPE_WORDS)
    if bool in allowed and str in allowed:
        expected = 'true, false or "auto"'
    raise EnasError(
        f"{source}: {key} = {short_repr(value)} has type {type(value).__name__}, "
        f"expected {expected}"
    )


def check_known_key(cls, key: str, source: str, table: str | None = None) -> None:
    if key in cls.field_names():
        return
    close = difflib.get_close_matches(key, cls.field_names(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; it is not a {cls.kind} setting"
    where = f" in [{table}]" if table else ""
    raise EnasError(f"{source}: unknown key {key!r}{where}{hint}")


def short_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# TOML reading and writing.
# --------------------------------------------------------------------------------------------


def read_toml_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise EnasError(f"{path}: config file not found; check the --config path") from None
    except IsADirectoryError:
        raise EnasError(f"{path}: is a folder; --config takes a .toml file") from None
    except tomllib.TOMLDecodeError as e:
        raise EnasError(f"{path}: not valid TOML ({e}); fix the syntax") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EnasError(f"{path}: cannot read the config file ({e})") from None


def load_toml_values(cls, path: str | Path) -> dict[str, Any]:
    """The values a TOML file sets for config class ``cls``, type-checked.

    The file is either flat (every top-level key is a setting of this kind) or has
    ``[search]`` and/or ``[final]`` tables; top-level keys then apply to both kinds and the
    kind's own table wins. The other kind's table is checked for unknown keys too, so a typo
    is reported whichever kind of run reads the file.
    """
    source = str(path)
    document = read_toml_file(path)
    values: dict[str, Any] = {}
    own_table: dict[str, Any] = {}
    for key, value in document.items():
        if key in CONFIG_CLASSES and isinstance(value, dict):
            other = CONFIG_CLASSES[key]
            for inner in value:
                check_known_key(other, inner, source, table=key)
            if other is cls:
                own_table = value
            continue
        check_known_key(cls, key, source)
        values[key] = coerce_value(cls, key, value, source)
    for key, value in own_table.items():
        values[key] = coerce_value(cls, key, value, f"{source} [{cls.kind}]")
    return values


def toml_value(value: Any) -> str:
    """One scalar as TOML text (str, int, float, bool)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # always has "." or "e", so TOML reads it back as a float
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                 "\f": "\\f", "\r": "\\r"}


def _toml_char(c: str) -> str:
    if c in _TOML_ESCAPES:
        return _TOML_ESCAPES[c]
    if ord(c) < 0x20 or ord(c) == 0x7F:  # other control characters must be escaped
        return f"\\u{ord(c):04x}"
    return c


# --------------------------------------------------------------------------------------------
# Resolution.
# --------------------------------------------------------------------------------------------

COMMAND_LINE = "command line"


def _parse_arch(space: str, arch: Any):
    """An architecture object from an object or its integer text (an optional space word first)."""
    if not isinstance(arch, str):
        if getattr(arch, "space", None) != space:
            raise EnasError(
                f"the architecture is a {getattr(arch, 'space', '?')} architecture but the "
                f"space is {space}; pass --space {getattr(arch, 'space', '?')}"
            )
        return arch
    tokens = arch.split()
    if tokens and tokens[0] in SPACES:
        if tokens[0] != space:
            raise EnasError(
                f"arch: a {tokens[0]} architecture but the space is {space}; "
                f"pass --space {tokens[0]}"
            )
        tokens = tokens[1:]
    try:
        ints = [int(t) for t in tokens]
    except ValueError:
        raise EnasError(
            f"arch: expected whitespace-separated integers, found {short_repr(arch)}"
        ) from None
    try:
        return space_class(space).from_ints(ints)
    except EnasError as e:
        raise EnasError(f"arch: {e}") from None


def _resolve(cls, preset, space, config_file, overrides, arch=None, origins=None, check_data=False):
    origins_given = dict(origins or {})
    # None = not given, except for a key with an origin: --set val_size=none unsets it.
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None or k in origins_given}
    for key in overrides:
        if key not in cls.field_names():  # the CLI maps its options onto fields: a bug here
            raise ValueError(f"override {key!r} is not a {cls.kind} config field")
    file_values = load_toml_values(cls, config_file) if config_file is not None else {}
    arch_space = None if arch is None or isinstance(arch, str) else getattr(arch, "space", None)
    space = overrides.get("space") or space or file_values.get("space") or arch_space or "macro"
    if space not in SPACES:
        raise EnasError(f"unknown space {space!r}, expected one of {', '.join(SPACES)}")
    _check_kind_fields(space, overrides)

    values: dict[str, Any] = {}
    origins: dict[str, str] = {}

    def layer(new_values: Mapping[str, Any], origin: str) -> None:
        for key, value in new_values.items():
            values[key] = coerce_value(cls, key, value, origin)
            origins[key] = origin

    strategy = overrides.get("strategy") or file_values.get("strategy")  # picks search additions
    layer(preset_values(cls.kind, preset, space, strategy), f"preset {preset!r}")
    layer(file_values, str(config_file))
    for key, value in overrides.items():
        layer({key: value}, origins_given.get(key, COMMAND_LINE))
    layer({"space": space}, origins.get("space", COMMAND_LINE))
    if "dataset" not in values:
        # No preset names a data set: the space's kind's embedded one (digits, pydoc), or the
        # one a data directory holds (CIFAR-10, PTB), so that every command runs out of the box.
        embedded, with_dir = DATASETS_OF_KIND[data_kind(space)]
        layer({"dataset": with_dir if values.get("data_dir") else embedded},
              f"default ({with_dir} with --data-dir, else {embedded})")
    if arch is not None:
        layer({"arch": arch if isinstance(arch, str) else arch.format()}, "arch")

    if "arch" in cls.field_names() and values.get("arch") is not None:
        parsed = _parse_arch(space, values["arch"])
        values["arch"] = parsed.format()  # canonical one-line text
        if space == "macro":
            _take_layers_from_arch(parsed.num_layers, values, origins)

    config = cls(**values)
    config.validate(origins)
    if check_data:
        for key, message in image_problems(config.dataset, config.cutout, config.augment_pad):
            # A value no layer set is the dataclass default: the authors' setting, as in paper.
            origin = origins.get(key, f"preset {preset!r}")
            raise EnasError(f"{origin}: {key} = {getattr(config, key)} {message}")
    return config


def _check_kind_fields(space: str, overrides: Mapping[str, Any]) -> None:
    """EnasError for a command-line setting that only the other data kind's spaces read."""
    kind = data_kind(space)
    for key in overrides:
        owner = next((k for k, names in KIND_FIELDS.items() if key in names), kind)
        if owner != kind:
            spaces = [name for name, k in DATA_KINDS.items() if k == owner]
            raise EnasError(
                f"{COMMAND_LINE}: {key} is a setting of {' and '.join(spaces)} runs, which "
                f"{space} runs do not read; drop it"
            )


def _take_layers_from_arch(num_layers: int, values: dict, origins: dict) -> None:
    """A macro network has exactly the architecture's layers: the count is not a free knob."""
    origin = origins.get("layers", "preset")
    given_by_user = not origin.startswith("preset")
    if given_by_user and values["layers"] != num_layers:
        raise EnasError(
            f"{origin}: layers = {values['layers']} but the macro architecture has "
            f"{num_layers} layers; drop the layers setting"
        )
    values["layers"] = num_layers
    origins["layers"] = "arch"


def resolve_search_config(
    preset: str = "paper",
    space: str | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    origins: Mapping[str, str] | None = None,
    check_data: bool = False,
) -> SearchConfig:
    """defaults < ``preset`` for ``space`` < ``config_file`` < ``overrides`` (None = not given).

    ``space`` picks the preset column; when None it comes from the overrides, then the
    file, else "macro". ``origins`` names where an override came from (key -> e.g.
    ``"--set epochs=3"``) for error messages; the default is "command line". ``check_data``
    also refuses settings that cannot work on the data set (``image_problems``: the paper's
    CIFAR-10 augmentation on 8x8 digits), as the data loader would later, after torch and the
    data have loaded; the CLI asks for it so that such a command fails at once.
    """
    return _resolve(SearchConfig, preset, space, config_file, overrides, origins=origins,
                    check_data=check_data)


def resolve_final_config(
    preset: str = "paper",
    space: str | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    arch: Any = None,
    origins: Mapping[str, str] | None = None,
    check_data: bool = False,
) -> FinalConfig:
    """As :func:`resolve_search_config`, for final training of ``arch``.

    ``arch`` (an architecture object or its integer text; else the ``arch`` key of the file or
    overrides) is stored in canonical text. For the macro space it fixes ``layers`` to the
    architecture's own count; a different explicit ``layers`` is an error.
    """
    return _resolve(FinalConfig, preset, space, config_file, overrides, arch, origins=origins,
                    check_data=check_data)


def default_preset(cls, config_file: str | Path | None, overrides: Mapping[str, Any]) -> str:
    """The preset when none is given: ``paper`` for a data set read from files (CIFAR-10, PTB),
    and ``smoke`` for the embedded ones (digits, pydoc), the data sets without a data directory.

    The paper settings are CIFAR-10's (32x32 crops, cutout 16) and hundreds of epochs; on 8x8
    digits they are refused (``image_problems``), so without this a bare ``enastool search
    --space micro --out runs/x`` could only fail. The data set is the one the file and the
    overrides (None = not given) name, else what ``_resolve`` picks (CIFAR-10 or PTB with a
    data directory, else digits or pydoc).
    """
    values = load_toml_values(cls, config_file) if config_file is not None else {}
    values.update({key: value for key, value in overrides.items() if value is not None})
    dataset = values.get("dataset")
    # Without a data set named, _resolve picks the space's kind's embedded one (digits, pydoc),
    # or the one a data directory holds (CIFAR-10, PTB): the data directory decides.
    reads_files = DATASET_READS_FILES.get(dataset, True) if dataset else bool(values.get("data_dir"))
    return PAPER_PRESET if reads_files else SMOKE_PRESET


# --------------------------------------------------------------------------------------------
# --set KEY=VALUE: any setting from the command line.
# --------------------------------------------------------------------------------------------

NONE_WORDS = ("none", "null")  # --set val_size=none: back to "not set" (TOML has no null)


def parse_assignment(cls, text: str) -> tuple[str, Any]:
    """(key, value) of one ``--set KEY=VALUE``, typed as the field ``key`` of ``cls`` needs.

    VALUE is read as a TOML value (``1e-3``, ``20``, ``true``, ``"cuda:0"``); a bare word that
    is not one (``auto``, ``cuda:0``, a path) is a string; ``none`` unsets a setting that may
    be unset. Then the config's own coercion applies (an int widens to a float; on/off are
    switches); ranges are checked when the config is resolved. EnasError names the assignment.
    """
    source = f"--set {text}"
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise EnasError(f"{source}: expected KEY=VALUE, e.g. --set controller_lr=1e-3")
    check_known_key(cls, key, source)
    allowed = _allowed_types(cls, key)
    if raw.lower() in NONE_WORDS and type(None) in allowed:
        return key, None
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    try:
        return key, coerce_value(cls, key, value, source)
    except EnasError:
        if str in allowed and value != raw:  # a name that reads as a number: device=0, data_dir=1
            return key, raw
        raise
