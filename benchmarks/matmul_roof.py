"""This CPU's fp32 matrix-multiply roof at a given thread count; one JSON line on stdout.

    python benchmarks/matmul_roof.py --threads 2

Times ``torch.mm`` of two ``--size`` x ``--size`` fp32 matrices (2 n^3 FLOPs each, MKL on x86)
for ``--rounds`` rounds of about ``--seconds`` each and reports the best round's GFLOP/s: the
most this machine's cores do with the friendliest dense kernel there is, against which the
achieved GFLOP/s of a training step reads as a fraction. ``benchmarks/peer.py`` runs it in a
fresh process beside the steps it times, so the roof comes from the same run.
"""

import argparse
import json
import time

import torch

SIZE = 2048
ROUNDS = 5
ROUND_SECONDS = 0.5
WARMUP = 2


def roof(size: int, rounds: int, seconds: float) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    for _ in range(WARMUP):
        torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            torch.mm(a, b, out=out)
            count += 1
        best = max(best, 2 * size**3 * count / (time.perf_counter() - start))
    return best / 1e9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=SIZE)
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--seconds", type=float, default=ROUND_SECONDS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gflops = roof(args.size, args.rounds, args.seconds)
    print(json.dumps({"matmul_gflops_per_s": gflops, "size": args.size, "threads": torch.get_num_threads(),
                      "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
