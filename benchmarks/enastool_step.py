"""Time enastool's training steps the way its own commands run them; one JSON line on stdout.

    python benchmarks/enastool_step.py --network micro-supernet --layers 6 --channels 20 --batch 64 --peer-work
    python benchmarks/enastool_step.py --network micro-final --steps 3 --warmup 1

This is the enastool half of ``benchmarks/peer.py``, which starts it in a fresh process, once
for the tree under test and once per baseline tree (``PYTHONPATH`` picks the tree; the script
uses only the public API: config resolution, ``RunDir``, ``search``, ``train_final``,
``count_flops``), so that every version is timed by the same code. It:

1. writes a synthetic CIFAR-10 folder in the real pickle format (random pixels and labels) to
   a temporary directory, sized so that one epoch is ``--warmup`` + ``--steps`` training steps;
2. runs a one-epoch search (``*-supernet``: strategy ``random``, a fresh uniformly sampled
   child every step) or final training (``*-final``: the authors' architecture from
   ``fixtures/``) through ``enastool.search.loop.search`` / ``enastool.train.trainer.train_final``
   with the device, dtype and memory-format policy the commands use, a step record every step;
3. times the steps from the arrival of their records (each record follows a host read of the
   loss, so on CUDA it is a synchronisation point too) and leaves out the first ``--warmup``;
4. counts forward FLOPs per image (``enastool.nn.counting``) of the timed children (supernets)
   or of the network (finals), after the timing.

Epoch mode (``--epochs E``): E whole epochs on ``--train-images`` synthetic images (CIFAR-10's
50,000 by default, the search holding out its 10%), the search with the ``enas`` strategy (the
paper's controller updates after each epoch), one step record per epoch (at its last step, the
only host read of the training phase, as with the paper's ``log_every``); each epoch is timed
in parts: training steps, what follows them (controller updates or the final network's test
pass), checkpoint. ``benchmarks/gpu_check.py`` projects paper runs from the last epoch.

Settings are the ``paper`` preset of the space unless given. ``--peer-work`` makes the step
the plain one of the peer script (``peer_nni_step.py``): no weight decay, no gradient clipping,
no dropout before the classifier, no augmentation, constant learning rate 0.05 (momentum 0.9,
Nesterov). The epoch's end (the supernet's probe of ten architectures on one validation batch,
or the final network's test pass, and the checkpoints) follows the timed steps and is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

NETWORKS = ("micro-supernet", "macro-supernet", "micro-final", "macro-final")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# CIFAR-10's python pickle batches (enastool.data.cifar10 reads them).
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
PICKLE_PROTOCOL = 2  # the protocol of the real files
TEST_IMAGES = 16  # the final network's end-of-epoch test pass: kept small, it is not timed
DATA_SEED = 0
SEARCH_STRATEGY = "random"  # uniform children: the network step without the controller's cost
EPOCH_STRATEGY = "enas"  # epoch mode: the paper's search, controller updates included
CIFAR_TRAIN_IMAGES = 50_000
CIFAR_TEST_IMAGES = 10_000
CIFAR_VALID_PER_TRAIN = (5_000, 50_000)  # the search's held-out share (enastool.data.cifar10)

# The peer script's step (peer_nni_step.py): plain SGD on fixed images.
PEER_LR = 0.05
PEER_WORK = dict(
    l2=0.0, grad_clip=0.0, keep_prob=1.0, lr_max=PEER_LR, lr_min=PEER_LR, momentum=0.9,
    nesterov=True, augment_pad=0, augment_flip=False, cutout=0,
)
KIB = 2**10  # ru_maxrss is in KiB on Linux
MIB = 2**20


def write_synthetic_cifar10(folder: Path, train_images: int, test_images: int, seed: int = DATA_SEED) -> Path:
    """A CIFAR-10 folder of random images and labels in the real pickle format; returns ``folder``.

    The training images are spread over the five ``data_batch_*`` files (the last takes the
    remainder), as enastool reads them in order.
    """
    rng = np.random.default_rng(seed)
    target = Path(folder) / CIFAR_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    pixels = int(np.prod(IMAGE_SHAPE))

    def write(name: str, count: int) -> None:
        batch = {
            b"data": rng.integers(0, 256, (count, pixels), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, NUM_CLASSES, count)],
        }
        with open(target / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=PICKLE_PROTOCOL)

    per_file = train_images // len(CIFAR_TRAIN_FILES)
    for index, name in enumerate(CIFAR_TRAIN_FILES):
        last = index == len(CIFAR_TRAIN_FILES) - 1
        write(name, train_images - per_file * index if last else per_file)
    write(CIFAR_TEST_FILE, test_images)
    return Path(folder)


def cifar_valid_size(train_images: int) -> int:
    """Images the search holds out of ``train_images`` (as ``enastool.data.cifar10.valid_size``)."""
    valid, per = CIFAR_VALID_PER_TRAIN
    return max(1, train_images * valid // per)


class StepClock:
    """A run callback that keeps the arrival time of every event (and the events)."""

    def __init__(self):
        self.events: list[tuple[float, dict]] = []

    def __call__(self, event: dict) -> None:
        self.events.append((time.perf_counter(), dict(event)))

    def step_seconds(self, warmup: int) -> list[float]:
        """Seconds of each step after the first ``warmup`` (time between successive records)."""
        start = next(t for t, e in self.events if e["kind"] == "start")
        times = [start] + [t for t, e in self.events if e["kind"] == "step"]
        return [b - a for a, b in zip(times, times[1:])][warmup:]

    def step_records(self, warmup: int) -> list[dict]:
        return [e for _, e in self.events if e["kind"] == "step"][warmup:]

    def start(self) -> dict:
        return next(e for _, e in self.events if e["kind"] == "start")


class ArchStep(nn.Module):
    """A supernet with one architecture fixed, so that it can be counted like any module."""

    def __init__(self, net: nn.Module, arch):
        super().__init__()
        self.net, self.arch = net, arch

    def forward(self, x):
        return self.net(x, self.arch)


def parse_arch(text: str, space: str):
    """One architecture from its record text (the format of ``format_record``)."""
    from enastool.encoding.textio import parse_text

    records, errors = parse_text(text, "<record>", space)
    if errors:
        raise errors[0]
    return records[0].arch


def supernet_flops(config, records: list[dict]) -> float:
    """Mean forward FLOPs per image of the children the timed steps trained."""
    from enastool.nn.counting import count_flops
    from enastool.nn.supernet import MacroSupernet, MicroSupernet

    if config.space == "macro":
        net = MacroSupernet(num_layers=config.layers, channels=config.channels,
                            in_channels=IMAGE_SHAPE[0], num_classes=NUM_CLASSES, keep_prob=config.keep_prob)
    else:
        net = MicroSupernet(num_layers=config.layers, channels=config.channels, num_blocks=config.num_blocks,
                            in_channels=IMAGE_SHAPE[0], num_classes=NUM_CLASSES, keep_prob=config.keep_prob)
    archs = [parse_arch(r["arch"], config.space) for r in records if r.get("arch")]
    counts = [count_flops(ArchStep(net, arch), IMAGE_SHAPE) for arch in archs]
    return sum(counts) / len(counts) if counts else float("nan")


def final_flops(config) -> float:
    from enastool.nn.counting import network_counts

    arch = parse_arch(f"{config.space} {config.arch}", config.space)
    info = SimpleNamespace(channels=IMAGE_SHAPE[0], size=IMAGE_SHAPE[1], num_classes=NUM_CLASSES)
    return network_counts(arch, config.layers, config.channels, info)["flops"]


def epoch_spans(clock: StepClock, steps_per_epoch: int, what: str) -> list[dict]:
    """Per epoch (epoch mode, one step record per epoch): seconds of the training steps, of what
    follows them (search: the controller updates or the probe; final: the test pass), of the
    checkpoint, and the whole span from the previous epoch's checkpoint."""
    spans, begin = [], next(t for t, e in clock.events if e["kind"] == "start")
    for epoch in range(1, 1 + sum(1 for _, e in clock.events if e["kind"] == "epoch")):
        trained = next(t for t, e in clock.events if e["kind"] == "step" and e["step"] == epoch * steps_per_epoch)
        ended = next(t for t, e in clock.events if e["kind"] == "epoch" and e["epoch"] == epoch)
        saved = next((t for t, e in clock.events if e["kind"] == "checkpoint" and e.get("name") == "last.pt"
                      and e["epoch"] == epoch), ended)
        spans.append({"epoch": epoch, "train_s": trained - begin,
                      ("update_s" if what == "supernet" else "test_s"): ended - trained,
                      "save_s": saved - ended, "total_s": saved - begin})
        begin = saved
    return spans


def run(args: argparse.Namespace) -> dict:
    import enastool
    from enastool.config import resolve_final_config, resolve_search_config
    from enastool.encoding.textio import load_one
    from enastool.runs import RunDir

    space, what = args.network.split("-")
    epoch_mode = args.epochs > 0
    steps_total = args.warmup + args.steps
    overrides = dict(device=args.device, dataset="cifar10", seed=DATA_SEED,
                     epochs=args.epochs if epoch_mode else 1)
    sizes = dict(layers=args.layers, channels=args.channels, batch_size=args.batch)
    if what == "supernet":
        sizes["num_blocks"] = args.blocks if space == "micro" else None
    overrides.update({k: v for k, v in sizes.items() if v is not None})
    if args.peer_work:
        overrides.update(PEER_WORK)
    overrides.update(args.set)
    for key in ("dtype", "channels_last") + (("compile",) if what == "final" else ()):
        if getattr(args, key):
            overrides[key] = getattr(args, key)
    resolve = resolve_search_config if what == "supernet" else resolve_final_config
    arch = load_one(FIXTURES / f"{space}_final.txt", space=space) if what == "final" else None
    extra = dict(arch=arch) if arch is not None else {}
    with tempfile.TemporaryDirectory(prefix="enastool-step-") as folder:
        folder = Path(folder)
        overrides["data_dir"] = str(folder / "data")
        batch = resolve("paper", space, overrides=overrides, **extra).batch_size
        if what == "supernet":
            overrides["strategy"] = args.strategy or (EPOCH_STRATEGY if epoch_mode else SEARCH_STRATEGY)
        if epoch_mode:
            # One step record per epoch, at its last step: the only host read of the training phase.
            train_images, test_images = args.train_images, args.test_images
            if what == "supernet":
                steps_per_epoch = (train_images - cifar_valid_size(train_images)) // batch
            else:
                steps_per_epoch = train_images // batch
            overrides["log_every"] = max(steps_per_epoch, 1)
        else:
            # Step mode: a record every step; the supernet's epoch-end probe scores one held-out batch.
            overrides.update(log_every=1, **({"val_size": batch} if what == "supernet" else {}))
            train_images = steps_total * batch + (batch if what == "supernet" else 0)
            test_images, steps_per_epoch = TEST_IMAGES, steps_total
        write_synthetic_cifar10(folder / "data", train_images, test_images)
        config = resolve("paper", space, overrides=overrides, **extra)
        run_dir = RunDir.create(folder / "run", config)
        clock = StepClock()
        if what == "supernet":
            from enastool.search.loop import search

            search(config, run_dir, callback=clock)
        else:
            from enastool.train.trainer import train_final

            train_final(None, config, run_dir, callback=clock)
    start = clock.start()
    setting = f"L={config.layers} C={config.channels}" + (
        f" B={config.num_blocks}" if what == "supernet" and space == "micro" else "") + f" batch={batch}"
    result = {"network": args.network, "setting": setting, "batch": batch}
    if epoch_mode:
        spans = epoch_spans(clock, steps_per_epoch, what)
        last = spans[-1]
        seconds = [last["train_s"] / steps_per_epoch]
        result.update(epochs=spans, steps_per_epoch=steps_per_epoch, train_images=train_images,
                      strategy=getattr(config, "strategy", None))
    else:
        seconds = clock.step_seconds(args.warmup)
        if len(seconds) != args.steps:
            raise RuntimeError(f"expected {args.steps} timed steps, the run recorded {len(seconds)}")
        result.update(steps=len(seconds), warmup=args.warmup, step_ms=[s * 1e3 for s in seconds],
                      median_step_ms=statistics.median(seconds) * 1e3)
    if what == "supernet":
        records = clock.step_records(0 if epoch_mode else args.warmup)
        flops = supernet_flops(config, records)
    else:
        flops = final_flops(config)
    images_per_s = batch * len(seconds) / sum(seconds)
    result.update({
        "images_per_s": images_per_s,
        "fwd_flops_per_image": flops,
        "train_gflops_per_s": 3 * flops * images_per_s / 1e9,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB / MIB,
        "peak_device_mib": torch.cuda.max_memory_allocated() / MIB if torch.cuda.is_available() else None,
        **{key: start.get(key) for key in ("device", "dtype", "channels_last", "compile", "kernels")},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "enastool_path": str(Path(enastool.__file__).resolve().parent.parent),
        "peer_work": bool(args.peer_work),
    })
    return result


def parse_setting(item: str) -> tuple[str, object]:
    """``key=value`` with the value read as JSON when it is JSON (numbers, true/false), else text."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {item!r}: expected KEY=VALUE")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--network", choices=NETWORKS, required=True)
    p.add_argument("--layers", type=int, help="default: the paper preset's")
    p.add_argument("--channels", type=int, help="default: the paper preset's")
    p.add_argument("--batch", type=int, help="default: the paper preset's")
    p.add_argument("--blocks", type=int, help="micro supernet: blocks per cell (default: the preset's)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--dtype", help="the config's dtype (default: its auto)")
    p.add_argument("--channels-last", help="the config's channels_last (default: its auto)")
    p.add_argument("--compile", help="finals: the config's compile (default: its auto)")
    p.add_argument("--peer-work", action="store_true",
                   help="the peer script's plain step (see the module docstring)")
    p.add_argument("--epochs", type=int, default=0,
                   help="epoch mode: run this many whole epochs and time each (0: step mode)")
    p.add_argument("--train-images", type=int, default=CIFAR_TRAIN_IMAGES,
                   help="epoch mode: synthetic training images (default: CIFAR-10's)")
    p.add_argument("--test-images", type=int, default=CIFAR_TEST_IMAGES,
                   help="epoch mode: synthetic test images (default: CIFAR-10's)")
    p.add_argument("--strategy", help=f"supernets: the search strategy (default: {SEARCH_STRATEGY} in step "
                   f"mode, {EPOCH_STRATEGY} in epoch mode)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config value (repeatable), e.g. --set controller_updates=2")
    args = p.parse_args(argv)
    try:
        args.set = dict(parse_setting(item) for item in args.set)
    except ValueError as e:
        p.error(str(e))
    if args.steps < 1 or args.warmup < 0 or args.epochs < 0:
        p.error("--steps must be >= 1, --warmup and --epochs >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
