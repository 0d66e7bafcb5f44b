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

from enastool.config import DATASETS, MAX_CHANNELS, MAX_COUNT, MAX_SEED
from enastool.encoding import SPACES, MacroArch, MicroArch, RecurrentArch
from enastool.encoding.darts import to_darts
from enastool.encoding.macro import MAX_LAYERS
from enastool.encoding.micro import MAX_BLOCKS
from enastool.encoding.recurrent import MAX_NODES
from enastool.encoding.nao import format_nao
from enastool.encoding.render import format_for, to_dot
from enastool.encoding.render import render as render_file
from enastool.encoding.textio import format_record, to_json
from enastool.errors import EnasError, EncodingError

from .common import from_option, load_input, source_argument, space_option
from .console import fail, fail_many


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
@click.command()
@source_argument
@space_option
@from_option
def validate(source: str, space: str | None, from_format: str) -> None:
    """Check the architectures in SOURCE (a file, or - for stdin: the default).

    Exit status 0 when every record is valid; otherwise every error is printed, one line
    each (source, record, token position, what was found and what was expected), and the
    exit status is 2.
    """
    records = load_input(source, space, from_format)
    click.echo(f"{_plural(len(records), 'record')} valid{_spaces_read(records)}", err=True)


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


@click.command()
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


@click.command()
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
@space_option
@from_option
def render(source: str, out: str, index: int | None, space: str | None, from_format: str) -> None:
    """Draw the architectures in SOURCE (a file, or - for stdin: the default) into OUT.

    One record is drawn into OUT. Several records give one file each, named after OUT with
    the record number before the suffix (arch.png -> arch-1.png, arch-2.png, ...), unless
    --index picks one. The written paths are printed on stderr. It never opens a viewer;
    .dot output needs no Graphviz installation, png/svg/pdf need its `dot` program.
    """
    fmt = format_for(out)  # a bad suffix fails before stdin is read
    records = load_input(source, space, from_format)
    if index is not None:
        if index > len(records):
            fail(f"--index {index}: {source} has {_plural(len(records), 'record')}, expected 1..{len(records)}")
        records = [records[index - 1]]
    for record, path in zip(records, output_paths(Path(out), [r.index for r in records])):
        try:
            written = render_file(record.arch, path, fmt)
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


@click.command()
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
    "flops (forward, per image, a multiply-add counted as 2 FLOPs) and mult_adds (the unit "
    "papers quote: flops / 2). Implied by --layers, --channels and --dataset.",
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
    type=click.Choice(DATASETS),
    default=None,
    help=f"Image shape and classes for the counts (default {DEFAULT_COUNT_DATASET}: 3x32x32; "
    "digits: 1x8x8); no data is read.",
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
) -> None:
    """Summarise the architectures in SOURCE (a file, or - for stdin: the default): ops (rnn:
    activations of nodes 1..N), skips, loose ends, depth.

    With --counts (or --layers/--channels/--dataset) each record also gets the parameter,
    FLOP and multiply-add counts of its final network, counted on the real module (this
    imports torch). FLOPs count a multiply-add as 2; papers quote multiply-adds.
    """
    records = load_input(source, space, from_format)
    rows = [{"record": r.index, **r.arch.summary()} for r in records]
    if counts or layers is not None or channels is not None or dataset is not None:
        import torch

        from enastool.nn.counting import network_counts

        shape = _count_setup(dataset or DEFAULT_COUNT_DATASET)

        def measure(arch):
            # On the meta device: shapes without storage, so the counts are exact, nothing is
            # allocated and no kernel runs (seconds even for the largest architecture).
            with torch.device("meta"):
                return network_counts(arch, layers, channels, shape)

        measured = _convert_each(records, measure)
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
    MicroArch.space: ("blocks", "num_blocks"),
    RecurrentArch.space: ("nodes", "num_nodes"),
}


def _sample_default(cls) -> int:
    """The size a space's ``sample`` uses when none is given (read off its signature)."""
    return inspect.signature(cls.sample).parameters[SAMPLE_SIZES[cls.space][1]].default


@click.command()
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
    "--blocks",
    type=click.IntRange(1, MAX_BLOCKS),
    default=None,
    metavar="B",
    help=f"Micro: blocks per cell (default {_sample_default(MicroArch)}).",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, MAX_NODES),
    default=None,
    metavar="N",
    help=f"Rnn: nodes after node 0 (default {_sample_default(RecurrentArch)}).",
)
def sample(
    space: str, count: int, seed: int | None, layers: int | None, blocks: int | None, nodes: int | None
) -> None:
    """Print N uniformly random valid architectures of a space as records, one per line."""
    sizes = {"layers": layers, "blocks": blocks, "nodes": nodes}
    option, keyword = SAMPLE_SIZES[space]
    for other, value in sizes.items():
        if other != option and value is not None:
            fail(f"--{other} does not apply to --space {space}; use --{option}")
    kwargs = {keyword: sizes[option]} if sizes[option] is not None else {}
    rng = random.Random(seed)
    archs = [SPACES[space].sample(rng, **kwargs) for _ in range(count)]
    click.echo("".join(format_record(a) + "\n" for a in archs), nl=False)
