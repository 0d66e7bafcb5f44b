"""Training curves of a run directory, drawn with matplotlib (``enastool plot``).

One panel per figure a researcher looks at, each drawn when the run's records hold it, so the
same table serves every space and strategy (``PANELS``; a new kind of record adds a panel or a
series there):

- loss and accuracy: training (the step records' running means) beside the held-out figures
  of the epoch records (search: the sampled children on validation batches; final: the test
  set; rnn: validation and test);
- perplexity (rnn, log scale); learning rate;
- the controller (enas search): reward with its moving-average baseline, and the policy's
  entropy, per controller update.

Epoch records are drawn as points joined by lines, step records as lines. The figure is built
on matplotlib's object API with the Agg canvas (no pyplot state, no display, no window), a
fixed size per panel (``PANEL_INCHES`` at ``DPI``) so the picture's size follows from the
panel count. matplotlib is the optional ``enastool[plot]`` dependency; this module imports it
only when drawing.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import write_bytes_atomic
from .errors import EnasError

PLOT_FORMATS = ("png", "svg", "pdf")
PLOT_EXTRA = "pip install 'enastool[plot]'"
PANEL_INCHES = (5.0, 3.5)  # width, height of one panel
COLUMNS = 2  # panels per row
DPI = 100
STEP, EPOCH, CONTROLLER = "step", "epoch", "controller"  # record kinds


@dataclass(frozen=True)
class Series:
    """The values of ``key`` in the records of kind ``kind``, against the panel's x key."""

    kind: str
    key: str
    label: str


@dataclass(frozen=True)
class Panel:
    title: str
    x: str  # record key on the x axis
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    log: bool = False


PANELS: tuple[Panel, ...] = (
    Panel("loss", "epoch", "epoch", "cross-entropy", (
        Series(STEP, "loss", "train"), Series(EPOCH, "valid_loss", "valid"),
        Series(EPOCH, "test_loss", "test"),
    )),
    Panel("accuracy", "epoch", "epoch", "accuracy", (
        Series(STEP, "acc", "train"), Series(EPOCH, "valid_acc", "valid"),
        Series(EPOCH, "test_accuracy", "test"),
    )),
    Panel("perplexity", "epoch", "epoch", "perplexity", (
        Series(STEP, "ppl", "train"), Series(EPOCH, "valid_ppl", "valid"),
        Series(EPOCH, "test_ppl", "test"),
    ), log=True),
    Panel("learning rate", "epoch", "epoch", "learning rate", (Series(STEP, "lr", "lr"),)),
    Panel("controller reward", "controller_step", "controller update", "reward", (
        Series(CONTROLLER, "reward", "reward"), Series(CONTROLLER, "baseline", "baseline"),
    )),
    Panel("controller entropy", "controller_step", "controller update", "entropy (nats)", (
        Series(CONTROLLER, "entropy", "entropy"),
    )),
)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def series_points(records: list[dict], panel: Panel, series: Series) -> tuple[list[float], list[float]]:
    """(x, y) of one series: the records of its kind holding both numbers."""
    points = [
        (r[panel.x], r[series.key]) for r in records
        if r.get("kind") == series.kind and _number(r.get(panel.x)) and _number(r.get(series.key))
    ]
    return [x for x, _ in points], [y for _, y in points]


def panels_with_data(records: list[dict]) -> list[tuple[Panel, list[tuple[Series, list, list]]]]:
    """The panels the records can fill, each with its series that have points."""
    found = []
    for panel in PANELS:
        lines = [(s, *series_points(records, panel, s)) for s in panel.series]
        lines = [line for line in lines if line[1]]
        if lines:
            found.append((panel, lines))
    return found


def curves_figure(records: list[dict], title: str = ""):
    """A matplotlib Figure of the records' curves (not yet saved: tests inspect it)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise EnasError(f"plot needs matplotlib: {PLOT_EXTRA}") from None
    filled = panels_with_data(records)
    if not filled:
        raise EnasError("no curves to draw: the run has no step, epoch or controller records yet")
    columns = min(COLUMNS, len(filled))
    rows = math.ceil(len(filled) / columns)
    figure = Figure(figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows), dpi=DPI,
                    layout="constrained")
    FigureCanvasAgg(figure)
    if title:
        figure.suptitle(title)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (panel, lines) in zip(axes, filled):
        for series, xs, ys in lines:
            style = {"marker": "o", "markersize": 3} if series.kind == EPOCH else {"linewidth": 1}
            ax.plot(xs, ys, label=series.label, **style)
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        if panel.log and all(y > 0 for _, _, ys in lines for y in ys):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(filled):]:
        figure.delaxes(ax)
    return figure


def plot_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        found = f"'.{suffix}'" if suffix else "no suffix"
        raise EnasError(f"{path}: found {found}, expected a file ending in "
                        f"{', '.join('.' + f for f in PLOT_FORMATS)}")
    return suffix


def plot_run(run_path: str | Path, out: str | Path) -> dict:
    """Draw run ``run_path``'s curves into ``out`` (png, svg or pdf from the suffix); returns
    {"path", "panels": [titles], "lines", "size": [width, height] in pixels}."""
    from .runs import RunDir

    out = Path(out)
    fmt = plot_format(out)
    if not out.parent.is_dir():
        raise EnasError(f"{out}: no such directory {str(out.parent)!r}; create it first")
    run = RunDir.open(run_path)
    config = run.config
    title = f"{run.kind} {config.space} {getattr(config, 'strategy', '')}".rstrip() + f": {run.path}"
    figure = curves_figure(run.read_metrics(), title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=DPI)
    write_bytes_atomic(out, buffer.getvalue())
    axes = [ax for ax in figure.axes if ax.get_title()]
    width, height = figure.get_size_inches() * DPI
    return {
        "path": str(out),
        "panels": [ax.get_title() for ax in axes],
        "lines": sum(len(ax.get_lines()) for ax in axes),
        "size": [round(width), round(height)],
    }
