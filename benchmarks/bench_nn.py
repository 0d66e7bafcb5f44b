"""Train-step throughput of the supernets and the final networks at the authors' settings.

    python benchmarks/bench_nn.py --device cpu --dtype fp32 --small
    python benchmarks/bench_nn.py --device cuda --dtype bf16 --channels-last

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
CUDA only. The table goes to stdout.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from enastool.encoding import MacroArch, MicroArch
from enastool.nn.counting import count_flops
from enastool.nn.final import build_final_network
from enastool.nn.supernet import MacroSupernet, MicroSupernet

# The authors' final architectures (reference sec. 3, cifar10_macro_final.sh and
# cifar10_micro_final.sh), verbatim.
AUTHORS_MACRO_FINAL = """
0
3 0
0 1 0
2 0 0 1
2 0 0 0 0
3 1 1 0 1 0
2 0 0 0 0 0 1
2 0 1 1 0 1 1 1
1 0 1 1 1 0 1 0 1
0 0 0 0 0 0 0 0 0 0
2 0 0 0 0 0 1 0 0 0 0
0 1 0 0 1 1 0 0 0 0 1 1
2 0 1 0 0 0 0 0 1 0 1 1 0
1 0 0 1 0 0 0 1 1 1 0 1 0 1
0 1 1 0 1 0 1 0 0 0 0 0 1 0 0
2 0 0 1 0 0 0 0 0 0 0 1 0 1 0 1
2 0 1 0 0 0 1 0 0 1 1 1 1 0 0 1 0
2 0 0 0 0 1 0 1 0 1 0 0 1 0 1 0 0 1
3 0 1 1 0 1 0 0 0 0 0 1 0 1 0 1 0 0 0
3 0 1 1 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1
0 1 0 0 1 0 1 1 0 0 0 1 0 0 0 0 0 1 1 0 0
3 0 1 0 1 1 0 0 1 0 1 1 0 1 1 0 1 0 0 1 0 0
0 1 0 1 0 1 0 0 0 0 0 0 0 0 1 0 1 0 0 1 0 0 0
0 1 1 0 0 0 1 1 1 0 1 0 0 0 1 0 1 0 0 1 1 0 0 0
"""
AUTHORS_MICRO_FINAL = """
0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1
1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1
"""

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
    text = AUTHORS_MACRO_FINAL if space == "macro" else AUTHORS_MICRO_FINAL
    cls = MacroArch if space == "macro" else MicroArch
    return cls.from_ints([int(v) for v in text.split()])


class ArchStep(nn.Module):
    """A supernet with one architecture fixed, so that it can be counted like any module."""

    def __init__(self, net: nn.Module, arch):
        super().__init__()
        self.net, self.arch = net, arch

    def forward(self, x):
        return self.net(x, self.arch)


class Runner:
    """Builds one setting's network and times its training steps."""

    def __init__(self, setting: Setting, device: torch.device, bf16: bool, channels_last: bool):
        self.setting, self.device, self.bf16 = setting, device, bf16
        self.format = torch.channels_last if channels_last else torch.contiguous_format
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
        self.net = net.to(device=device, memory_format=self.format).train()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)
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
                logits, aux = self.net(self.x, arch), None
            else:
                logits, aux = self.net(self.x)
            loss = F.cross_entropy(logits.float(), self.y)
            if aux is not None:
                loss = loss + AUX_WEIGHT * F.cross_entropy(aux.float(), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

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

    def forward_flops(self) -> float:
        """Forward FLOPs per image: the final network's, or the supernets' mean over the
        architectures of the timed steps."""
        if self.arch is not None:
            return count_flops(self.net, IMAGE_SHAPE)
        counts = [count_flops(ArchStep(self.net, arch), IMAGE_SHAPE) for arch in self.sampled]
        return sum(counts) / len(counts)

    def peak_memory_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / MIB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB / MIB


COLUMNS = ("space", "network", "setting", "dtype", "layout", "img/s", "ms/step", "peak MiB",
           "fwd GFLOP/img", "GFLOP/s")


def print_table(rows: list[tuple]) -> None:
    cells = [COLUMNS] + [tuple(str(v) for v in row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    for n, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="bf16 = autocast, CUDA only")
    p.add_argument("--channels-last", action="store_true",
                   help="run in channels_last memory format")
    p.add_argument("--steps", type=int, default=10, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--space", choices=("macro", "micro", "both"), default="both")
    p.add_argument("--what", choices=("supernet", "final", "both"), default="both")
    p.add_argument("--small", action="store_true",
                   help="narrow widths and batch 8, for a quick CPU run")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (the default leaves cores to others)")
    args = p.parse_args(argv)
    if args.dtype == "bf16" and not args.device.startswith("cuda"):
        p.error("--dtype bf16 uses CUDA autocast; on CPU use --dtype fp32")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    settings = [
        s
        for s in SETTINGS
        if args.space in (s.space, "both") and args.what in (s.what, "both")
    ]
    if args.small:
        settings = [
            replace(s, channels=SMALL_CHANNELS[s.space], batch=SMALL_BATCH) for s in settings
        ]
    layout = "channels_last" if args.channels_last else "nchw"
    rows = []
    for s in settings:
        print(f"timing {s.space} {s.what} ({s.describe()}) ...", file=sys.stderr)
        runner = Runner(s, device, args.dtype == "bf16", args.channels_last)
        seconds = runner.time_steps(args.warmup, args.steps)
        peak = runner.peak_memory_mib()
        flops = runner.forward_flops()
        images = s.batch / seconds
        rows.append((
            s.space, s.what, s.describe(), args.dtype, layout,
            f"{images:.1f}", f"{seconds * 1e3:.1f}", f"{peak:.0f}",
            f"{flops / 1e9:.3f}", f"{3 * flops * images / 1e9:.1f}",
        ))
        del runner
    print(f"# device={device} threads={torch.get_num_threads() if device.type == 'cpu' else '-'} "
          f"torch={torch.__version__} steps={args.steps} warmup={args.warmup}")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
