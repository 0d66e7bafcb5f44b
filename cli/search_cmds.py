"""``enastool search`` and ``enastool derive``.

search: resolve the configuration (defaults < --preset < --config TOML < options and --set;
without --preset the data set picks it, see ``enastool.config.default_preset``), refuse what
cannot work before torch loads, create the run directory, run the search with a progress
display on stderr; Ctrl-C / SIGTERM save a checkpoint and exit 130 / 143, and ``--resume RUN``
continues it. stdout stays empty, or holds one JSON summary with ``--format json``.

derive: sample and score architectures from a search run (a nao run: rank the pool it scored
last); the best go to stdout as records (or JSON with their scores), the ranking to stderr, so
``enastool derive RUN | enastool render - -o best.png`` works.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from enastool.config import (
    DATASETS, DTYPES, MAX_COUNT, MAX_SEED, PAPER_PRESET, PRESETS, STRATEGIES, SearchConfig,
)
from enastool.encoding import SPACES
from enastool.errors import EnasError

from .common import parse_assignments, preset_note, set_option
from .console import EXIT_FAILED, EXIT_HELP, RUN_EXIT_HELP, err_console, note_run
from .progress import ProgressReporter

TABLE_ROWS = 10  # rows of derive's ranking table (more when --top asks for more)

# Config fields settable by an option of the same name (--batch-size -> batch_size); the help
# text is the field's own, so the option and the written config describe it alike.
SEARCH_OPTIONS: tuple[tuple[str, object], ...] = (
    ("space", click.Choice(sorted(SPACES))),
    ("strategy", click.Choice(STRATEGIES)),
    ("dataset", click.Choice(DATASETS)),
    ("data_dir", click.Path(file_okay=False)),
    ("epochs", int),
    ("seed", int),
    ("device", str),
    ("dtype", click.Choice(DTYPES)),
    ("layers", int),
    ("channels", int),
    ("num_blocks", int),
    ("num_nodes", int),
    ("hidden_size", int),
    ("bptt", int),
    ("batch_size", int),
    ("val_size", int),
    ("lr_max", float),
    ("lr_min", float),
    ("l2", float),
    ("grad_clip", float),
    ("controller_samples", int),
    ("controller_updates", int),
    ("nao_pool", int),
    ("nao_eval_every", int),
    ("nao_epd_epochs", int),
    ("log_every", int),
    ("checkpoint_every", int),
)
# Numbers are checked by the configuration's rules (enastool.config.RULES), one range per
# setting, whether they come from an option, a --config file or a run's config.json.


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def config_options(command):
    """Add one option per entry of SEARCH_OPTIONS (default None = not given)."""
    for field, kind in reversed(SEARCH_OPTIONS):
        command = click.option(option_name(field), field, type=kind, default=None,
                               help=SearchConfig.help(field))(command)
    return command


FORMATS = ("text", "json")


@click.command(epilog=RUN_EXIT_HELP)
@config_options
@set_option("controller_lr=1e-3")
@click.option("--out", type=click.Path(), default=None,
              help="New run directory (absent or empty).")
@click.option("--preset", type=click.Choice(PRESETS), default=None,
              help="paper: the authors' settings (the default with a data directory, CIFAR-10); "
                   "smoke: tiny, about a minute on a CPU (the default on the embedded digits).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML file setting any option (a [search] table or flat keys).")
@click.option("--resume", type=click.Path(file_okay=False), default=None,
              help="Continue the search in this run directory with its own configuration.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="json: one summary object on stdout at the end (run, status, epochs, steps, "
                   "seconds, the last architecture); text: nothing on stdout.")
@click.option("--quiet", is_flag=True,
              help="No progress display and no closing line (errors, and how to resume after an "
                   "interruption, still print).")
@click.option("--tensorboard", is_flag=True,
              help="Also log the metrics to RUN/tensorboard (needs enastool[tensorboard]); a "
                   "resumed run keeps logging there.")
def search(out, preset, config_file, resume, assignments, fmt, quiet, tensorboard, **settings) -> None:
    """Search architectures with shared weights (enas, random, oneshot or nao; rnn: enas,
    random or nao).

    Progress goes to stderr (a bar on a terminal, one line per logged step elsewhere); the run
    directory gets config.toml, metrics.jsonl, metrics.csv, status.json and last.pt. Ctrl-C or
    SIGTERM saves last.pt and exits 130 or 143; --resume RUN continues exactly.

    \b
    Examples:
      enastool search --space micro --out runs/demo        # smoke preset on the embedded digits
      enastool search --space micro --strategy nao --out runs/nao
      enastool search --space rnn --out runs/r             # smoke preset on the embedded pydoc corpus
      enastool search --space macro --data-dir data/cifar-10-batches-py --out runs/macro
      enastool search --resume runs/demo --format json     # after Ctrl-C; a summary on stdout
    """
    from enastool.config import default_preset, resolve_search_config
    from enastool.logs import TENSORBOARD_DIR, check_tensorboard
    from enastool.runs import LAST_CHECKPOINT, GracefulInterrupt, RunDir, check_new_run_path

    if tensorboard:  # before anything loads
        check_tensorboard(Path(out or resume or ".") / TENSORBOARD_DIR)
    given = {field: value for field, value in settings.items() if value is not None}
    set_values, origins = parse_assignments(SearchConfig, assignments, given)  # refuses clashes with options
    run = None
    if resume is not None:
        extra = [option_name(field) for field in given] + (["--set"] if assignments else [])
        extra += [name for name, value in (("--out", out), ("--preset", preset), ("--config", config_file)) if value]
        if extra:
            raise EnasError(
                f"--resume {resume} continues the run with the configuration in its config.json; "
                f"drop {', '.join(extra)}"
            )
        run = RunDir.open(resume, kind="search")
        config = run.config
        note_run(run.path, f"enastool search --resume {resume}")
    else:
        if out is None:
            raise EnasError("give --out RUN for a new search, or --resume RUN to continue one")
        chosen = preset or default_preset(SearchConfig, config_file, {**given, **set_values})
        config = resolve_search_config(chosen, given.get("space"), config_file, {**given, **set_values},
                                       origins=origins, check_data=True)
        check_new_run_path(out)  # before anything loads: a used --out fails at once
        note_run(out, f"enastool search --resume {out}", created=False)

    title = f"search {config.space} {config.strategy}"
    if resume is None and preset is None and chosen != PAPER_PRESET and not quiet:
        err_console.print(preset_note(title, chosen, config), markup=False, highlight=False,
                          soft_wrap=True)
    interrupt = GracefulInterrupt()
    with ProgressReporter(title, quiet=quiet) as reporter:
        reporter.status("importing torch")
        from enastool.search.loop import SearchLoop

        reporter.status(f"loading {config.dataset} and building the {config.space} supernet")
        # Device, data and sizes are checked before a new run directory is created, so a
        # mistake there leaves no half-made run behind. Until the run starts a Ctrl-C stops at
        # once (nothing to save); from then on the first one saves a checkpoint.
        loop = SearchLoop(config, run, callback=reporter, interrupt=interrupt)
        if run is None:
            loop.run = run = RunDir.create(out, config, command=command_line(out, preset, config_file, given,
                                                                             assignments))
            note_run(run.path, f"enastool search --resume {run.path}")
        if tensorboard:
            run.enable_tensorboard()
        with interrupt, run.tracking():
            result = loop.search(resume=resume is not None)
    summary = search_summary(run, config, result)
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
    if result["interrupted"]:
        click.echo(
            f"enastool: interrupted at step {result['step']} (epoch {result['epoch'] + 1} of {config.epochs}); "
            f"checkpoint {run.checkpoint_path(LAST_CHECKPOINT)} saved; "
            f"continue with: enastool search --resume {run.path}",
            err=True,
        )
        sys.exit(interrupt.exit_code or EXIT_FAILED)
    if not quiet:
        err_console.print(
            f"{title}: {result['epoch']} epochs in {run.path}; next: enastool derive {run.path}",
            markup=False, highlight=False, soft_wrap=True,
        )


def command_line(out, preset, config_file, given: dict, assignments) -> list[str]:
    """The command as parsed: the options given, in a fixed order (run.json's ``command``)."""
    chosen = {"out": out, "preset": preset, "config": config_file, **given}
    command = ["enastool", "search"]
    for name, value in chosen.items():
        if value is not None:
            command += [option_name(name), str(value)]
    for text in assignments:
        command += ["--set", text]
    return command


def search_summary(run, config, result: dict) -> dict:
    """What ``--format json`` prints: the run, how it ended and where it got to."""
    status = "interrupted" if result["interrupted"] else "finished"
    summary = {
        "run": str(run.path),
        "kind": "search",
        "status": status,
        "space": config.space,
        "strategy": config.strategy,
        "dataset": config.dataset,
        "epochs": config.epochs,
        **{key: value for key, value in result.items() if key != "interrupted"},
    }
    summary["next"] = (f"enastool search --resume {run.path}" if result["interrupted"]
                       else f"enastool derive {run.path}")
    return summary


@click.command(epilog=EXIT_HELP)
@click.argument("run", metavar="RUN")
@click.option("--samples", type=click.IntRange(1, MAX_COUNT), default=None,
              help="Architectures to sample and score (default: the run's derive_samples; "
                   "not for nao runs, which rank their pool).")
@click.option("--top", type=click.IntRange(1, MAX_COUNT), default=1, show_default=True,
              help="How many of the best to print.")
@click.option("--batches", type=click.IntRange(1, MAX_COUNT), default=None,
              help="Validation minibatches scoring each architecture (default: the run's "
                   "derive_batches; not set: the whole split; not for nao runs).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one record per line; json: a list of objects with a score.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=None,
              help="Seed of the sampling (default: the run's seed; not for nao runs).")
@click.option("--predictor", is_flag=True,
              help="Also give the score the run's learnt predictor expects (nao runs: the EPD's).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--quiet", is_flag=True, help="No progress display and no ranking table.")
def derive(run, samples, top, batches, fmt, seed, predictor, device, quiet) -> None:
    """Sample architectures from search RUN, score them with its shared weights, print the best.

    The best go to stdout as records (or JSON with their scores), the ranking table to stderr.
    The score is higher for better architectures: validation accuracy for the image spaces,
    80 / validation perplexity for rnn (the controller's reward; the table and JSON also
    give the perplexity, valid_ppl). A nao run is ranked as it ends: its pool, by the
    shared-weight scores of its last evaluation point (nothing is sampled or scored again).

    \b
    Examples:
      enastool derive runs/demo | enastool render - -o best.png
      enastool derive runs/demo --samples 200 --top 5 --format json
      enastool derive runs/nao --top 3 --predictor
    """
    from enastool.encoding.textio import format_record
    from enastool.runs import RunDir

    opened = RunDir.open(run, kind="search")  # no torch: a wrong run fails at once
    config = opened.config
    reporter = ProgressReporter(f"derive {run}", quiet=quiet)
    with reporter:
        reporter.status("importing torch")
        from enastool.search.derive import check_predictor, predicted_scores
        from enastool.search.derive import derive as run_derive
        from enastool.search.tasks import score_figures

        if predictor:
            check_predictor(opened)  # before any scoring
        reporter.status("loading the run's shared weights and data")
        # Per-architecture events make a bar on a terminal; in a log they would be noise.
        ranked = run_derive(run, samples=samples, batches=batches, seed=seed, device=device,
                            callback=reporter if reporter.live else None)
    shown = ranked[: max(top, TABLE_ROWS)]
    predicted = predicted_scores(run, [arch for arch, _ in shown]) if predictor else None
    best = ranked[:top]
    if fmt == "json":
        rows = []
        for number, (arch, score) in enumerate(best):
            row = {**arch.to_dict(), "score": score, **score_figures(config.space, score)}
            if predicted is not None:
                row["predicted"] = predicted[number]
            rows.append(json.dumps(row))
        click.echo("[\n" + ",\n".join(rows) + "\n]" if rows else "[]")
    else:
        for arch, _ in best:
            click.echo(format_record(arch))
    if not quiet:
        _ranking_table(run, config, shown, len(ranked), top,
                       config.derive_batches if batches is None else batches, predicted)


# How derive's table shows a score figure (``enastool.search.tasks.score_figures``).
FIGURE_COLUMNS = {"valid_ppl": ("valid ppl", "{:.2f}")}


def _ranking_table(run: str, config, shown: list, count: int, top: int, batches: int | None,
                   predicted: list[float] | None) -> None:
    from rich.table import Table

    from enastool.encoding.textio import format_record
    from enastool.search.strategies import STRATEGIES
    from enastool.search.tasks import score_figures

    own = STRATEGIES[config.strategy].ranking_note
    if own is not None:
        title = f"{run}: {count} architectures, {own}"
    else:
        scored_on = f"{batches} validation batches" if batches else "the whole validation split"
        title = f"{run}: {count} distinct architectures, scored on {scored_on}"
    table = Table(title=title, title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    figure_names = list(score_figures(config.space, shown[0][1])) if shown else []
    for name in figure_names:
        table.add_column(FIGURE_COLUMNS.get(name, (name,))[0], justify="right")
    if predicted is not None:
        table.add_column("predicted", justify="right")
    table.add_column("architecture", overflow="fold")
    for rank, (arch, score) in enumerate(shown, start=1):
        marker = "*" if rank <= top else ""
        figures = score_figures(config.space, score)
        cells = [f"{rank}{marker}", f"{score:.4f}"]
        cells += [FIGURE_COLUMNS.get(name, (name, "{}"))[1].format(figures[name]) for name in figure_names]
        if predicted is not None:
            cells.append(f"{predicted[rank - 1]:.4f}")
        table.add_row(*cells, format_record(arch))
    err_console.print(table)
