"""The peer: NNI 3.0's ENAS cell space as a uniform single-path one-shot supernet, on the CPU.

    PEER_PYTHON benchmarks/peer_nni_step.py --width 20 --cells 8 --batch 64 --threads 2

Runs in the peer's own virtual environment (torch 2.13.0, nni 3.0, pytorch-lightning; make it
with ``python benchmarks/peer.py --setup-peer``), never with enastool installed: it imports
nothing from this repository. ``benchmarks/peer.py`` starts it in a fresh process.

The work, as NNI's own RandomOneShot strategy trains the space: ``ENAS(width, num_cells,
dataset="cifar")`` mutated by ``RandomOneShot``, then per step a fresh uniformly random
architecture (``resample`` of every supernet module), one SGD step (lr 0.05, momentum 0.9,
Nesterov, no weight decay) on a fixed batch of random 32x32x3 images. ``--warmup`` untimed
steps, then ``--steps`` timed ones. NNI's N=8 cells are N N | R N N | R N N (6 normal + 2
reduction cells, 5 nodes each), enastool's micro supernet with 6 layers.

Prints one JSON line: images/s, ms per step, and the forward FLOPs per image (mean over the
timed steps' architectures, counted after the timing with ``FlopCounterMode``: convolutions
and matrix products, multiply-add = 2, the same counter enastool uses).
"""

import argparse
import json
import time
import warnings

warnings.filterwarnings("ignore")

import torch  # noqa: E402
from nni.nas.hub.pytorch import ENAS  # noqa: E402
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule  # noqa: E402
from nni.nas.strategy import RandomOneShot  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

LR = 0.05
MOMENTUM = 0.9
IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
COUNT_BATCH = 2  # batch of the counting forward passes (training-mode batch norm needs > 1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=20)
    p.add_argument("--cells", type=int, default=8, help="NNI's num_cells: normal + 2 reduction cells")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    model = ENAS(width=a.width, num_cells=a.cells, dataset="cifar")
    RandomOneShot().mutate_model(model)
    supers = [m for m in model.modules() if isinstance(m, BaseSuperNetModule)]

    def resample() -> dict:
        memo: dict = {}
        for m in supers:
            memo.update(m.resample(memo=memo))
        return memo

    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)
    x = torch.randn(a.batch, *IMAGE_SHAPE)
    y = torch.randint(0, NUM_CLASSES, (a.batch,))
    sampled: list[dict] = []

    def step() -> None:
        sampled.append(resample())
        opt.zero_grad(set_to_none=True)
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        torch.nn.functional.cross_entropy(out, y).backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    sampled.clear()
    seconds = []
    for _ in range(a.steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)

    flops = []
    with torch.no_grad():
        for memo in sampled:
            for m in supers:  # replay the timed architecture
                m.resample(memo=dict(memo))
            with FlopCounterMode(display=False) as counter:
                model(x[:COUNT_BATCH])
            flops.append(counter.get_total_flops() / COUNT_BATCH)
    fwd = sum(flops) / len(flops)
    images_per_s = a.batch * len(seconds) / sum(seconds)
    print(json.dumps({
        "network": "nni3-enas-oneshot",
        "setting": f"width={a.width} cells={a.cells} batch={a.batch}",
        "batch": a.batch,
        "steps": a.steps,
        "warmup": a.warmup,
        "images_per_s": images_per_s,
        "step_ms": [s * 1e3 for s in seconds],
        "fwd_flops_per_image": fwd,
        "train_gflops_per_s": 3 * fwd * images_per_s / 1e9,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
