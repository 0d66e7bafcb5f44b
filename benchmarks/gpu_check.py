"""One GPU check: throughput of every network, and what a paper run would take. Run it through
``benchmarks/gpu_check.sh``; it is sized for under 8 minutes on one H100/H200-class GPU.

    bash benchmarks/gpu_check.sh                  # on the GPU machine
    bash benchmarks/gpu_check.sh --dry-run        # the same parts at toy sizes on the CPU (the test suite runs it)

Parts, each a fresh process with its own time limit, in order of importance, all within
``--budget`` seconds (a part that would not fit is reported as skipped, never left hanging):

1. ``steps``: a training step of both supernets at the paper's search sizes and of both final
   networks at the paper's final sizes (``bench_nn.py``: bf16 autocast, channels_last, eager):
   images/s, achieved TFLOP/s (3 x counted forward FLOPs x images/s), peak memory.
2. ``search``: a 2-epoch micro search at the paper's settings (enas: 30 controller updates of
   10 children after each epoch) on random CIFAR-10-shaped data of CIFAR-10's size
   (``enastool_step.py --epochs 2``, through ``enastool.search.loop.search``: the search's own
   loader, policy and checkpoints); the second epoch, timed in parts, projects the 150 epochs of
   a paper micro search.
3. ``final``: a 2-epoch micro final training at the paper's settings (torch.compile on, as the
   trainer does on CUDA) on the same data, with the test pass and checkpoints; the second epoch
   projects the 630 epochs of a paper micro final training.
4. ``rnn``: tokens/s of the recurrent supernet (search size) and final network (final size).
5. ``compiled finals``: the final-network steps with torch.compile (the compilation falls in
   the untimed warm-up steps).
6. ``compiled supernets``: the experiment of compiling every candidate op of a supernet on its
   own (``bench_nn.compile_ops``; the search runs its supernet eager, since its graph changes
   every step). Last because its compile time is the least predictable.

``--dry-run``: every part on the CPU at toy sizes (4 channels, batch 8, a few images, two
controller updates), fp32, compile parts skipped: it checks that the script runs end to end,
and its figures mean nothing. The report (stdout) is a markdown block for BENCHMARKS.md;
progress goes to stderr. ``--json FILE`` also writes the raw results.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_NN = HERE / "bench_nn.py"
STEP = HERE / "enastool_step.py"

BUDGET_S = 450  # of the 8 minutes: the rest is start-up and margin
# Paper runs projected from one epoch (reference sec. 4).
PAPER_SEARCH_EPOCHS = 150
PAPER_FINAL_EPOCHS = 630
GOAL_SEARCH_S = 30 * 60  # the goals on one H100
GOAL_FINAL_S = 45 * 60
SMOKE_EPOCHS = 2
STEP_ROWS_STEPS, STEP_ROWS_WARMUP = 20, 5
COMPILED_WARMUP = 5  # compilation happens in these
# --dry-run: toy sizes on the CPU.
DRY = dict(channels=4, batch=8, train_images=80, test_images=16, steps=2, warmup=1)
DRY_CONTROLLER = dict(controller_updates=2, controller_samples=2)
TFLOP = 1e12
HOST_THREADS = 8  # CPU threads of the GPU runs' processes (the controller and checkpoints run there)


@dataclass
class Part:
    """One process of the check."""

    name: str
    command: list[str]
    cap_s: float  # the most this part may take
    result: dict | None = None
    status: str = "not run"
    seconds: float = 0.0
    json_path: Path | None = None
    extra: dict = field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_nn(args, json_path: Path, *options: str) -> list[str]:
    device = ["--device", "cpu", "--dtype", "fp32", "--small", "--steps", str(DRY["steps"]),
              "--warmup", str(DRY["warmup"])] if args.dry_run else [
        "--device", args.device, "--dtype", "bf16", "--steps", str(STEP_ROWS_STEPS)]
    return [sys.executable, str(BENCH_NN), *device, "--channels-last", "on", "--json", str(json_path), *options]


def step(args, network: str, *options: str) -> list[str]:
    if args.dry_run:
        sizes = ["--device", "cpu", "--threads", "1", "--channels", str(DRY["channels"]), "--batch",
                 str(DRY["batch"]), "--train-images", str(DRY["train_images"]), "--test-images",
                 str(DRY["test_images"])]
        if network.endswith("supernet"):
            sizes += [f"--set={k}={v}" for k, v in DRY_CONTROLLER.items()]
    else:
        sizes = ["--device", args.device, "--threads", str(HOST_THREADS)]
    return [sys.executable, str(STEP), "--network", network, "--epochs", str(SMOKE_EPOCHS), *sizes, *options]


def plan(args, folder: Path) -> list[Part]:
    def part(name, cap, command_of, *options, bench=True):
        json_path = folder / f"{name.replace(' ', '_')}.json"
        command = command_of(args, json_path, *options) if bench else command_of(args, *options)
        return Part(name, command, cap, json_path=json_path if bench else None)

    warm = [] if args.dry_run else ["--warmup", str(STEP_ROWS_WARMUP)]
    compiled_warm = [] if args.dry_run else ["--warmup", str(COMPILED_WARMUP)]
    parts = [
        part("steps", 120, bench_nn, "--space", "both", "--what", "supernet", "--compile", "off", *warm),
        part("final steps", 90, bench_nn, "--space", "both", "--what", "final", "--compile", "off", *warm),
        part("search", 150, step, "micro-supernet", bench=False),
        part("final", 180, step, "micro-final", bench=False),
        part("rnn", 60, bench_nn, "--space", "rnn", "--what", "all", *warm),
        part("compiled finals", 180, bench_nn, "--space", "both", "--what", "final", "--compile", "on",
             *compiled_warm),
        part("compiled supernets", 180, bench_nn, "--space", "both", "--what", "supernet", "--compile", "on",
             *compiled_warm),
    ]
    if args.dry_run:  # compilation on the CPU takes minutes and tells nothing about a GPU
        for p in parts:
            if p.name.startswith("compiled"):
                p.status = "skipped (--dry-run)"
    return parts


def run_part(p: Part, deadline: float) -> None:
    left = deadline - time.monotonic()
    if p.status != "not run":
        return
    if left < min(p.cap_s, 20):
        p.status = f"skipped (budget: {left:.0f} s left)"
        return
    limit = min(p.cap_s, left)
    log(f"{p.name} (at most {limit:.0f} s): {shlex.join(p.command)}")
    started = time.monotonic()
    try:
        out = subprocess.run(p.command, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        p.seconds, p.status = time.monotonic() - started, f"timed out after {limit:.0f} s"
        log(f"  {p.status}")
        return
    p.seconds = time.monotonic() - started
    if out.returncode != 0:
        p.status = f"failed (exit {out.returncode})"
        log(f"  {p.status}:\n" + "\n".join(out.stderr.strip().splitlines()[-8:]))
        return
    p.result = json.loads(p.json_path.read_text()) if p.json_path else json.loads(out.stdout.strip().splitlines()[-1])
    p.status = "ok"
    log(f"  ok in {p.seconds:.0f} s")


# ------------------------------------------------------------------------------ report
def duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def step_table(parts: list[Part]) -> list[str]:
    lines = ["| network | setting | dtype | layout | kernels | compile | img/s | ms/step | TFLOP/s | peak MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in parts:
        if p.name in ("steps", "final steps", "compiled finals", "compiled supernets"):
            if p.result is None:
                lines.append(f"| ({p.name}) | {p.status} | | | | | | | | |")
                continue
            for r in p.result["rows"]:
                if "images_per_s" in r:
                    lines.append(
                        f"| {r['space']} {r['network']} | {r['setting']} | {r['dtype']} | {r['layout']} | "
                        f"{r['kernels']} | {r['compile']} | {r['images_per_s']:.0f} | {r['ms_per_step']:.1f} | "
                        f"{r['gflops_per_s'] * 1e9 / TFLOP:.2f} | {r['peak_mib']:.0f} |")
    return lines


def rnn_table(part: Part) -> list[str]:
    lines = ["| network | setting | dtype | tokens/s | ms/step | TFLOP/s | peak MiB |", "|---|---|---|---|---|---|---|"]
    if part.result is None:
        return lines + [f"| ({part.name}) | {part.status} | | | | | |"]
    for r in part.result["rows"]:
        if "tokens_per_s" in r:
            lines.append(f"| rnn {r['network']} | {r['setting']} | {r['dtype']} | {r['tokens_per_s']:.0f} | "
                         f"{r['ms_per_step']:.1f} | {r['gflops_per_s'] * 1e9 / TFLOP:.3f} | {r['peak_mib']:.0f} |")
    return lines


def projection(part: Part, epochs: int, goal_s: float, what: str) -> list[str]:
    if part.result is None:
        return [f"- paper micro {what}: {part.status}"]
    r = part.result
    last = r["epochs"][-1]
    follow = "controller updates" if "update_s" in last else "test pass"
    follow_s = last.get("update_s", last.get("test_s", 0.0))
    total = last["total_s"] * epochs
    peak = r.get("peak_device_mib")
    lines = [
        f"- {SMOKE_EPOCHS}-epoch micro {what} ({r['setting']}, {r['train_images']:,} random images, "
        f"{r['steps_per_epoch']} steps per epoch, dtype {r['dtype']}, "
        f"compile {'on' if r.get('compile') else 'off'}): epoch 1 "
        f"{r['epochs'][0]['total_s']:.1f} s; epoch {last['epoch']} {last['total_s']:.1f} s = training "
        f"{last['train_s']:.1f} s ({r['images_per_s']:.0f} img/s, {r['train_gflops_per_s'] * 1e9 / TFLOP:.2f} "
        f"TFLOP/s) + {follow} {follow_s:.1f} s + checkpoint {last['save_s']:.1f} s"
        + (f"; peak {peak:.0f} MiB" if peak is not None else ""),
        f"- **paper micro {what}, {epochs} epochs: {duration(total)}** projected from epoch {last['epoch']} "
        f"(goal {duration(goal_s)}: needs {goal_s / epochs:.1f} s per epoch, "
        f"{total / goal_s:.1f}x the time now)",
    ]
    return lines


def report(args, parts: list[Part], started: float) -> str:
    import torch

    by_name = {p.name: p for p in parts}
    if args.dry_run:
        device = "CPU (--dry-run: toy sizes, the figures mean nothing)"
    else:
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device visible"
    lines = [
        "### GPU check (`benchmarks/gpu_check.sh`)", "",
        f"- Device: {device}; torch {torch.__version__}, CUDA {torch.version.cuda}",
        f"- Command: `bash benchmarks/gpu_check.sh {shlex.join(sys.argv[1:])}`".replace(" `", " `", 1),
        f"- Wall time of the check: {time.monotonic() - started:.0f} s; parts: "
        + ", ".join(f"{p.name} {p.status}" + (f" ({p.seconds:.0f} s)" if p.seconds else "") for p in parts),
        "", "Training steps (random CIFAR-10-shaped data on the device; supernets sample a child every step):", "",
        *step_table(parts), "", "Recurrent language models (random token windows):", "", *rnn_table(by_name["rnn"]),
        "", "Paper runs, projected from the second of two real epochs on random data of CIFAR-10's size:", "",
        *projection(by_name["search"], PAPER_SEARCH_EPOCHS, GOAL_SEARCH_S, "search"),
        *projection(by_name["final"], PAPER_FINAL_EPOCHS, GOAL_FINAL_S, "final training"),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="every part at toy sizes on the CPU")
    p.add_argument("--device", default="cuda", help="the GPU (default cuda)")
    p.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for all parts (default {BUDGET_S})")
    p.add_argument("--json", type=Path, help="also write the raw results here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = started + args.budget
    with tempfile.TemporaryDirectory(prefix="enastool-gpu-check-") as folder:
        parts = plan(args, Path(folder))
        for p in parts:
            run_part(p, deadline)
    print(report(args, parts, started))
    if args.json:
        args.json.write_text(json.dumps([{"name": p.name, "status": p.status, "seconds": p.seconds,
                                          "command": p.command, "result": p.result} for p in parts], indent=1))
    essential = [p for p in parts if not p.name.startswith("compiled")]
    return 0 if all(p.status == "ok" for p in essential) else 1


if __name__ == "__main__":
    sys.exit(main())
