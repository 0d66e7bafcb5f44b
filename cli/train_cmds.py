"""``enastool train-final`` and ``enastool evaluate``.

train-final trains one architecture from scratch into a run directory; evaluate reads a
finished final run back (or scores architectures with a search run's shared weights). Image
runs report accuracy, rnn runs perplexity (the trainer and evaluator of the space's data kind,
``enastool.train``).

Choices a user sees:

- stdout stays empty for train-final: its product is the run directory (``--format json``
  prints one summary object there when it ends). The architecture it trained is RUN/arch.txt,
  itself a SOURCE for every other command. Progress and the closing one-line summary (final
  and best test accuracy) go to stderr.
- Without --preset the data set picks it (smoke on the embedded digits, paper on CIFAR-10);
  settings that cannot work on the data set are refused before torch loads. ``--set KEY=VALUE``
  reaches any setting. Keep probabilities say so: ``--drop-path-keep``, ``--dropout-keep``
  (the old ``--drop-path`` and ``--keep-prob`` are refused with the new names).
- ``--resume RUN`` continues from RUN/last.pt with the run's own config; SOURCE may then be
  left out. Only ``--device``, ``--data-dir`` and ``--quiet`` may change on resume (where it
  runs and where the data lives, not what it trains).
- Under ``torchrun --nproc-per-node K --no-python enastool train-final ...`` every process
  trains its shard; rank 0 alone writes the run and shows progress. SOURCE must then be a file
  (the processes cannot share one stdin).
- evaluate loads last.pt, the network at the end of training (``--checkpoint best`` picks
  best.pt, the epoch with the best *test* accuracy: a figure selected on the test images).
- ``--tta`` averages the logits of each image and its horizontal mirror. For digits mirroring
  does not preserve the label (the network never saw mirrored digits); it is allowed anyway.
- rnn runs: best.pt is the epoch with the best *validation* perplexity, and evaluate reports
  the weights NT-ASGD averaged once averaging started; ``--batch-size`` sets the parallel
  test streams (default: the run's ``test_batch_size``, the reference's 1).

Nothing here imports torch at module level, so ``--help`` is instant.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console

from enastool.config import DATASETS, DTYPES, MAX_BATCH_SIZE, MAX_COUNT, PAPER_PRESET, PRESETS, FinalConfig
from enastool.runs import CHECKPOINT_CHOICES, EVAL_SPLITS, GracefulInterrupt  # no torch import

from .common import (
    from_option, load_input, load_single, parse_assignments, preset_note, set_option, space_option,
)
from .console import EXIT_HELP, EXIT_INTERRUPTED, RUN_EXIT_HELP, fail, note_run
from .progress import ProgressReporter

TITLE = "train-final"
# Trainer events the display leaves out: the command prints its own closing summary instead
# of the "done" event (checkpoint events the reporter leaves out itself).
HIDDEN_EVENTS = ("done",)
# Under torchrun a Ctrl-C reaches every worker twice: from the terminal and again forwarded by
# the launcher. A repeat within this many seconds is the same request, not "stop right now".
FORWARDED_SIGNAL_WINDOW_S = 5.0
# torchrun's environment (enastool.train.distributed reads and checks it once torch is loaded).
ENV_RANK, ENV_WORLD_SIZE = "RANK", "WORLD_SIZE"
# Options that may change on --resume (where the run executes, not what it computes).
RESUME_CHANGEABLE = ("device", "data_dir")
FORMATS = ("text", "json")
# Options renamed because their old names could be misread: (old, new, what the new one takes).
RENAMED_OPTIONS = {
    "--drop-path": ("--drop-path-keep", "the drop-path KEEP probability, where timm and DARTS take "
                    "a drop rate: a drop rate r is --drop-path-keep 1-r (1.0 = off)"),
    "--keep-prob": ("--dropout-keep", "the keep probability of the dropout before the classifier: "
                    "a dropout rate r is --dropout-keep 1-r"),
}


def refuse_renamed(ctx: click.Context, param: click.Parameter, value) -> None:
    """The callback of a renamed option's old name: one line naming the new one."""
    if value is None:
        return
    old = param.opts[0]
    new, meaning = RENAMED_OPTIONS[old]
    raise click.UsageError(f"{old} is now {new}: it takes {meaning}", ctx=ctx)


def config_option(*names: str, field: str, **kwargs):
    """An option that overrides FinalConfig field ``field``; its help is the field's own."""
    return click.option(*names, field, default=None, help=FinalConfig.help(field), **kwargs)


# Config overrides: each option's destination is the FinalConfig field it sets; None = not given,
# so the layers "defaults < preset < --config file < command line" resolve in enastool.config.
OVERRIDE_OPTIONS = [
    config_option("--layers", field="layers", type=int),
    config_option("--channels", field="channels", type=int),
    config_option("--hidden-size", field="hidden_size", type=int),
    config_option("--bptt", field="bptt", type=int),
    config_option("--epochs", field="epochs", type=int),
    config_option("--batch-size", field="batch_size", type=int),
    config_option("--cutout", field="cutout", type=int),
    config_option("--aux-weight", field="aux_weight", type=float),
    config_option("--drop-path-keep", field="drop_path_keep", type=float),
    config_option("--dropout-keep", field="keep_prob", type=float),
    # The old names, hidden; their own parameter names (not keep_prob) so they shadow nothing.
    *[click.option(old, "renamed_" + old.strip("-").replace("-", "_"), type=str, default=None, hidden=True,
                   expose_value=False, callback=refuse_renamed)
      for old in RENAMED_OPTIONS],
    config_option("--lr-max", field="lr_max", type=float),
    config_option("--lr-min", field="lr_min", type=float),
    config_option("--l2", field="l2", type=float),
    config_option("--grad-clip", field="grad_clip", type=float),
    config_option("--eval-every", field="eval_every", type=int),
    config_option("--seed", field="seed", type=int),
    config_option("--dtype", field="dtype", type=click.Choice(DTYPES)),
    click.option(
        "--channels-last/--no-channels-last", "channels_last", default=None,
        help="channels-last memory format (not given: the config's, auto = on)",
    ),
    config_option("--compile", field="compile", type=click.Choice(["auto", "on", "off"])),
]


def override_options(command):
    for option in reversed(OVERRIDE_OPTIONS):
        command = option(command)
    return command


# --------------------------------------------------------------------------------------------
# train-final
# --------------------------------------------------------------------------------------------


@click.command("train-final", epilog=RUN_EXIT_HELP)
@click.argument("source", metavar="[SOURCE]", required=False)
@space_option
@from_option
@click.option("--dataset", type=click.Choice(DATASETS), default=None,
              help="Data set (default: cifar10 or ptb with --data-dir, else the embedded digits or pydoc).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder holding the data set (default: $ENASTOOL_DATA_DIR or ~/.cache/enastool/data).")
@click.option("--out", "out", metavar="RUN", type=click.Path(), default=None,
              help="New run directory (absent or empty).")
@click.option("--preset", type=click.Choice(PRESETS), default=None,
              help="Settings to start from: paper (the authors'; the default with a data directory, "
                   "CIFAR-10 or PTB) or smoke (a minute or two on a CPU; the default on the "
                   "embedded digits and pydoc).")
@click.option("--config", "config_file", metavar="FILE.toml", type=click.Path(dir_okay=False), default=None,
              help="TOML file of settings (a [final] table or flat keys); options given here win.")
@click.option("--device", default=None, help=FinalConfig.help("device"))
@override_options
@set_option("lr_t0=20")
@click.option("--resume", metavar="RUN", type=click.Path(), default=None,
              help="Continue RUN from its last.pt with its own config (SOURCE optional).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="json: one summary object on stdout at the end (run, status, test and best "
                   "figures, epochs, seconds); text: nothing on stdout.")
@click.option("--quiet", is_flag=True,
              help="No progress and no summary (errors, and how to resume after an interruption, still print).")
@click.option("--tensorboard", is_flag=True,
              help="Also log the metrics to RUN/tensorboard (needs enastool[tensorboard]); a "
                   "resumed run keeps logging there.")
def train_final(source, space, from_format, dataset, data_dir, out, preset, config_file, device, assignments,
                resume, fmt, quiet, tensorboard, **overrides):
    """Train the one architecture in SOURCE from scratch; report test accuracy (rnn: validation
    perplexity, then test perplexity) as it goes.

    SOURCE is a file or - (stdin) holding exactly one architecture record, in any text form
    enastool reads. The run directory RUN gets config.toml, metrics.jsonl, arch.txt and the
    checkpoints last.pt and best.pt. Progress and a closing line go to stderr; stdout stays
    empty (the trained architecture is RUN/arch.txt) unless --format json asks for a summary.
    Ctrl-C (or SIGTERM) saves last.pt and exits 130 (143); --resume RUN continues exactly.

    \b
    Examples:
      enastool derive runs/s | enastool train-final - --out runs/f     # smoke preset on digits
      enastool train-final best.arch --data-dir data --out runs/f --set lr_t0=20 --format json
      torchrun --nproc-per-node 2 --no-python enastool train-final best.arch --data-dir data --out runs/f
    """
    from enastool.config import default_preset
    from enastool.logs import TENSORBOARD_DIR, check_tensorboard
    from enastool.runs import RunDir

    if tensorboard:  # before anything loads
        check_tensorboard(Path(out or resume or ".") / TENSORBOARD_DIR)
    overrides.update(dataset=dataset, data_dir=data_dir, device=device)
    launched = launched_processes()
    if source == "-" and launched > 1:
        fail("under torchrun SOURCE must be a file: the processes cannot share one stdin; "
             "save the record first (... | tee best.arch) and pass best.arch")
    set_values, origins = parse_assignments(FinalConfig, assignments, overrides)  # refuses clashes with options
    if "arch" in set_values:
        fail(f"{origins['arch']}: the architecture is SOURCE; give it as a file or -")

    if resume is not None:
        if out is not None and Path(out).resolve() != Path(resume).resolve():
            fail(f"--out {out} and --resume {resume}: a resumed run continues in its own folder; drop --out")
        given = sorted(k for k, v in overrides.items() if v is not None and k not in RESUME_CHANGEABLE)
        given += [name for name, value in (("preset", preset), ("config", config_file)) if value is not None]
        given += ["set"] if assignments else []
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            fail(f"--resume {resume} continues with the run's own settings (its config.toml); drop {flags}")
        run = RunDir.open(resume, kind="final")
        changes = {k: overrides[k] for k in RESUME_CHANGEABLE if overrides[k] is not None}
        config = replace(run.config, **changes)
        if changes:
            config.validate({k: "command line" for k in changes})
        arch = load_single(source, space, from_format) if source is not None else None
        run_path = resume
        note_run(run_path, f"enastool train-final --resume {run_path}")
    else:
        if out is None:
            fail("--out RUN is required: the new run directory (or continue one with --resume RUN)")
        if source is None:
            if sys.stdin.isatty() or launched > 1:
                fail("SOURCE is missing: give a file holding one architecture, or - to read a pipe")
            source = "-"
        arch = load_single(source, space, from_format)
        from enastool.config import resolve_final_config

        settings = {**overrides, **set_values}
        chosen = preset or default_preset(FinalConfig, config_file, settings)
        config = resolve_final_config(chosen, arch.space, config_file, settings, arch=arch, origins=origins,
                                      check_data=True)
        check_new_run_dir(out)
        run_path = out
        note_run(run_path, f"enastool train-final --resume {run_path}", created=False)
        if preset is None and chosen != PAPER_PRESET and not quiet and launched_rank() == 0:
            click.echo(preset_note(TITLE, chosen, config), err=True)

    result, is_main = run_training(arch, config, run_path, resume=resume is not None, quiet=quiet,
                                   tensorboard=tensorboard)
    if is_main and fmt == "json":
        click.echo(json.dumps(final_summary(result, config, run_path), indent=2))
    if result["interrupted"]:
        if is_main:  # even under --quiet: the run is unfinished, and this says how to go on
            click.echo(f"{TITLE}: interrupted at epoch {result['epoch']}, step {result['step']}; "
                       f"last.pt saved. Continue with: enastool train-final --resume {run_path}", err=True)
        sys.exit(result["exit_code"])  # every rank agreed to stop: each exits the same way
    if is_main and not quiet:
        click.echo(summary_line(result, run_path), err=True)


def launched_rank() -> int:
    """This process's torchrun rank, read without importing torch (the display starts before
    torch loads); ``distributed.env_info`` checks the environment properly afterwards."""
    try:
        return int(os.environ.get(ENV_RANK) or 0)
    except ValueError:
        return 0


def launched_processes() -> int:
    try:
        return int(os.environ.get(ENV_WORLD_SIZE) or 1)
    except ValueError:
        return 1


def final_summary(result: dict, config, run_path) -> dict:
    """What ``--format json`` prints: the run, how it ended and its figures (the trainer's
    result: test_accuracy and best_accuracy for images, test_ppl and best_valid_ppl for rnn)."""
    return {
        "run": str(run_path),
        "kind": "final",
        "status": "interrupted" if result["interrupted"] else "finished",
        "space": config.space,
        "arch": f"{config.space} {config.arch}",
        "dataset": config.dataset,
        "epochs": config.epochs,
        **{key: value for key, value in result.items() if key not in ("interrupted", "exit_code")},
    }


def run_training(arch, config, run_path, *, resume: bool, quiet: bool,
                 tensorboard: bool = False) -> tuple[dict, bool]:
    """Join the torchrun job if there is one, open or create the run, train.

    Rank 0 keeps the run's status.json (``RunDir.tracking``) and, with ``tensorboard``, logs
    to RUN/tensorboard too. Returns the trainer's result and whether this process is rank 0
    (the one that reports)."""
    # soft_wrap: a log line longer than the (assumed 80-column) log file is not broken up.
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    reporter = ProgressReporter(TITLE, quiet=quiet or launched_rank() != 0, console=console)

    def show(event: dict) -> None:
        if event.get("kind") not in HIDDEN_EVENTS:
            reporter(event)

    with reporter:
        reporter.status("importing torch")
        from enastool.runs import RunDir
        from enastool.train import distributed
        from enastool.train.trainer import build_final_trainer, final_trainer_class

        launched = distributed.env_info()
        if launched.enabled and not final_trainer_class(config.space).multi_process:
            fail(f"{config.space} final training runs in one process, but WORLD_SIZE={launched.world_size} "
                 "says torchrun started several; run enastool train-final without torchrun")
        info, _ = distributed.init_distributed(config.device)
        try:
            # Every rank checked the folder above; nobody creates it before all have looked.
            distributed.barrier()
            run = RunDir.open(run_path, kind="final") if resume else None
            interrupt = LaunchedInterrupt(forwarded=info.enabled)
            stop = RankAgreement(interrupt, every=config.log_every)
            reporter.status(f"loading {config.dataset} and building the network")
            # Built before a new run directory exists: bad data, network or batch settings
            # leave nothing behind that would block the corrected command. Until training
            # starts a Ctrl-C stops at once (nothing to save); then the first one saves last.pt.
            trainer = build_final_trainer(arch, config, run, callback=show, interrupt=stop)
            if not resume:
                trainer.run = distributed.setup_run_dir(run_path, config, resume=False, kind="final",
                                                        command=command_line())
                note_run(run_path, f"enastool train-final --resume {run_path}")
            if info.is_main and tensorboard:
                trainer.run.enable_tensorboard()
            with interrupt, trainer.run.tracking() if info.is_main else contextlib.nullcontext():
                result = trainer.train(resume)
            # Leave the group together: a rank that tears it down while rank 0 still saves aborts.
            distributed.barrier()
            if result["interrupted"]:
                result["exit_code"] = interrupt.exit_code or EXIT_INTERRUPTED
        finally:
            distributed.cleanup()
    return result, info.is_main


def summary_line(result: dict, run_path) -> str:
    if "test_ppl" in result:  # a language model's result
        return perplexity_summary(result, run_path)
    best = result.get("best_accuracy")
    best_text = f", best {best:.4f} at epoch {result['best_epoch']}" if best is not None and best >= 0 else ""
    final = result.get("test_accuracy")
    final_text = f"{final:.4f}" if final is not None else "n/a"
    return (f"{TITLE}: test accuracy {final_text} after {result['epoch']} epochs{best_text} "
            f"({result['seconds']:.0f}s); run {run_path}")


def perplexity_summary(result: dict, run_path) -> str:
    best = result.get("best_valid_ppl")
    best_text = f", best validation {best:.2f} at epoch {result['best_epoch']}" if best is not None else ""
    final = result.get("test_ppl")
    final_text = f"{final:.2f}" if final is not None else "n/a"
    averaged = result.get("averaging_epoch")
    asgd_text = f", weights averaged from epoch {averaged}" if averaged else ""
    return (f"{TITLE}: test perplexity {final_text} after {result['epoch']} epochs{best_text}{asgd_text} "
            f"({result['seconds']:.0f}s); run {run_path}")


def command_line() -> list[str]:
    return ["enastool", *sys.argv[1:]] if Path(sys.argv[0]).name == "enastool" else list(sys.argv)


def check_new_run_dir(path) -> None:
    """The errors RunDir.create would raise, raised on every rank before any creates it, so a
    torchrun job with a bad --out stops everywhere instead of waiting at a barrier."""
    from enastool.runs import check_new_run_path

    check_new_run_path(path)


class LaunchedInterrupt(GracefulInterrupt):
    """GracefulInterrupt that, under torchrun (``forwarded``), takes a repeat of the first
    signal within FORWARDED_SIGNAL_WINDOW_S as the launcher forwarding the same Ctrl-C, not as
    a second Ctrl-C (which stops at once without saving)."""

    def __init__(self, forwarded: bool):
        super().__init__()
        self.forwarded = forwarded
        self.first_at = 0.0

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.signal_number is None:
            self.first_at = now
        elif self.forwarded and now - self.first_at < FORWARDED_SIGNAL_WINDOW_S:
            return
        super()._handle(signum, frame)


class RankAgreement:
    """The trainer's ``interrupt``: under torchrun all ranks must stop after the same step.

    Signals reach the processes at slightly different steps. The trainer reads ``interrupted``
    the same number of times on every rank, so every ``every``-th read the ranks all-reduce
    their flags (one small collective per log interval, never per step) and agree.
    """

    def __init__(self, local, every: int):
        self.local = local
        self.every = max(int(every), 1)
        self.reads = 0
        self.agreed = False

    @property
    def interrupted(self) -> bool:
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.local.interrupted
        if self.agreed:
            return True
        self.reads += 1
        if self.reads % self.every:
            return False
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([int(self.local.interrupted)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.agreed = bool(flag.item())
        return self.agreed


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------


@click.command("evaluate", epilog=EXIT_HELP)
@click.argument("run_path", metavar="RUN", type=click.Path())
@click.option("--arch", "arch_source", metavar="SOURCE", default=None,
              help="Search run only: score the architectures in SOURCE with its shared weights.")
@space_option
@from_option
@click.option("--dataset", type=click.Choice(DATASETS), default=None,
              help="Data set (default: the run's).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder holding the data set (default: the run's).")
@click.option("--split", type=click.Choice(EVAL_SPLITS), default=None,
              help="test (default) or valid: the search's held-out images, which final training also "
                   "trained on (rnn: the corpus's valid split, which it validated on).")
@click.option("--checkpoint", type=click.Choice(list(CHECKPOINT_CHOICES)), default=None,
              help="last (default: the network at the end of training) or best (the epoch with "
                   "the best test accuracy, so selected on the test images; rnn: the best "
                   "validation perplexity).")
@click.option("--tta", is_flag=True, help="Average the logits of each image and its mirror image.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              help="table (default) or json, on stdout.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=None,
              help="Evaluation batch (default: 2 x the run's; rnn: parallel test streams, default the run's test_batch_size).")
@click.option("--batches", type=click.IntRange(1, MAX_COUNT), default=None,
              help="Search run: score on this many validation minibatches (default: the whole split).")
@click.option("--device", default="auto", show_default=True, help="auto (cuda when available), cpu, cuda or cuda:N")
def evaluate(run_path, arch_source, space, from_format, dataset, data_dir, split, checkpoint, tta, fmt, batch_size,
             batches, device):
    """Accuracy, loss, parameter count and image count of a final run's network (rnn: perplexity,
    loss, parameter count and token count).

    With a search run and --arch SOURCE: one score per architecture in SOURCE, measured with
    the run's shared weights (rnn: 80 / validation perplexity, and the perplexity). JSON keys:
    accuracy, loss, params, images (and run, checkpoint, epoch, dataset, split, tta, arch,
    params_without_aux); rnn: perplexity, loss, params, tokens (and run, checkpoint, epoch,
    dataset, split, batch_size, averaged, arch). The table or the JSON is this command's data:
    it goes to stdout.

    \b
    Examples:
      enastool evaluate runs/f --format json
      enastool derive runs/s --top 3 | enastool evaluate runs/s --arch -
    """
    from enastool.runs import RunDir

    run = RunDir.open(run_path)
    if run.kind == "search":
        if arch_source is None:
            fail(f"{run_path} is a search run: pass --arch SOURCE to score architectures with its "
                 "shared weights, or evaluate a final run")
        final_only = [name for name, value in (("dataset", dataset), ("data-dir", data_dir), ("split", split),
                                               ("checkpoint", checkpoint), ("batch-size", batch_size))
                      if value is not None] + (["tta"] if tta else [])
        if final_only:
            fail(f"{', '.join('--' + n for n in final_only)}: only for final runs; {run_path} is a search run")
        score_search_run(run, arch_source, space, from_format, batches, device, fmt)
        return
    if arch_source is not None:
        fail(f"{run_path} is a final run of one architecture (its arch.txt); --arch scores "
             "architectures with a search run's shared weights: drop --arch")
    if batches is not None:
        fail(f"--batches: only for search runs; {run_path} is a final run")
    with status_display(f"evaluate {run_path}") as reporter:
        reporter.status("importing torch")
        from enastool.train.evaluate import evaluate_final_run

        reporter.status("loading the network and the data")
        report = evaluate_final_run(run, dataset=dataset, data_dir=data_dir, split=split or "test",
                                    checkpoint=checkpoint, tta=tta, batch_size=batch_size, device=device)
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        print_rows(report_rows(report))


# The figures of an evaluation report, in table order, with their formats; a report shows
# those it has (images: accuracy and images; rnn: perplexity and tokens).
REPORT_FIGURES = (
    ("accuracy", "{:.4f}"),
    ("perplexity", "{:.2f}"),
    ("loss", "{:.4f}"),
    ("params", "{:,}"),
    ("images", "{:,}"),
    ("tokens", "{:,}"),
)


def report_rows(report: dict) -> list[tuple[str, str]]:
    checkpoint = f"{report['checkpoint']} (epoch {report['epoch']})"
    if report.get("averaged"):
        checkpoint += ", NT-ASGD averaged weights"
    data = f"{report['dataset']} {report['split']}"
    if report.get("tta"):
        data += " with tta"
    if "batch_size" in report:
        data += f", {report['batch_size']} stream{'s' if report['batch_size'] != 1 else ''}"
    rows = [("run", report["run"]), ("arch", report["arch"]), ("checkpoint", checkpoint), ("data", data)]
    return rows + [(name, fmt.format(report[name])) for name, fmt in REPORT_FIGURES if name in report]


def print_rows(rows) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name.ljust(width)}  {value}")


def status_display(title: str) -> ProgressReporter:
    """A loading line and bar on a terminal, nothing elsewhere (evaluate's stderr stays clean)."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    return ProgressReporter(title, quiet=not console.is_terminal, console=console)


def score_search_run(run, arch_source, space, from_format, batches, device, fmt) -> None:
    """One shared-weight score per architecture of ``arch_source`` (search runs), on stdout."""
    archs = [record.arch for record in load_input(arch_source, space, from_format)]
    with status_display("evaluate") as reporter:
        reporter.status("importing torch")
        from enastool.search.derive import score_architectures
        from enastool.search.tasks import score_figures

        reporter.status("loading the shared weights and the data")
        scores = score_architectures(run.path, archs, batches=batches, device=device, callback=reporter)
    rows = [{"arch": f"{a.space} {a.format()}", "score": float(s), **score_figures(run.config.space, float(s))}
            for a, s in zip(archs, scores)]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:  # score, then each figure as "name value", then the record
        figures = "".join(f"  {name} {value:.2f}" for name, value in row.items() if name not in ("arch", "score"))
        click.echo(f"{row['score']:.4f}{figures}  {row['arch']}")
