"""Time one round of NAO's encoder-predictor-decoder (EPD) at the paper's sizes.

    python benchmarks/bench_nao.py                         # micro, pool 600, 1000 epochs, 300 from the top 100
    python benchmarks/bench_nao.py --timed-epochs 3        # a quick run: 3 epochs timed, extrapolated to 1000
    python benchmarks/bench_nao.py --device cuda --timed-epochs 20

One round of NAO-WS (reference sec. 9) after an evaluation point: build the training set from
the scored pool (10% held out, the rest repeated 10 times with the symmetry augmentation),
train the EPD for ``--epochs`` epochs (Adam, batch 100), evaluate it on the held-out part
(pairwise accuracy and Hamming distance), and generate ``--new`` new architectures from the
``--top`` best (eta = 1, 2, ... up to ``--max-eta``). The pool is uniformly random and scored
by a fixed random linear function of its tokens (one weight per position and token, plus
noise), so that the predictor has something to learn.

Training is timed for ``--timed-epochs`` epochs and **extrapolated** to ``--epochs`` from the
mean epoch time (the first epoch, which pays for warm-up, is left out when more than one is
timed). Generation runs from the EPD as those epochs left it: a fully trained EPD may need a
different number of eta rounds. The checkpoint row is the size and save time of the trainer's
state (``torch.save`` into memory), which a resumable search writes while the EPD trains.
The table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from dataclasses import replace

import torch

from enastool.encoding import MacroArch, MicroArch
from enastool.encoding.tokens import MacroTokens, MicroTokens
from enastool.search.epd import EPD, EPDGenerator, EPDSettings, EPDTrainer
from enastool.train.device import resolve_device

PAPER = EPDSettings()  # reference sec. 9
PAPER_POOL = 600
SCORE_NOISE = 0.05  # standard deviation of the noise added to the synthetic scores
MIB = 2**20
COLUMNS = ("what", "value", "unit")


def random_pool(space: str, size: int, arch_size: int, rng: random.Random) -> list:
    """``size`` distinct uniformly random architectures."""
    pool: dict = {}
    while len(pool) < size:
        if space == "micro":
            arch = MicroArch.sample(rng, num_blocks=arch_size)
        else:
            arch = MacroArch.sample(rng, num_layers=arch_size)
        pool[arch] = None
    return list(pool)


def synthetic_scores(scheme, archs: list, rng: random.Random) -> list[float]:
    """A fixed random weight per (position, token), summed over the tokens, plus noise."""
    weights = [[rng.gauss(0, 1) for _ in range(scheme.vocab_size)] for _ in range(scheme.length)]
    return [
        sum(weights[p][t] for p, t in enumerate(scheme.encode(a))) + rng.gauss(0, SCORE_NOISE)
        for a in archs
    ]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_table(rows: list[tuple]) -> None:
    cells = [COLUMNS] + [tuple(str(v) for v in row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    for n, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="auto (cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (the default leaves cores to others)")
    p.add_argument("--space", choices=("micro", "macro"), default="micro")
    p.add_argument("--blocks", type=int, default=5, help="micro: blocks per cell")
    p.add_argument("--layers", type=int, default=12, help="macro: layers")
    p.add_argument("--pool", type=int, default=PAPER_POOL, help="architectures in the scored pool")
    p.add_argument("--epochs", type=int, default=PAPER.epochs, help="EPD training epochs of one round")
    p.add_argument("--timed-epochs", type=int, default=5,
                   help="epochs actually run; the training time is extrapolated to --epochs")
    p.add_argument("--top", type=int, default=PAPER.top, help="generation starts from the best TOP")
    p.add_argument("--new", type=int, default=PAPER.new_archs, help="new architectures to generate")
    p.add_argument("--max-eta", type=int, default=PAPER.max_eta, help="largest step size")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        args.device = resolve_device(args.device)
    except Exception as e:  # EnasError: an unknown name, or cuda without a GPU
        p.error(str(e))
    if min(args.pool, args.epochs, args.timed_epochs, args.top, args.new, args.max_eta, args.threads) < 1:
        p.error("--pool, --epochs, --timed-epochs, --top, --new, --max-eta and --threads must be >= 1")
    if args.pool < 2:
        p.error("--pool must be >= 2")
    args.timed_epochs = min(args.timed_epochs, args.epochs)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = args.device
    rng = random.Random(args.seed)
    scheme = MicroTokens(args.blocks) if args.space == "micro" else MacroTokens(args.layers)
    settings = replace(PAPER, epochs=args.epochs, top=args.top, new_archs=args.new, max_eta=args.max_eta)

    print(f"building a pool of {args.pool} {args.space} architectures ...", file=sys.stderr)
    archs = random_pool(args.space, args.pool, args.blocks if args.space == "micro" else args.layers, rng)
    scores = synthetic_scores(scheme, archs, rng)
    model = EPD(scheme, settings).to(device)
    torch.optim.Adam(model.parameters())  # the first optimiser imports torch's compiler stack: not timed
    trainer, build_s = timed(lambda: EPDTrainer(model, archs, scores, seed=args.seed))
    rows_per_epoch = len(trainer.train_tokens)
    steps_per_epoch = -(-rows_per_epoch // settings.batch_size)

    epoch_s = []
    figures = []
    for epoch in range(args.timed_epochs):
        print(f"training epoch {epoch + 1}/{args.timed_epochs} ...", file=sys.stderr)
        start = time.perf_counter()
        figures += trainer.train(1)  # reads the loss once per epoch: the device is synchronised
        sync(device)
        epoch_s.append(time.perf_counter() - start)
    steady = epoch_s[1:] if len(epoch_s) > 1 else epoch_s
    mean_epoch_s = sum(steady) / len(steady)
    train_s = mean_epoch_s * args.epochs

    print("evaluating the held-out part ...", file=sys.stderr)
    held, eval_s = timed(trainer.evaluate)
    buffer = io.BytesIO()
    _, save_s = timed(lambda: torch.save(trainer.state_dict(), buffer))

    print(f"generating {args.new} from the top {args.top} ...", file=sys.stderr)
    generator = EPDGenerator(model, archs, scores)
    rounds, generate_s = timed(generator.run)
    sync(device)
    round_s = build_s + train_s + eval_s + generate_s

    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"# device={device} threads={threads} torch={torch.__version__} space={args.space} "
          f"length={scheme.length} pool={args.pool} epochs={args.epochs} (timed {args.timed_epochs}, "
          f"EXTRAPOLATED) top={args.top} new={args.new} max_eta={args.max_eta}")
    print_table([
        ("training rows per epoch (augmented)", rows_per_epoch, "rows"),
        ("held-out architectures", held["holdout"], "archs"),
        (f"steps per epoch (batch {settings.batch_size})", steps_per_epoch, "steps"),
        ("dataset build", f"{build_s:.3f}", "s"),
        ("epoch", f"{mean_epoch_s:.3f}", "s"),
        ("train step", f"{mean_epoch_s / steps_per_epoch * 1e3:.1f}", "ms"),
        (f"EPD training, {args.epochs} epochs (extrapolated)", f"{train_s:.1f}", "s"),
        ("held-out evaluation", f"{eval_s:.3f}", "s"),
        (f"generation ({len(rounds)} eta rounds)", f"{generate_s:.3f}", "s"),
        ("new architectures found", len(generator.found), "archs"),
        ("trainer checkpoint state", f"{buffer.tell() / MIB:.2f}", "MiB"),
        ("trainer checkpoint save", f"{save_s:.3f}", "s"),
        ("one EPD round (extrapolated)", f"{round_s:.1f}", "s"),
        ("one EPD round (extrapolated)", f"{round_s / 60:.1f}", "min"),
    ])
    last = figures[-1]
    pairwise = "-" if held["pairwise_accuracy"] is None else f"{held['pairwise_accuracy']:.3f}"
    hamming = "-" if held["hamming"] is None else f"{held['hamming']:.2f}"
    print(f"# after {last['epoch']} epochs: loss {last['loss']:.4f} mse {last['mse']:.4f} "
          f"nll {last['nll']:.4f}; held-out pairwise accuracy {pairwise}, Hamming distance {hamming}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
