"""Where a training step's time goes: torch.profiler's top operators, as a markdown table.

    python benchmarks/profile_step.py                                   # the policy's CPU path
    python benchmarks/profile_step.py --channels-last off --kernels native   # the old CPU path

Profiles ``--steps`` steps (after ``--warmup``) of a micro supernet at the peer's size (6
layers, 20 channels, 5 blocks, batch 64: ``benchmarks/peer.py``'s micro row) or, with
``--network``, of another network at ``bench_nn.py``'s paper settings: forward, cross-entropy,
backward and an SGD step, a fresh uniform child every step for supernets, placed as the
commands place it (``enastool.train.device``), with the overrides given. Prints the top
``--top`` operators by self time (CPU; on CUDA by device time): milliseconds per step, share
of the step and calls per step. Profiling adds overhead, so read the shares, not the total.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nn import SETTINGS, SWITCHES, Runner, Setting  # noqa: E402

from enastool.nn.kernels import KERNELS  # noqa: E402
from enastool.train.device import resolve_device, resolve_placement  # noqa: E402

PEER_SETTING = Setting("micro", "supernet", layers=6, channels=20, batch=64, blocks=5, keep_prob=1.0)
NETWORKS = {"micro-supernet-peer": PEER_SETTING,
            **{f"{s.space}-{s.what}": s for s in SETTINGS}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--network", choices=tuple(NETWORKS), default="micro-supernet-peer")
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels-last", choices=tuple(SWITCHES), default="auto")
    p.add_argument("--kernels", choices=("auto", *KERNELS), default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--batch", type=int, help="override the setting's batch")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    config = argparse.Namespace(channels_last=SWITCHES[args.channels_last], compile=False)
    placement = resolve_placement(config, device)
    if args.kernels != "auto":
        placement = replace(placement, kernels=args.kernels)
    setting = NETWORKS[args.network]
    if args.batch:
        setting = replace(setting, batch=args.batch)
    runner = Runner(setting, placement)
    for _ in range(args.warmup):
        runner.step()
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            runner.step()
        runner.sync()
    events = [e for e in prof.key_averages() if not e.key.startswith(("ProfilerStep", "autograd::engine"))]

    def self_us(e) -> float:
        return e.self_device_time_total if cuda else e.self_cpu_time_total

    total = sum(self_us(e) for e in events)
    print(f"{args.network} ({setting.describe()}), {device}, {args.threads} thread(s), "
          f"layout {'channels_last' if placement.channels_last else 'nchw'}, kernels {placement.kernels}: "
          f"{total / args.steps / 1e3:.0f} ms of self time per step (profiled)")
    print()
    print("| operator | ms/step | share | calls/step |")
    print("|---|---|---|---|")
    for e in sorted(events, key=self_us, reverse=True)[:args.top]:
        print(f"| `{e.key}` | {self_us(e) / args.steps / 1e3:.1f} | {100 * self_us(e) / total:.1f}% | "
              f"{e.count / args.steps:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
