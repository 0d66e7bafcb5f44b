"""Commands on architecture encodings: validate, convert, render, info, sample.

None of them imports torch, except ``info`` when it is asked for parameter and FLOP counts,
which builds the real network. Every command reads SOURCE (a file, or ``-`` for stdin, the
default) in any format ``enastool.encoding.textio`` recognises, or NAO token lines with
``--from nao``, and writes data only to stdout; messages go to stderr.
"""

from __future__ import annotations

import inspect
import json
import random
import sys
from collections import Counter
from pathlib import Path

import click

from enastool.config import IMAGE_DATASETS, MAX_CHANNELS, MAX_COUNT, MAX_HIDDEN, MAX_SEED, MAX_VOCAB
from enastool.encoding import SPACES, MacroArch, MicroArch, RecurrentArch
from enastool.encoding.darts import to_darts
from enastool.encoding.macro import MAX_LAYERS
from enastool.encoding.micro import MAX_BLOCKS
from enastool.encoding.recurrent import MAX_NODES
from enastool.encoding.nao import format_nao
from enastool.encoding.render import RANKDIRS, Layout, format_for, parse_skips, to_dot
from enastool.encoding.render import render as render_file
from enastool.encoding.spaces import IMAGES, TEXT, data_kind
from enastool.encoding.textio import format_record, to_json
from enastool.errors import EnasError, EncodingError

from .common import from_option, load_input, read_input, source_argument, space_option
from .console import EXIT_HELP, fail, fail_many


def _located(record, error: EnasError) -> str:
    """``source: record N: message`` for an error about one record."""
    if isinstance(error, EncodingError):
        return str(error.located(record.source, record.index))
    return f"{record.source}: record {record.index}: {error}"


def _convert_each(records, convert) -> list[str]:
    """``convert(arch)`` for every record; prints every failure and exits 2 if any."""
    results, errors = [], []
    for record in records:
        try:
            results.append(convert(record.arch))
        except EnasError as e:
            errors.append(_located(record, e))
    if errors:
        fail_many(errors)
    return results


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# =========================================================================== validate
@click.command(epilog=EXIT_HELP)
@source_argument
@space_option
@from_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: the verdict on stderr, nothing on stdout; json: an object on stdout "
                   "(valid, count, spaces, records with their canonical text, errors).")
def validate(source: str, space: str | None, from_format: str, fmt: str) -> None:
    """Check the architectures in SOURCE (a file, or - for stdin: the default).

    Exit status 0 when every record is valid; otherwise every error is printed on stderr, one
    line each (source, record, token position, what was found and what was expected), and the
    exit status is 2.

    \b
    Examples:
      enastool validate best.arch                  # "1 record valid (micro)" on stderr
      enastool sample --space micro -n 5 | enastool validate - --format json
    """
    records, errors = read_input(source, space, from_format)
    if fmt == "json":
        click.echo(json.dumps(validation_report(records, errors), indent=2))
    if errors:
        fail_many(errors)
    click.echo(f"{_plural(len(records), 'record')} valid{_spaces_read(records)}", err=True)


def validation_report(records, errors: list[str]) -> dict:
    """validate's JSON: the verdict, the records read (space and canonical text) and the errors."""
    return {
        "valid": not errors,
        "count": len(records),
        "spaces": dict(Counter(r.arch.space for r in records)),
        "records": [{"record": r.index, "space": r.arch.space, "arch": format_record(r.arch)} for r in records],
        "errors": errors,
    }


def _spaces_read(records) -> str:
    """Which space each record was read as (bare integers are inferred): ``" (rnn)"`` when all
    are of one space, else the count per space in order of appearance."""
    counts = Counter(r.arch.space for r in records)
    if len(counts) <= 1:
        return "".join(f" ({space})" for space in counts)
    return " (" + ", ".join(f"{n} {space}" for space, n in counts.items()) + ")"


# =========================================================================== convert
def _dot(arch) -> str:
    return to_dot(arch).rstrip("\n")


JSON = "json"  # written as a whole: one JSON list
# The other output formats of `convert`: one architecture in, its text out.
CONVERTERS = {"text": format_record, "darts": to_darts, "nao": format_nao, "dot": _dot}
OUTPUT_FORMATS = ("text", JSON, "darts", "nao", "dot")


@click.command(epilog=EXIT_HELP)
@source_argument
@click.option(
    "--to",
    "to_format",
    type=click.Choice(OUTPUT_FORMATS),
    required=True,
    help="Output format: text records, a JSON list, DARTS genotypes, NAO token lines, or "
    "Graphviz DOT (one digraph per record).",
)
@space_option
@from_option
def convert(source: str, to_format: str, space: str | None, from_format: str) -> None:
    """Convert the architectures in SOURCE (a file, or - for stdin: the default) to another
    format on stdout: text records, DARTS genotypes and NAO token lines one per line, JSON as
    one list, DOT as one digraph per record.

    DARTS genotypes describe micro and rnn cells, NAO token lines micro cells only; any other
    record is refused by name. Nothing is written unless every record converts.

    \b
    Examples:
      enastool convert best.arch --to darts
      enastool convert genotypes.txt --to text > archs.txt    # DARTS genotypes back to records
    """
    records = load_input(source, space, from_format)
    if to_format == JSON:
        click.echo(to_json([r.arch for r in records]), nl=False)
        return
    lines = _convert_each(records, CONVERTERS[to_format])
    click.echo("".join(line + "\n" for line in lines), nl=False)


# =========================================================================== render
def output_paths(out: Path, numbers: list[int]) -> list[Path]:
    """One path per record: OUT itself for one record, else OUT's stem + -N + suffix."""
    if len(numbers) == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{n}{out.suffix}") for n in numbers]


@click.command(epilog=EXIT_HELP)
@source_argument
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    metavar="OUT",
    help="Output file; its suffix picks the format: .png, .svg, .pdf or .dot.",
)
@click.option(
    "--index",
    type=click.IntRange(min=1),
    default=None,
    metavar="I",
    help="Draw only record I (1-based) into OUT.",
)
@click.option(
    "--rankdir",
    type=click.Choice(RANKDIRS, case_sensitive=False),
    default="TB",
    show_default=True,
    help="TB draws top to bottom, LR left to right.",
)
@click.option(
    "--skips",
    "skips_text",
    metavar="all|none|N",
    default=None,
    help="Macro: which skip edges to draw: all (default), none, or those spanning at most N "
    "layers (e.g. 4). The layer labels list every skip either way.",
)
@space_option
@from_option
def render(source: str, out: str, index: int | None, rankdir: str, skips_text: str | None,
           space: str | None, from_format: str) -> None:
    """Draw the architectures in SOURCE (a file, or - for stdin: the default) into OUT.

    One record is drawn into OUT. Several records give one file each, named after OUT with
    the record number before the suffix (arch.png -> arch-1.png, arch-2.png, ...), unless
    --index picks one. The written paths are printed on stderr. It never opens a viewer;
    .dot output needs no Graphviz installation, png/svg/pdf need its `dot` program.

    \b
    Examples:
      enastool render best.arch -o best.png
      enastool render fixtures/macro_final.txt -o macro.png --skips 4
      enastool derive runs/demo | enastool render - -o best.svg --rankdir LR
    """
    fmt = format_for(out)  # a bad suffix fails before stdin is read
    layout = Layout(rankdir.upper(), parse_skips(skips_text) if skips_text is not None else None)
    records = load_input(source, space, from_format)
    if index is not None:
        if index > len(records):
            fail(f"--index {index}: {source} has {_plural(len(records), 'record')}, expected 1..{len(records)}")
        records = [records[index - 1]]
    if skips_text is not None:
        other = next((r for r in records if not isinstance(r.arch, MacroArch)), None)
        if other is not None:
            fail(f"--skips {skips_text}: thins the skip edges of macro architectures; record "
                 f"{other.index} is {other.arch.space}: drop --skips")
    for record, path in zip(records, output_paths(Path(out), [r.index for r in records])):
        try:
            written = render_file(record.arch, path, fmt, layout=layout)
        except EncodingError as e:
            fail(_located(record, e))
        click.echo(f"wrote {written}", err=True)


# =========================================================================== info
def _count_setup(dataset: str):
    """Image shape and class count of ``dataset``, from constants: no file is read."""
    from types import SimpleNamespace

    from enastool.data import cifar10, digits

    modules = {"cifar10": cifar10, "digits": digits}
    module = modules[dataset]
    return SimpleNamespace(
        name=dataset, channels=module.CHANNELS, size=module.SIZE, num_classes=module.NUM_CLASSES
    )


DEFAULT_COUNT_DATASET = "cifar10"  # the authors' final networks, and the published counts
# rnn counts default to the authors' final network on PTB (reference sec. 8).
DEFAULT_COUNT_HIDDEN = 800
DEFAULT_COUNT_VOCAB = 10_000


def _image_counts(arch, options: dict) -> dict[str, int]:
    import torch

    from enastool.nn.counting import network_counts

    shape = _count_setup(options["dataset"] or DEFAULT_COUNT_DATASET)
    # On the meta device: shapes without storage, so the counts are exact, nothing is
    # allocated and no kernel runs (seconds even for the largest architecture).
    with torch.device("meta"):
        return network_counts(arch, options["layers"], options["channels"], shape)


def _rnn_counts(arch, options: dict) -> dict[str, int]:
    from enastool.nn.counting import mult_adds
    from enastool.nn.recurrent import recurrent_counts

    counts = recurrent_counts(arch, options["hidden"] or DEFAULT_COUNT_HIDDEN,
                              options["vocab"] or DEFAULT_COUNT_VOCAB)
    return {"params": counts["params"], "params_aux": counts["params"], "flops": counts["flops"],
            "mult_adds": mult_adds(counts["flops"])}


# The counting options of each data kind and how it counts; an option of another kind is an
# error for that record.
_COUNT_OPTIONS = {IMAGES: ("layers", "channels", "dataset"), TEXT: ("hidden", "vocab")}
_COUNTERS = {IMAGES: _image_counts, TEXT: _rnn_counts}


def _counts(arch, options: dict) -> dict[str, int]:
    kind = data_kind(arch.space)
    foreign = [name for name, value in options.items() if value is not None and name not in _COUNT_OPTIONS[kind]]
    if foreign:
        own = ", ".join("--" + name for name in _COUNT_OPTIONS[kind])
        verb = "does" if len(foreign) == 1 else "do"
        raise EnasError(
            f"{', '.join('--' + name for name in foreign)} {verb} not apply to {arch.space} "
            f"architectures; they take {own}"
        )
    return _COUNTERS[kind](arch, options)


# (JSON key, table column) of the counts. Papers quote multiply-adds; FLOPs count each as 2.
COUNT_COLUMNS = (
    ("params", "params"),
    ("params_aux", "params+aux"),
    ("flops", "FLOPs (2/mult-add)"),
    ("mult_adds", "mult-adds"),
)


def _human(n: int) -> str:
    for factor, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= factor:
            return f"{n / factor:.2f}{unit}"
    return str(n)


def _ops_cell(ops: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in ops.items() if n)


NOT_APPLICABLE = "-"  # a table cell of a column that does not apply to the space


def _ints(values) -> str:
    return " ".join(map(str, values))


def _macro_columns(row: dict) -> tuple[str, str, str]:
    skips = f"{row['skips']}/{row['possible_skips']} ({row['skip_density']:.1%})"
    return f"{row['layers']} layers", skips, NOT_APPLICABLE


def _micro_columns(row: dict) -> tuple[str, str, str]:
    loose = f"normal {_ints(row['normal_loose_ends'])}\nreduce {_ints(row['reduce_loose_ends'])}"
    return f"{row['blocks']} blocks", NOT_APPLICABLE, loose


def _rnn_columns(row: dict) -> tuple[str, str, str]:
    return _plural(row["nodes"], "node"), NOT_APPLICABLE, _ints(row["loose_ends"])


# The size, skips and loose-ends cells of each space's summary: a new space adds its entry.
_INFO_COLUMNS = {
    MacroArch.space: _macro_columns,
    MicroArch.space: _micro_columns,
    RecurrentArch.space: _rnn_columns,
}


def _info_row(row: dict) -> list[str]:
    """Table cells of one info object (``-`` where a column does not apply to the space)."""
    size, skips, loose = _INFO_COLUMNS[row["space"]](row)
    cells = [str(row["record"]), row["space"], size, _ops_cell(row["ops"]), skips, loose, str(row["depth"])]
    if "params" in row:
        cells += [_human(row[key]) for key, _ in COUNT_COLUMNS]
    return cells


def _print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=True)
    columns = ["#", "space", "size", "ops", "skips", "loose ends", "depth"]
    if rows and "params" in rows[0]:
        columns += [title for _, title in COUNT_COLUMNS]
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*_info_row(row))
    # The table is this command's data, so it goes to stdout (wide when piped to a file).
    console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 160)
    console.print(table)


@click.command(epilog=EXIT_HELP)
@source_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table, or a JSON list with one object per record.",
)
@space_option
@from_option
@click.option(
    "--counts",
    is_flag=True,
    help="Add the final network's params (without the auxiliary head), params_aux (with it), "
    "flops (forward, per image, a multiply-add counted as 2 FLOPs; rnn: per token) and "
    "mult_adds (the unit papers quote: flops / 2). Implied by --layers, --channels, --dataset, "
    "--hidden and --vocab.",
)
@click.option(
    "--layers",
    type=click.IntRange(1, MAX_LAYERS),
    default=None,
    metavar="L",
    help="Micro: normal cells of the final network (default: the authors' final setting). "
    "Macro: must equal the architecture's own layer count.",
)
@click.option(
    "--channels",
    type=click.IntRange(1, MAX_CHANNELS),
    default=None,
    metavar="C",
    help="Channels of the final network (default: the authors' final setting per space).",
)
@click.option(
    "--dataset",
    type=click.Choice(IMAGE_DATASETS),
    default=None,
    help=f"Image shape and classes for the counts (default {DEFAULT_COUNT_DATASET}: 3x32x32; "
    "digits: 1x8x8); no data is read.",
)
@click.option(
    "--hidden",
    type=click.IntRange(1, MAX_HIDDEN),
    default=None,
    metavar="H",
    help=f"rnn: hidden size of the final network (default {DEFAULT_COUNT_HIDDEN}, the authors').",
)
@click.option(
    "--vocab",
    type=click.IntRange(1, MAX_VOCAB),
    default=None,
    metavar="V",
    help=f"rnn: vocabulary size (default {DEFAULT_COUNT_VOCAB:,}, Penn Treebank's).",
)
def info(
    source: str,
    fmt: str,
    space: str | None,
    from_format: str,
    counts: bool,
    layers: int | None,
    channels: int | None,
    dataset: str | None,
    hidden: int | None,
    vocab: int | None,
) -> None:
    """Summarise the architectures in SOURCE (a file, or - for stdin: the default): ops (rnn:
    activations of nodes 1..N), skips, loose ends, depth.

    With --counts (or --layers/--channels/--dataset, rnn: --hidden/--vocab) each record also
    gets the parameter, FLOP and multiply-add counts of its final network, counted on the real
    module (this imports torch). FLOPs count a multiply-add as 2; papers quote multiply-adds.
    The table or the JSON is this command's data: it goes to stdout.

    \b
    Examples:
      enastool info best.arch --format json
      enastool info best.arch --layers 15 --channels 36 --dataset cifar10   # params and FLOPs
      enastool info cell.arch --hidden 800 --vocab 10000                    # an rnn cell's network
    """
    records = load_input(source, space, from_format)
    rows = [{"record": r.index, **r.arch.summary()} for r in records]
    options = {"layers": layers, "channels": channels, "dataset": dataset, "hidden": hidden, "vocab": vocab}
    if counts or any(value is not None for value in options.values()):
        measured = _convert_each(records, lambda arch: _counts(arch, options))
        for row, numbers in zip(rows, measured):
            row.update(numbers)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows)


# =========================================================================== sample
# The size option of each space and the keyword of its ``sample`` method.
SAMPLE_SIZES = {
    MacroArch.space: ("layers", "num_layers"),
    MicroArch.space: ("num-blocks", "num_blocks"),
    RecurrentArch.space: ("num-nodes", "num_nodes"),
}


def _sample_default(cls) -> int:
    """The size a space's ``sample`` uses when none is given (read off its signature)."""
    return inspect.signature(cls.sample).parameters[SAMPLE_SIZES[cls.space][1]].default


@click.command(epilog=EXIT_HELP)
@click.option("--space", type=click.Choice(sorted(SPACES)), required=True, help="Search space.")
@click.option(
    "-n", "count", type=click.IntRange(1, MAX_COUNT), default=1, show_default=True, metavar="N", help="How many."
)
@click.option(
    "--seed", type=click.IntRange(0, MAX_SEED), default=None, metavar="K",
    help="Random seed (same seed, same architectures).",
)
@click.option(
    "--layers",
    type=click.IntRange(1, MAX_LAYERS),
    default=None,
    metavar="N",
    help=f"Macro: layers per architecture (default {_sample_default(MacroArch)}).",
)
@click.option(
    "--num-blocks",
    "--blocks",
    "blocks",
    type=click.IntRange(1, MAX_BLOCKS),
    default=None,
    metavar="B",
    help=f"Micro: blocks per cell, as search's --num-blocks (default {_sample_default(MicroArch)}).",
)
@click.option(
    "--num-nodes",
    "--nodes",
    "nodes",
    type=click.IntRange(1, MAX_NODES),
    default=None,
    metavar="N",
    help=f"Rnn: nodes after node 0 (default {_sample_default(RecurrentArch)}).",
)
def sample(
    space: str, count: int, seed: int | None, layers: int | None, blocks: int | None, nodes: int | None
) -> None:
    """Print N uniformly random valid architectures of a space as records, one per line.

    \b
    Examples:
      enastool sample --space micro -n 5 --seed 1 --num-blocks 5
      enastool sample --space macro --layers 12 | enastool render - -o random.svg
    """
    sizes = {"layers": layers, "num-blocks": blocks, "num-nodes": nodes}
    option, keyword = SAMPLE_SIZES[space]
    for other, value in sizes.items():
        if other != option and value is not None:
            fail(f"--{other} does not apply to --space {space}; use --{option}")
    kwargs = {keyword: sizes[option]} if sizes[option] is not None else {}
    rng = random.Random(seed)
    archs = [SPACES[space].sample(rng, **kwargs) for _ in range(count)]
    click.echo("".join(format_record(a) + "\n" for a in archs), nl=False)
