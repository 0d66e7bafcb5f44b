"""Train-step throughput of supernets and final networks; final-training epoch time.

Every figure is at the authors' settings (reference sec. 4 and 8), on CIFAR-10-shaped data
(macro, micro) or random Penn-Treebank-sized token windows (rnn).

    python benchmarks/bench_nn.py --device cpu --dtype fp32 --small
    python benchmarks/bench_nn.py --device cuda --dtype bf16
    python benchmarks/bench_nn.py --device auto --what epoch
    python benchmarks/bench_nn.py --device cpu --channels-last off --kernels native   # the old CPU path

For each space it times full training steps (forward, cross-entropy, backward, SGD step) on
CIFAR-10 shaped random data that lives on the device:
- supernet: the authors' search settings, a freshly sampled architecture every step (the
  architecture sampling is part of the timed step, as it is in a search);
- final: the authors' final architecture at the final-training settings (micro: auxiliary
  loss with weight 0.4 and drop path at mid-training strength included).

Columns: images/s, ms/step, peak memory (CUDA: max allocated during the row; CPU: peak
resident set size of the whole process so far, from getrusage, so it never goes down), the
counted forward GFLOPs per image, and achieved GFLOP/s = 3 x forward FLOPs x images/s. The 3x
is the usual training estimate: the backward pass costs about two forwards (gradients with
respect to the activations and to the weights). Forward FLOPs come from
``enastool.nn.counting`` (convolutions and matmuls only, multiply-add = 2); for the supernets
they are the mean over the architectures of the timed steps. bf16 means autocast, used on
CUDA only. The tables go to stdout; ``--json FILE`` also writes every row as a dict.

Every network is put in place as the commands do (``enastool.train.device``: memory format and
op kernels; ``--channels-last``, ``--kernels`` and ``--compile`` override the policy). Compile
of a step row: final networks are compiled whole, as the trainer does (``auto`` = on for
CUDA); supernets run eager, as the search does (their graph changes every step), unless
``--compile on`` asks for the experiment of compiling every candidate op module on its own
(``compile_ops``); the compilation then happens in the warm-up steps, which are not timed.

Recurrent rows (``--space rnn``, in a table of their own): full training steps of the rnn
language models (``enastool.nn.recurrent``) on random token ids that live on the device,
vocabulary 10,000, windows of 35 steps: forward with the state carried (detached) from the
step before, cross-entropy, the regularisers of the reference (L2 of the used matrices times
the weight decay, activation L2 / slowness), backward, gradient clipping, plain SGD:
- supernet: the search settings (H = 200, batch 128, all search dropouts), a fresh uniformly
  sampled 8-node cell every step;
- final: the published ENAS cell at the final settings (H = 800, batch 64, final dropouts).
Columns: tokens/s (batch x 35 per step), ms/step, peak memory as above, forward GFLOP per
token (``recurrent_counts``: every matrix product, softmax included; the same for every cell
of N nodes) and GFLOP/s = 3 x that x tokens/s. ``--small``: H = 32, batch 8, same vocabulary
and window.

``--count-only`` skips the timing and prints the forward FLOPs (and multiply-adds, half of
them: the unit papers quote) of the same rows, the supernet rows over the architectures a
timed run with the same ``--warmup`` and ``--steps`` would sample.

Final-training epoch (``--what epoch``): the real trainer (``enastool.train.trainer``, with
its data loader, augmentation, gradient clipping, schedule, evaluation and checkpointing, and
torch.compile as ``--compile`` says) trains the authors' final architecture at the ``paper``
final settings on random CIFAR-10-shaped images for two short epochs of ``--steps`` steps each.
The second one is timed (the first pays for compilation and warm-up): its training steps,
its test pass over ``--steps`` evaluation batches and its checkpoint write. The epoch time is
**extrapolated** from those to one real epoch: 50,000 training images (50000 // batch steps),
10,000 test images, one last.pt; the paper-run column multiplies it by the paper's epochs.

rnn final-training epoch (``--what epoch`` with ``--space rnn`` or ``all``): the language-model
trainer (``enastool.train.lm``: random-length windows, the carried state, the loss's
regularisers, clipping, validation, NT-ASGD bookkeeping, checkpoints) trains the published
ENAS cell at the ``paper`` final settings on random tokens of PTB's vocabulary for three short
epochs of ``--steps`` windows, with ``--steps`` validation windows and ``--steps`` test windows
(batch 1, as the reference tests). The first epoch warms up; the second times training,
validation and the last.pt write; the third (the last) validates and then tests, which times
the test. Extrapolated to PTB: 929,589 / 73,760 / 82,430 tokens give 414 training windows per
epoch at batch 64, 33 validation windows and 2,356 test windows of batch 1 (read once, at the
end); the paper-run column is 3,000 epochs plus the one test.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from enastool.config import resolve_final_config
from enastool.data import corpora, datasets
from enastool.data.text import Vocabulary, make_corpus
from enastool.encoding import MacroArch, MicroArch, RecurrentArch
from enastool.nn.counting import FLOPS_PER_MULT_ADD, count_flops
from enastool.nn.kernels import KERNELS
from enastool.nn.recurrent import (
    FINAL_ALPHA,
    FINAL_BETA,
    FINAL_DROP_RATES,
    FINAL_HIDDEN,
    FINAL_INIT_RANGE,
    PTB_VOCAB,
    SEARCH_ALPHA,
    SEARCH_BETA,
    SEARCH_DROP_RATES,
    SEARCH_HIDDEN,
    SEARCH_INIT_RANGE,
    RecurrentNet,
    RecurrentSupernet,
    activation_penalty,
    recurrent_counts,
)
from enastool.runs import RunDir
from enastool.nn.blocks import ConvBN, FactorizedReduce, MacroBranch, SepConv
from enastool.train.device import Placement, resolve_device, resolve_placement
from enastool.train.evaluate import EVAL_BATCH_MULTIPLIER, network_output
from enastool.train.trainer import train_final
from enastool.encoding.textio import load_one
from enastool.nn.final import build_final_network
from enastool.nn.supernet import MacroSupernet, MicroSupernet

# The authors' final architectures (reference sec. 3), as the repository's fixtures hold them.
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# CIFAR-10 shaped data.
IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10

# Optimiser of every timed step (reference sec. 4: SGD, momentum 0.9, Nesterov).
LR = 0.05
MOMENTUM = 0.9
AUX_WEIGHT = 0.4  # the micro final network's auxiliary loss weight
DROP_PATH_PROGRESS = 0.5  # time drop path at mid-training strength
MIB = 2**20
KIB = 2**10  # ru_maxrss is in KiB on Linux


@dataclass(frozen=True)
class Setting:
    """One row of the table: which network and at what size."""

    space: str
    what: str  # "supernet" or "final"
    layers: int
    channels: int
    batch: int
    blocks: int = 5  # micro supernet only
    keep_prob: float = 0.9

    def describe(self) -> str:
        blocks = f" B={self.blocks}" if self.space == "micro" and self.what == "supernet" else ""
        return f"L={self.layers} C={self.channels}{blocks} batch={self.batch}"


# The authors' settings (reference sec. 4).
SETTINGS = [
    Setting("macro", "supernet", layers=12, channels=36, batch=128, keep_prob=0.9),
    Setting("micro", "supernet", layers=6, channels=20, batch=160, blocks=5, keep_prob=0.9),
    Setting("macro", "final", layers=24, channels=96, batch=100, keep_prob=0.5),
    Setting("micro", "final", layers=15, channels=36, batch=144, keep_prob=0.8),
]
# --small: same depth and architectures, narrow and small batches, for a quick CPU run.
SMALL_CHANNELS = {"macro": 8, "micro": 4}
SMALL_BATCH = 8


def authors_arch(space: str):
    return load_one(FIXTURES / f"{space}_final.txt", space=space)


# Recurrent language models (reference sec. 8).
RNN_CELL = "0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2"  # the published ENAS cell (8 nodes)
RNN_NODES = 8
BPTT = 35
RNN_LR = 20.0  # plain SGD, as the authors
RNN_WEIGHT_DECAY = 8e-7
RNN_CLIP = {"supernet": 0.1, "final": 0.25}
RNN_SMALL_HIDDEN = 32


@dataclass(frozen=True)
class RnnSetting:
    """One row of the recurrent table."""

    what: str  # "supernet" or "final"
    hidden: int
    batch: int
    vocab: int = PTB_VOCAB
    bptt: int = BPTT

    def describe(self) -> str:
        return f"H={self.hidden} batch={self.batch} bptt={self.bptt} vocab={self.vocab}"


RNN_SETTINGS = [RnnSetting("supernet", SEARCH_HIDDEN, 128), RnnSetting("final", FINAL_HIDDEN, 64)]


class ArchStep(nn.Module):
    """A supernet with one architecture fixed, so that it can be counted like any module."""

    def __init__(self, net: nn.Module, arch):
        super().__init__()
        self.net, self.arch = net, arch

    def forward(self, x):
        return self.net(x, self.arch)


class StepTimer:
    """Times ``step`` (defined by each runner) on ``self.device``."""

    device: torch.device
    sampled: list  # supernet rows: the architectures of the timed steps

    def step(self) -> None:
        raise NotImplementedError

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time_steps(self, warmup: int, steps: int) -> float:
        """Seconds per step over ``steps`` steps after ``warmup`` untimed ones."""
        for _ in range(warmup):
            self.step()
        self.sampled.clear()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.sync()
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.sync()
        return (time.perf_counter() - start) / steps

    def peak_memory_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / MIB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB / MIB


class Runner(StepTimer):
    """Builds one setting's network and times its training steps."""

    def __init__(self, setting: Setting, placement: Placement, compile_net: bool = False):
        self.setting, self.device = setting, placement.device
        self.bf16 = placement.dtype == torch.bfloat16
        self.format = placement.memory_format
        device = self.device
        s = setting
        if s.what == "supernet":
            if s.space == "macro":
                net = MacroSupernet(s.layers, s.channels, IMAGE_SHAPE[0], NUM_CLASSES, s.keep_prob)
            else:
                net = MicroSupernet(
                    s.layers, s.channels, s.blocks, IMAGE_SHAPE[0], NUM_CLASSES, s.keep_prob
                )
            self.arch = None
        else:
            self.arch = authors_arch(s.space)
            net = build_final_network(
                self.arch,
                layers=s.layers,
                channels=s.channels,
                in_channels=IMAGE_SHAPE[0],
                num_classes=NUM_CLASSES,
                keep_prob=s.keep_prob,
            )
            if hasattr(net, "set_drop_path_progress"):
                net.set_drop_path_progress(DROP_PATH_PROGRESS)
        self.net = placement.prepare(net).train()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)
        self.step_net = self.net
        if compile_net and self.arch is None:
            compile_ops(self.net)
        elif compile_net:
            self.step_net = torch.compile(self.net)
        x = torch.randn(s.batch, *IMAGE_SHAPE, device=device)
        self.x = x.contiguous(memory_format=self.format)
        self.y = torch.randint(0, NUM_CLASSES, (s.batch,), device=device)
        self.rng = random.Random(0)
        self.sampled: list = []

    def sample(self):
        s = self.setting
        if s.space == "macro":
            return MacroArch.sample(self.rng, num_layers=s.layers)
        return MicroArch.sample(self.rng, num_blocks=s.blocks)

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if self.arch is None:
                arch = self.sample()
                self.sampled.append(arch)
                logits, aux = self.step_net(self.x, arch), None
            else:
                logits, aux = network_output(self.step_net(self.x))
            loss = F.cross_entropy(logits.float(), self.y)
            if aux is not None:
                loss = loss + AUX_WEIGHT * F.cross_entropy(aux.float(), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def sample_without_training(self, warmup: int, steps: int) -> None:
        """Draw the architectures ``time_steps`` would time, without running any step."""
        if self.arch is None:
            for _ in range(warmup):
                self.sample()
            self.sampled = [self.sample() for _ in range(steps)]

    def forward_flops(self) -> float:
        """Forward FLOPs per image: the final network's, or the supernets' mean over the
        architectures of the timed steps."""
        if self.arch is not None:
            return count_flops(self.net, IMAGE_SHAPE)
        counts = [count_flops(ArchStep(self.net, arch), IMAGE_SHAPE) for arch in self.sampled]
        return sum(counts) / len(counts)


# The candidate-op modules of the supernets, compiled one by one by compile_ops.
OP_MODULES = (SepConv, MacroBranch, FactorizedReduce, ConvBN)


def compile_ops(supernet: nn.Module) -> int:
    """Compile every candidate-op module of ``supernet`` on its own (an experiment: the search
    runs eager). Returns how many modules it compiled."""
    ops = [m for m in supernet.modules() if isinstance(m, OP_MODULES)]
    for module in ops:
        module.compile()
    return len(ops)


class RnnRunner(StepTimer):
    """Builds one recurrent setting's network and times its training steps."""

    def __init__(self, setting: RnnSetting, device: torch.device, bf16: bool):
        self.setting, self.device, self.bf16 = setting, device, bf16
        s = setting
        if s.what == "supernet":
            net = RecurrentSupernet(s.vocab, RNN_NODES, s.hidden, SEARCH_DROP_RATES, SEARCH_INIT_RANGE)
            self.arch, self.alpha, self.beta = None, SEARCH_ALPHA, SEARCH_BETA
        else:
            self.arch = RecurrentArch.from_ints([int(v) for v in RNN_CELL.split()])
            net = RecurrentNet(self.arch, s.vocab, s.hidden, FINAL_DROP_RATES, FINAL_INIT_RANGE)
            self.alpha, self.beta = FINAL_ALPHA, FINAL_BETA
        self.net = net.to(device).train()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=RNN_LR)
        self.clip = RNN_CLIP[s.what]
        ids = torch.randint(0, s.vocab, (s.batch, s.bptt + 1), generator=torch.Generator().manual_seed(0))
        ids = ids.to(device)
        self.x, self.y = ids[:, :-1], ids[:, 1:]
        self.state = None
        self.rng = random.Random(0)
        self.sampled: list = []

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if self.arch is None:
                arch = RecurrentArch.sample(self.rng, RNN_NODES)
                self.sampled.append(arch)
                out = self.net(self.x, arch, self.state)
                l2 = self.net.l2_penalty(arch)
            else:
                out = self.net(self.x, self.state)
                l2 = self.net.l2_penalty()
            loss = F.cross_entropy(out.logits.float().flatten(0, 1), self.y.flatten())
            loss = loss + RNN_WEIGHT_DECAY * l2 + activation_penalty(out.outputs.float(), self.alpha, self.beta)
        self.state = out.state.detach()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.opt.step()

    def forward_flops(self) -> float:
        """Forward FLOPs per token (the same for every cell of RNN_NODES nodes)."""
        arch = self.arch or RecurrentArch.sample(0, RNN_NODES)
        return recurrent_counts(arch, self.setting.hidden, self.setting.vocab)["flops"]


# --------------------------------------------------------------------------------------------
# Final-training epoch time: the real trainer on random CIFAR-10-shaped data.
# --------------------------------------------------------------------------------------------

CIFAR10_TRAIN_IMAGES = 50_000
CIFAR10_TEST_IMAGES = 10_000
TIMED_EPOCHS = 2  # the first warms up (and compiles), the second is timed
SECONDS_PER_HOUR = 3600
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16"}  # this script's names -> the config's


@contextmanager
def random_cifar10(train_images: int, test_images: int):
    """Register random uint8 images of CIFAR-10's shape under the name cifar10 for a while, so
    the trainer loads them through its ordinary data path (no files needed)."""
    def read(data_dir, purpose):
        generator = torch.Generator().manual_seed(0)

        def split(count: int):
            images = torch.randint(0, 256, (count, *IMAGE_SHAPE), dtype=torch.uint8, generator=generator)
            return images, torch.randint(0, NUM_CLASSES, (count,), generator=generator)

        test = split(test_images)
        return split(train_images), test, test

    saved = datasets.DATASETS["cifar10"]
    datasets.DATASETS["cifar10"] = datasets.DatasetSource(
        "cifar10", "random CIFAR-10-shaped images (benchmark)", NUM_CLASSES, needs_files=False, read=read,
    )
    try:
        yield
    finally:
        datasets.DATASETS["cifar10"] = saved


class EventClock:
    """A trainer callback that notes when each event arrives (every event follows a host sync:
    a log line reads the loss, evaluation reads its sums, a checkpoint copies to the host)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.events: list[tuple[float, dict]] = []

    def __call__(self, event: dict) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.events.append((time.perf_counter(), event))

    def at(self, kind: str, **match) -> float:
        """Time of the last event of ``kind`` whose fields equal ``match``."""
        times = [t for t, e in self.events if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]
        if not times:
            raise RuntimeError(f"no {kind} event with {match}")
        return times[-1]


def final_epoch_config(space: str, args: argparse.Namespace, device: torch.device, steps: int):
    """The paper final settings of ``space``, on this device, for two short timed epochs."""
    overrides = dict(
        device=str(device), dtype=DTYPE_NAMES[args.dtype], channels_last=SWITCHES[args.channels_last],
        compile=SWITCHES[args.compile], dataset="cifar10", epochs=TIMED_EPOCHS, eval_every=1, checkpoint_every=1,
        log_every=steps,  # one log line (and host sync) exactly at the end of each epoch
    )
    if args.small:
        overrides.update(channels=SMALL_CHANNELS[space], batch_size=SMALL_BATCH)
    return resolve_final_config("paper", space, overrides=overrides, arch=authors_arch(space))


def time_final_epoch(space: str, args: argparse.Namespace, device: torch.device) -> tuple:
    """One row of the epoch table (see the module docstring)."""
    steps = args.steps
    probe = final_epoch_config(space, args, device, steps)
    eval_batch = probe.batch_size * EVAL_BATCH_MULTIPLIER
    with random_cifar10(steps * probe.batch_size, steps * eval_batch), tempfile.TemporaryDirectory() as folder:
        config = probe
        run = RunDir.create(Path(folder) / "run", config)
        clock = EventClock(device)
        train_final(None, config, run, callback=clock)
    # Epoch 2 runs from the last checkpoint of epoch 1 to its log line at step 2 x steps, then
    # tests (the epoch event) and writes last.pt (best.pt too when the random labels improve).
    train_s = clock.at("step", step=TIMED_EPOCHS * steps) - clock.at("checkpoint", name="last.pt", epoch=1)
    eval_s = clock.at("epoch", epoch=TIMED_EPOCHS) - clock.at("step", step=TIMED_EPOCHS * steps)
    save_s = clock.at("checkpoint", name="last.pt", epoch=TIMED_EPOCHS) - clock.at("epoch", epoch=TIMED_EPOCHS)
    start = next(e for _, e in clock.events if e["kind"] == "start")
    train_steps = CIFAR10_TRAIN_IMAGES // config.batch_size
    eval_batches = math.ceil(CIFAR10_TEST_IMAGES / eval_batch)
    epoch_s = train_s / steps * train_steps + eval_s / steps * eval_batches + save_s
    paper_epochs = resolve_final_config("paper", space).epochs
    return (
        space, f"L={config.layers} C={config.channels} batch={config.batch_size}",
        start["dtype"], "channels_last" if start["channels_last"] else "nchw",
        "on" if start["compile"] else "off",
        f"{train_s / steps * 1e3:.1f}", f"{config.batch_size * steps / train_s:.1f}",
        f"{eval_s / steps * 1e3:.1f}", f"{save_s * 1e3:.0f}",
        f"{epoch_s:.1f}", f"{epoch_s * paper_epochs / SECONDS_PER_HOUR:.1f} ({paper_epochs} ep)",
    )


# --------------------------------------------------------------------------------------------
# rnn final-training epoch time: the language-model trainer on random PTB-shaped tokens.
# --------------------------------------------------------------------------------------------

PTB_TOKENS = {"train": 929_589, "valid": 73_760, "test": 82_430}  # Mikolov's files, <eos> included
RNN_TIMED_EPOCHS = 3  # warm-up; training, validation and save; the last one's test


@contextmanager
def random_ptb(tokens: dict[str, int], vocab: int):
    """Register random token ids of a ``vocab``-word vocabulary under the name ptb for a while,
    so the trainer loads them through its ordinary data path (no files needed)."""
    def read(folder):
        generator = torch.Generator().manual_seed(0)
        words = Vocabulary(f"w{i}" for i in range(vocab))
        splits = [torch.randint(0, vocab, (tokens[name],), generator=generator) for name in ("train", "valid", "test")]
        return make_corpus("ptb", "random PTB-shaped tokens (benchmark)", words, *splits)

    saved = corpora.TEXT_DATASETS["ptb"]
    corpora.TEXT_DATASETS["ptb"] = corpora.TextSource(
        "ptb", "random PTB-shaped tokens (benchmark)", needs_files=False, read=read,
    )
    try:
        yield
    finally:
        corpora.TEXT_DATASETS["ptb"] = saved


def time_rnn_final_epoch(args: argparse.Namespace, device: torch.device) -> tuple:
    """The rnn row of the epoch table (see the module docstring)."""
    steps = args.steps
    overrides = dict(
        device=str(device), dtype=DTYPE_NAMES[args.dtype], compile=args.compile, dataset="ptb",
        epochs=RNN_TIMED_EPOCHS, eval_every=1, checkpoint_every=1,
        log_every=steps,  # one log line (and host sync) exactly at the end of each epoch
    )
    if args.small:
        overrides.update(hidden_size=RNN_SMALL_HIDDEN, batch_size=SMALL_BATCH)
    config = resolve_final_config("paper", "rnn", overrides=overrides, arch=RNN_CELL)
    window = steps * config.bptt + 1  # streams of this length hold exactly `steps` windows
    tokens = {"train": config.batch_size * window, "valid": config.batch_size * window,
              "test": config.test_batch_size * window}
    with random_ptb(tokens, PTB_VOCAB), tempfile.TemporaryDirectory() as folder:
        run = RunDir.create(Path(folder) / "run", replace(config, data_dir=folder))
        clock = EventClock(device)
        train_final(None, run.config, run, callback=clock)
    second, last = RNN_TIMED_EPOCHS - 1, RNN_TIMED_EPOCHS
    train_s = clock.at("step", step=second * steps) - clock.at("checkpoint", name="last.pt", epoch=second - 1)
    valid_s = clock.at("epoch", epoch=second) - clock.at("step", step=second * steps)
    saved_before = [t for t, e in clock.events if e["kind"] == "checkpoint" and e["epoch"] == second
                    and e["name"] == "best.pt"]
    save_s = clock.at("checkpoint", name="last.pt", epoch=second) - (saved_before or [clock.at("epoch", epoch=second)])[-1]
    test_s = clock.at("epoch", epoch=last) - clock.at("step", step=last * steps) - valid_s
    start = next(e for _, e in clock.events if e["kind"] == "start")
    batch, bptt = config.batch_size, config.bptt
    train_windows = (PTB_TOKENS["train"] // batch - 1) // bptt
    valid_windows = math.ceil((PTB_TOKENS["valid"] // batch - 1) / bptt)
    test_windows = math.ceil((PTB_TOKENS["test"] // config.test_batch_size - 1) / bptt)
    epoch_s = train_s / steps * train_windows + valid_s / steps * valid_windows + save_s
    test_once_s = test_s / steps * test_windows
    paper_epochs = resolve_final_config("paper", "rnn", arch=RNN_CELL).epochs
    return (
        "rnn", f"H={config.hidden_size} batch={batch} bptt={bptt}", start["dtype"],
        "on" if start["compile"] else "off",
        f"{train_s / steps * 1e3:.1f}", f"{batch * bptt * steps / train_s:.0f}",
        f"{valid_s / steps * 1e3:.1f}", f"{test_s / steps * 1e3:.1f}", f"{save_s * 1e3:.0f}",
        f"{epoch_s:.1f}", f"{test_once_s:.0f}",
        f"{(epoch_s * paper_epochs + test_once_s) / SECONDS_PER_HOUR:.1f} ({paper_epochs} ep)",
    )


RNN_EPOCH_COLUMNS = ("space", "setting", "dtype", "compile", "train ms/step", "train tokens/s",
                     "valid ms/window", "test ms/window", "save ms", "epoch s (extrap.)",
                     "test s (once, extrap.)", "paper run h (extrap.)")
EPOCH_COLUMNS = ("space", "setting", "dtype", "layout", "compile", "train ms/step", "train img/s",
                 "test ms/batch", "save ms", "epoch s (extrap.)", "paper run h (extrap.)")

COLUMNS = ("space", "network", "setting", "dtype", "layout", "kernels", "compile", "img/s", "ms/step",
           "peak MiB", "fwd GFLOP/img", "GFLOP/s")
RNN_COLUMNS = ("space", "network", "setting", "dtype", "tokens/s", "ms/step", "peak MiB",
               "fwd GFLOP/token", "GFLOP/s")
SWITCHES = {"auto": "auto", "on": True, "off": False}  # this script's words -> the config's
COUNT_COLUMNS = ("space", "network", "setting", "params", "fwd GFLOP/img", "fwd G mult-add/img")


def print_table(rows: list[tuple], columns: tuple[str, ...] = COLUMNS) -> None:
    cells = [columns] + [tuple(str(v) for v in row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def row_placement(args: argparse.Namespace, what: str) -> Placement:
    """The commands' placement for this device, with this script's overrides."""
    config = SimpleNamespace(dtype=DTYPE_NAMES[args.dtype], channels_last=SWITCHES[args.channels_last],
                             compile=SWITCHES[args.compile])
    placement = resolve_placement(config, args.device)
    if what == "supernet" and args.compile == "auto":
        placement = replace(placement, compile=False)  # the search runs its supernet eager
    if args.kernels != "auto":
        placement = replace(placement, kernels=args.kernels)
    return placement


def count_row(s: Setting, args: argparse.Namespace) -> tuple:
    """One row of the ``--count-only`` table (supernets: all weights; FLOPs: the mean over the
    architectures a timed run would sample)."""
    runner = Runner(s, row_placement(args, s.what))
    runner.sample_without_training(args.warmup, args.steps)
    flops = runner.forward_flops()
    params = sum(p.numel() for p in runner.net.parameters())
    return (s.space, s.what, s.describe(), f"{params:,}", f"{flops / 1e9:.3f}",
            f"{flops / FLOPS_PER_MULT_ADD / 1e9:.3f}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="auto (cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="bf16 = autocast, CUDA only")
    p.add_argument("--channels-last", choices=tuple(SWITCHES), default="auto",
                   help="channels_last memory format (auto: the commands' choice, on everywhere)")
    p.add_argument("--kernels", choices=("auto", *KERNELS), default="auto",
                   help="op kernels of enastool.nn.kernels (auto: the commands' choice for the device)")
    p.add_argument("--compile", choices=tuple(SWITCHES), default="auto",
                   help="torch.compile: final networks whole (auto = on for CUDA, as the trainer), "
                   "supernets per op (auto = off, as the search; on = the experiment of compile_ops)")
    p.add_argument("--steps", type=int, default=10,
                   help="timed steps per row (epoch rows: steps per short epoch, and test batches)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (step rows)")
    p.add_argument("--space", choices=("macro", "micro", "rnn", "both", "all"), default="all",
                   help="both = macro and micro; all = those and rnn (default)")
    p.add_argument("--what", choices=("supernet", "final", "epoch", "all"), default="all",
                   help="train steps of the supernets or final networks, or a final-training "
                   "epoch (the real trainer, extrapolated to CIFAR-10 or PTB); default all")
    p.add_argument("--count-only", action="store_true",
                   help="step rows: print parameter, FLOP and mult-add counts without timing")
    p.add_argument("--small", action="store_true",
                   help="narrow widths (rnn: H=32) and batch 8, for a quick CPU run")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (the default leaves cores to others)")
    p.add_argument("--json", type=Path, help="also write every row to this file as JSON")
    args = p.parse_args(argv)
    try:
        args.device = resolve_device(args.device)
    except Exception as e:  # EnasError: an unknown name, or cuda without a GPU
        p.error(str(e))
    if args.dtype == "bf16" and args.device.type != "cuda":
        p.error("--dtype bf16 uses CUDA autocast; on CPU use --dtype fp32")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = args.device
    spaces = [space for space in ("macro", "micro") if args.space in (space, "both", "all")]
    rnn_settings = [s for s in RNN_SETTINGS if args.space in ("rnn", "all") and args.what in (s.what, "all")]
    if args.small:
        rnn_settings = [replace(s, hidden=RNN_SMALL_HIDDEN, batch=SMALL_BATCH) for s in rnn_settings]
    settings = [
        s
        for s in SETTINGS
        if s.space in spaces and args.what in (s.what, "all")
    ]
    if args.small:
        settings = [
            replace(s, channels=SMALL_CHANNELS[s.space], batch=SMALL_BATCH) for s in settings
        ]
    records: list[dict] = []
    if args.count_only:
        print_table([count_row(s, args) for s in settings], COUNT_COLUMNS)
        return 0
    rows = []
    for s in settings:
        placement = row_placement(args, s.what)
        print(f"timing {s.space} {s.what} ({s.describe()}) ...", file=sys.stderr)
        runner = Runner(s, placement, compile_net=placement.compile)
        seconds = runner.time_steps(args.warmup, args.steps)
        peak = runner.peak_memory_mib()
        flops = runner.forward_flops()
        images = s.batch / seconds
        record = dict(
            space=s.space, network=s.what, setting=s.describe(), dtype=args.dtype,
            layout="channels_last" if placement.channels_last else "nchw", kernels=placement.kernels,
            compile=("per op" if s.what == "supernet" else "on") if placement.compile else "off",
            images_per_s=images, ms_per_step=seconds * 1e3, peak_mib=peak, fwd_gflops=flops / 1e9,
            gflops_per_s=3 * flops * images / 1e9,
        )
        records.append(record)
        rows.append((
            *(record[k] for k in ("space", "network", "setting", "dtype", "layout", "kernels", "compile")),
            f"{images:.1f}", f"{seconds * 1e3:.1f}", f"{peak:.0f}", f"{flops / 1e9:.3f}",
            f"{record['gflops_per_s']:.1f}",
        ))
        del runner
    rnn_rows = []
    for s in rnn_settings:
        print(f"timing rnn {s.what} ({s.describe()}) ...", file=sys.stderr)
        runner = RnnRunner(s, device, args.dtype == "bf16")
        seconds = runner.time_steps(args.warmup, args.steps)
        peak = runner.peak_memory_mib()
        flops = runner.forward_flops()
        tokens = s.batch * s.bptt / seconds
        records.append(dict(
            space="rnn", network=s.what, setting=s.describe(), dtype=args.dtype, tokens_per_s=tokens,
            ms_per_step=seconds * 1e3, peak_mib=peak, fwd_gflops_per_token=flops / 1e9,
            gflops_per_s=3 * flops * tokens / 1e9,
        ))
        rnn_rows.append((
            "rnn", s.what, s.describe(), args.dtype, f"{tokens:.0f}", f"{seconds * 1e3:.1f}",
            f"{peak:.0f}", f"{flops / 1e9:.4f}", f"{3 * flops * tokens / 1e9:.1f}",
        ))
        del runner
    epoch_rows = []
    if args.what in ("epoch", "all"):
        for space in spaces:
            print(f"timing a {space} final-training epoch (the trainer, {TIMED_EPOCHS} epochs of "
                  f"{args.steps} steps) ...", file=sys.stderr)
            epoch_rows.append(time_final_epoch(space, args, device))
            records.append(dict(zip(("epoch:" + c for c in EPOCH_COLUMNS), epoch_rows[-1])))
    rnn_epoch_rows = []
    if args.what in ("epoch", "all") and args.space in ("rnn", "all"):
        print(f"timing an rnn final-training epoch (the language-model trainer, {RNN_TIMED_EPOCHS} epochs "
              f"of {args.steps} windows) ...", file=sys.stderr)
        rnn_epoch_rows.append(time_rnn_final_epoch(args, device))
        records.append(dict(zip(("rnn_epoch:" + c for c in RNN_EPOCH_COLUMNS), rnn_epoch_rows[-1])))
    print(f"# device={device} threads={torch.get_num_threads() if device.type == 'cpu' else '-'} "
          f"torch={torch.__version__} steps={args.steps} warmup={args.warmup}")
    if rows:
        print_table(rows)
    if rnn_rows:
        if rows:
            print()
        print("# rnn language models: random token windows, vocabulary and window as in the setting")
        print_table(rnn_rows, RNN_COLUMNS)
    if epoch_rows:
        if rows or rnn_rows:
            print()
        print(f"# final-training epoch on CIFAR-10, EXTRAPOLATED from {args.steps} timed steps and "
              f"{args.steps} test batches of random CIFAR-10-shaped data to {CIFAR10_TRAIN_IMAGES:,} "
              f"training + {CIFAR10_TEST_IMAGES:,} test images (paper final settings"
              f"{', --small widths and batch' if args.small else ''})")
        print_table(epoch_rows, EPOCH_COLUMNS)
    if rnn_epoch_rows:
        if rows or rnn_rows or epoch_rows:
            print()
        print(f"# rnn final-training epoch on PTB, EXTRAPOLATED from {args.steps} timed windows each of "
              f"training, validation and test (batch 1) on random tokens to {PTB_TOKENS['train']:,} / "
              f"{PTB_TOKENS['valid']:,} / {PTB_TOKENS['test']:,} tokens (paper final settings"
              f"{', --small width and batch' if args.small else ''}); the test runs once per run")
        print_table(rnn_epoch_rows, RNN_EPOCH_COLUMNS)
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "torch": torch.__version__,
                                         "rows": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
