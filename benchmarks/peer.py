"""Side-by-side CPU benchmark: NNI 3.0's ENAS space against enastool, and enastool against itself.

    python benchmarks/peer.py --setup-peer                       # once: the peer's own venv, then the run
    python benchmarks/peer.py --baseline-ref 48885ae             # the run BENCHMARKS.md records
    python benchmarks/peer.py --rows micro-supernet --rounds 1 --no-peer   # a quick look

Every figure comes from a fresh process, and the processes of one round run one after the
other, interleaved (round 1: peer, enastool, baseline; round 2 starts with the next one; and
so on), so that drift in the machine's speed falls on every version alike. Each process uses
``--threads`` intra-op threads (``torch.set_num_threads`` and ``OMP_NUM_THREADS``).

Rows (``--rows``; all by default):

- ``micro-supernet``: the peer's work, NNI 3.0's ENAS cell space trained one-shot with uniform
  single-path sampling (``peer_nni_step.py``, in the peer's venv) against enastool's micro
  supernet at the same size (width 20, 8 cells = 6 normal + 2 reduction, 5 nodes, batch 64),
  a fresh uniformly random child every step, plain SGD (lr 0.05, momentum 0.9, Nesterov).
  enastool's step is timed as ``enastool search`` runs it (``enastool_step.py``: the search
  loop, its loader, its device / dtype / memory-format policy, on a synthetic CIFAR-10 folder
  in the real format), not by calling the supernet.
- ``macro-supernet``: enastool's macro search step at the paper's size (12 layers, 36
  channels, batch 128), uniform children, the paper's search settings.
- ``micro-final``, ``macro-final``: a step of ``enastool train-final`` on the authors'
  architecture at the paper's final settings (micro: 15 layers, 36 channels, batch 144,
  auxiliary head, drop path, cutout; macro: 24 layers, 96 channels, batch 100).

``--baseline-ref REF`` (repeatable) adds enastool at a git ref of this repository: ``git
archive`` unpacks it into a temporary folder, and the same timing script runs with that tree on
``PYTHONPATH``, so before and after come from one run of one script.

Achieved GFLOP/s = 3 x counted forward FLOPs per image x images/s (backward ~ 2 forwards),
read against this CPU's fp32 matmul roof at the same thread count, measured in the same run
(``matmul_roof.py``, once per round). The per-round and median figures and a markdown block
for BENCHMARKS.md go to stdout; progress goes to stderr. ``--json FILE`` also writes every raw
result.

The peer's environment (``--setup-peer``; ``--peer-venv``, default ``~/.cache/enastool/peer-nni``
or ``$ENASTOOL_PEER_VENV``) holds torch 2.13.0, nni 3.0 and pytorch-lightning and is never a
dependency of enastool.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEP_SCRIPT = HERE / "enastool_step.py"
PEER_SCRIPT = HERE / "peer_nni_step.py"
ROOF_SCRIPT = HERE / "matmul_roof.py"

PEER_VENV_ENV = "ENASTOOL_PEER_VENV"
DEFAULT_PEER_VENV = Path.home() / ".cache" / "enastool" / "peer-nni"
PEER_PACKAGES = ("torch==2.13.0", "nni==3.0", "pytorch-lightning")
PEER_LABEL = "NNI 3.0"
CURRENT_LABEL = "enastool"

# The peer's size: NNI's ENAS(width=20, num_cells=8), batch 64 = enastool's 6-layer micro supernet.
PEER_WIDTH = 20
PEER_CELLS = 8
PEER_BATCH = 64
PEER_BLOCKS = 5
MICRO_LAYERS_FOR_PEER = PEER_CELLS - 2  # enastool counts normal cells; 2 reduction cells are added
# --small: every row narrow and at a small batch, to check the runner end to end (not a figure).
SMALL_CHANNELS = 4
SMALL_BATCH = 8


@dataclass(frozen=True)
class Row:
    """One network timed by every version."""

    name: str
    title: str
    step_args: tuple[str, ...]  # enastool_step.py arguments
    steps: int
    warmup: int
    peer: bool = False  # the peer runs this row too


ROWS = (
    Row("micro-supernet", "micro supernet step, the peer's work",
        ("--network", "micro-supernet", "--layers", str(MICRO_LAYERS_FOR_PEER), "--channels", str(PEER_WIDTH),
         "--blocks", str(PEER_BLOCKS), "--batch", str(PEER_BATCH), "--peer-work"),
        steps=20, warmup=3, peer=True),
    Row("macro-supernet", "macro supernet step, paper search size", ("--network", "macro-supernet"),
        steps=5, warmup=2),
    Row("micro-final", "micro final-training step, paper size", ("--network", "micro-final"), steps=3, warmup=1),
    Row("macro-final", "macro final-training step, paper size", ("--network", "macro-final"), steps=3, warmup=1),
)
ROW_NAMES = tuple(r.name for r in ROWS)


@dataclass
class Version:
    """A thing that runs rows: the peer, the tree under test, or a baseline tree."""

    label: str
    tree: Path | None  # enastool tree on PYTHONPATH (None: the peer)
    python: str
    describe: str
    results: dict = field(default_factory=dict)  # row name -> list of per-round results (None: failed)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ set-up
def peer_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def setup_peer(venv: Path) -> None:
    """Create (or complete) the peer's virtual environment with its ordinary pip."""
    if not peer_python(venv).exists():
        log(f"creating the peer's virtual environment in {venv} ...")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log(f"installing {' '.join(PEER_PACKAGES)} into {venv} (a few minutes the first time) ...")
    subprocess.run([str(peer_python(venv)), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)


def peer_versions(venv: Path) -> str:
    code = "import torch, nni; print(torch.__version__, nni.__version__)"
    out = subprocess.run([str(peer_python(venv)), "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"peer.py: the peer's venv {venv} cannot import torch and nni; "
                         "run with --setup-peer (or --no-peer)")
    torch_version, nni_version = out.stdout.split()
    return f"torch {torch_version}, nni {nni_version}"


def unpack_ref(ref: str, into: Path) -> tuple[Path, str]:
    """``git archive`` of ``ref`` unpacked into ``into``; returns (tree, 'abc1234 subject')."""
    try:
        described = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", ref],
                                   capture_output=True, text=True, check=True).stdout.strip()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref],
                                 capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"peer.py: --baseline-ref {ref}: git cannot read it "
                         f"({e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr}".strip() + ")")
    tree = into / ref.replace("/", "_")
    tree.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree, described


def tree_state() -> str:
    """'abc1234' of the tree under test, with a note when it has uncommitted changes."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "(not a git checkout)"
    return commit + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


# ------------------------------------------------------------------------------ running
def child_env(threads: int, tree: Path | None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def run_child(command: list[str], env: dict, cwd: Path, timeout: float | None) -> dict | None:
    """Run one timing process; its last stdout line is the JSON result. None if it failed."""
    try:
        out = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"  timed out after {timeout} s: {shlex.join(command)}")
        return None
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-6:])
        log(f"  failed (exit {out.returncode}): {shlex.join(command)}\n{tail}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def step_command(version: Version, row: Row, args: argparse.Namespace) -> list[str]:
    steps = args.steps or row.steps
    warmup = row.warmup if args.warmup is None else args.warmup
    common = ["--steps", str(steps), "--warmup", str(warmup), "--threads", str(args.threads)]
    if version.tree is None:  # the peer
        width, batch = (SMALL_CHANNELS, SMALL_BATCH) if args.small else (PEER_WIDTH, PEER_BATCH)
        return [version.python, str(PEER_SCRIPT), "--width", str(width), "--cells", str(PEER_CELLS),
                "--batch", str(batch), *common]
    small = ["--channels", str(SMALL_CHANNELS), "--batch", str(SMALL_BATCH)] if args.small else []
    return [version.python, str(STEP_SCRIPT), *row.step_args, *small, *common]


def rotate(items: list, by: int) -> list:
    by %= max(len(items), 1)
    return items[by:] + items[:by]


def run_rounds(versions: list[Version], rows: list[Row], args: argparse.Namespace) -> list[float | None]:
    """Every round: the roof, then each row with its versions interleaved. Returns the roofs."""
    roofs = []
    for round_index in range(args.rounds):
        log(f"round {round_index + 1}/{args.rounds}: matmul roof ...")
        roof = run_child([sys.executable, str(ROOF_SCRIPT), "--threads", str(args.threads)],
                         child_env(args.threads, None), ROOT, args.timeout)
        roofs.append(roof["matmul_gflops_per_s"] if roof else None)
        for row in rows:
            runners = [v for v in versions if v.tree is not None or row.peer]
            for version in rotate(runners, round_index):
                log(f"round {round_index + 1}/{args.rounds}: {row.name}, {version.label} ...")
                result = run_child(step_command(version, row, args), child_env(args.threads, version.tree),
                                   version.tree or ROOT, args.timeout)
                if result is not None and version.tree is not None:
                    found = Path(result["enastool_path"]).resolve()
                    if found != version.tree.resolve():
                        raise SystemExit(f"peer.py: {version.label} imported enastool from {found}, "
                                         f"not {version.tree}; check the environment's PYTHONPATH")
                if result is not None:
                    log(f"  {result['images_per_s']:.1f} img/s")
                version.results.setdefault(row.name, []).append(result)
    return roofs


# ------------------------------------------------------------------------------ report
def median_of(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 1) -> str:
    return "failed" if value is None else f"{value:.{digits}f}"


def machine_lines(args: argparse.Namespace, versions: list[Version], roofs: list) -> list[str]:
    import torch

    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    command = "python benchmarks/peer.py " + shlex.join(sys.argv[1:])
    lines = [
        f"- Machine: {model}, {os.cpu_count()} CPUs visible, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        f"- Command: `{command.strip()}`",
        f"- Threads: {args.threads} per process; {args.rounds} rounds, every figure a fresh process, "
        "versions interleaved within each round",
        f"- fp32 matmul roof ({args.threads} thread(s), 2048 x 2048, best of 5 per round): "
        + ", ".join(fmt(r) for r in roofs) + f" GFLOP/s; median {fmt(median_of(roofs))}",
    ]
    for v in versions:
        lines.append(f"- {v.label}: {v.describe}" + ("" if v.tree is None else f", torch {torch.__version__}"))
    return lines


def report(versions: list[Version], rows: list[Row], roofs: list, args: argparse.Namespace) -> str:
    roof = median_of(roofs)
    rounds = range(args.rounds)
    header = ["row", "version", "setting"] + [f"round {i + 1}" for i in rounds] + [
        "median img/s", "fwd GFLOP/img", "GFLOP/s", "% of roof"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ratio_lines = []
    for row in rows:
        medians = {}
        first = True
        for v in versions:
            results = v.results.get(row.name)
            if not results:
                continue
            images = [r["images_per_s"] if r else None for r in results]
            med = medians[v.label] = median_of(images)
            flops = median_of([r["fwd_flops_per_image"] if r else None for r in results])
            setting = next((r["setting"] for r in results if r), "")
            gflops = None if med is None or flops is None else 3 * flops * med / 1e9
            share = None if gflops is None or not roof else 100 * gflops / roof
            table.append("| " + " | ".join([
                row.title if first else "", v.label, setting, *[fmt(x) for x in images], fmt(med),
                fmt(None if flops is None else flops / 1e9, 3), fmt(gflops), fmt(share),
            ]) + " |")
            first = False
        current = next(v for v in versions if v.label == CURRENT_LABEL)
        for other in versions:
            if other is current or not other.results.get(row.name):
                continue
            per_round = [
                (a["images_per_s"] / b["images_per_s"]) if a and b else None
                for a, b in zip(current.results[row.name], other.results[row.name])
            ]
            ratio_lines.append(
                f"| {row.name} | {CURRENT_LABEL} / {other.label} | "
                + ", ".join(fmt(r, 2) for r in per_round) + f" | **{fmt(median_of(per_round), 2)}x** |")
    lines = ["### CPU side by side (`benchmarks/peer.py`)", "", *machine_lines(args, versions, roofs), "",
             *table, "", "| row | ratio of img/s | per round | median |", "|---|---|---|---|", *ratio_lines]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setup-peer", action="store_true",
                   help="create or complete the peer's venv (torch 2.13.0, nni 3.0, pytorch-lightning) first")
    p.add_argument("--peer-venv", type=Path,
                   default=Path(os.environ.get(PEER_VENV_ENV, DEFAULT_PEER_VENV)),
                   help=f"the peer's virtual environment (default ${PEER_VENV_ENV} or {DEFAULT_PEER_VENV})")
    p.add_argument("--no-peer", action="store_true", help="leave NNI out")
    p.add_argument("--baseline-ref", action="append", default=[], metavar="REF",
                   help="also time enastool at this git ref (repeatable), e.g. 48885ae")
    p.add_argument("--rows", nargs="+", choices=ROW_NAMES, default=list(ROW_NAMES), help="default: all")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, help="timed steps of every row (default: each row's own)")
    p.add_argument("--warmup", type=int, help="untimed steps of every row (default: each row's own)")
    p.add_argument("--small", action="store_true",
                   help=f"every row at {SMALL_CHANNELS} channels and batch {SMALL_BATCH}: checks the runner, "
                   "gives no figure worth recording")
    p.add_argument("--timeout", type=float, help="seconds one process may take (default: no limit)")
    p.add_argument("--json", type=Path, help="also write every raw result to this file")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.threads < 1 or (args.steps is not None and args.steps < 1):
        p.error("--rounds, --threads and --steps must be at least 1")
    if args.warmup is not None and args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = [r for r in ROWS if r.name in args.rows]
    versions = [Version(CURRENT_LABEL, ROOT, sys.executable, f"this tree ({ROOT.name}) at {tree_state()}")]
    with_peer = not args.no_peer and any(r.peer for r in rows)
    if with_peer:
        if args.setup_peer:
            setup_peer(args.peer_venv)
        elif not peer_python(args.peer_venv).exists():
            raise SystemExit(f"peer.py: no peer venv at {args.peer_venv}; add --setup-peer to create it "
                             "(or --no-peer to leave NNI out)")
        versions.insert(0, Version(PEER_LABEL, None, str(peer_python(args.peer_venv)),
                                   f"{peer_versions(args.peer_venv)} in {args.peer_venv}"))
    with tempfile.TemporaryDirectory(prefix="enastool-baselines-") as folder:
        for ref in args.baseline_ref:
            tree, described = unpack_ref(ref, Path(folder))
            versions.append(Version(f"enastool {ref}", tree, sys.executable, f"git {described}"))
        roofs = run_rounds(versions, rows, args)
    text = report(versions, rows, roofs, args)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({
            "roofs": roofs,
            "versions": [{"label": v.label, "describe": v.describe, "results": v.results} for v in versions],
        }, indent=1))
    failed = any(r is None for v in versions for results in v.results.values() for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
