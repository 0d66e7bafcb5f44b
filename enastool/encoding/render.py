"""Drawing architectures: Graphviz DOT source, and png/svg/pdf files through Graphviz's ``dot``.

Plain Python (no torch import). The DOT text is built here by hand, so ``to_dot`` and ``.dot``
output need nothing installed; the other formats run the ``dot`` binary through the
``graphviz`` package's ``pipe``, which never opens a viewer.

- Macro: a vertical chain stem -> layer 0 -> ... -> output, each layer coloured by its op and
  labelled with its skip sources. The chain is pinned in place (``layout=neato`` with fixed
  positions, which ``dot -Tpng file.dot`` honours too), and the skips are thin dashed arcs
  out of and into its right-hand side, bulging with their span, so that the authors' 98 skips
  leave the chain straight and readable. Graphviz's time for such arcs grows steeply with
  their number (0.5 s for 157 skips, 9 s for 248, minutes for 400), so beyond
  ``CURVED_SKIPS_MAX`` skips they are routed as ordinary splines along the chain (seconds for
  the 2,016 skips of a full 64-layer architecture, the largest there is).
- Micro: the normal and the reduction cell side by side, each a cluster with its inputs
  c_{k-2} (node 0) and c_{k-1} (node 1), one coloured box per op, the block nodes (the sum
  of their two ops) and the output c_{k}, the concatenation of the loose ends.
- Rnn: top to bottom, the step's inputs x_t and h_{t-1}, the fixed node 0 that reads both
  (marked "highway": every node is highway-gated, node 0 is the one that mixes the inputs),
  nodes 1..N each in the colour of its activation with an edge from the node it reads, and
  the output h_t, the mean of nodes 1..N, fed by thin dashed edges from every node.

Two options change the drawing of every space (``Layout``): ``rankdir`` "TB" (top to bottom,
the default) or "LR" (left to right: the macro chain runs along a row with its skips arcing
above it, the cells and the rnn graph flow rightwards), and, for macro, which skip edges are
drawn: all (default), none, or those spanning at most N positions of the chain (a skip from
layer 3 into layer 5 spans 2; the stem is position 0). Every layer's label still lists all its
skip sources, and the title says how many skips are drawn. Thinning keeps the authors' 24-layer
network readable: its 98 skips, 46 of which span more than 8 positions, otherwise meet in one
bundle beside the chain.

Colours of convolutional ops come from their kind and kernel size (``OpKind`` and the op enums
in ``ops.py``), so every op of every vocabulary has one; activations have one colour each
(``ACTIVATION_COLOURS``). A legend lists the vocabulary with its counts.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..atomic import write_bytes_atomic
from ..errors import EnasError
from .macro import MacroArch
from .micro import CELL_NAMES, NUM_INPUTS, Cell, MicroArch
from .ops import Activation, OpKind
from .recurrent import FIRST_NODE, NODE0_ACTIVATION, RecurrentArch

DOT = "dot"  # the Graphviz layout program (the binary and the format share the name)
FORMATS = ("png", "svg", "pdf", DOT)
MISSING_DOT = (
    "Graphviz's 'dot' program is not installed, so only .dot files can be written; "
    "install Graphviz: apt-get install graphviz / brew install graphviz / conda install graphviz"
)

FONT = "Helvetica"
# Fill colours per op kind, lightest first; ops of one kind get them in order of kernel size.
KIND_COLOURS: dict[OpKind, tuple[str, ...]] = {
    OpKind.CONV: ("#9ecae1", "#4a90c8", "#2166ac"),
    OpKind.SEP_CONV: ("#a1d99b", "#52b055", "#238b45"),
    OpKind.AVG_POOL: ("#fdd0a2", "#fd9c51", "#e6550d"),
    OpKind.MAX_POOL: ("#fbb4b9", "#f768a1", "#c51b8a"),
    OpKind.IDENTITY: ("#e0e0e0", "#bdbdbd", "#969696"),
}
# One fill per activation of the recurrent space, all light enough for black text; the one
# that passes its input through unchanged shares the grey of the OpKind.IDENTITY ops.
ACTIVATION_COLOURS: dict[Activation, str] = {
    Activation.TANH: "#b4a7d6",
    Activation.RELU: "#f4a582",
    Activation.SIGMOID: "#92c5de",
    Activation.IDENTITY: KIND_COLOURS[OpKind.IDENTITY][0],
}
DARK_FILLS = {shades[-1] for shades in KIND_COLOURS.values()}  # these take white text
INPUT_FILL = "#f2f2f2"
OUTPUT_FILL = "#fff2ae"
SKIP_COLOUR = "#55555599"  # translucent, so that overlapping skip arcs stay legible


RANKDIRS = ("TB", "LR")  # top to bottom, left to right
SKIPS_ALL, SKIPS_NONE = "all", "none"


@dataclass(frozen=True)
class Layout:
    """How to draw: ``rankdir`` one of RANKDIRS; ``max_skip_span`` None draws every macro skip,
    0 none, N those spanning at most N positions of the chain."""

    rankdir: str = "TB"
    max_skip_span: int | None = None

    def __post_init__(self):
        if self.rankdir not in RANKDIRS:
            raise EnasError(f"rankdir {self.rankdir!r}: expected one of {', '.join(RANKDIRS)}")
        if self.max_skip_span is not None and (
            not isinstance(self.max_skip_span, int) or self.max_skip_span < 0
        ):
            raise EnasError(f"skip span {self.max_skip_span!r}: expected a count of 0 or more")

    @property
    def horizontal(self) -> bool:
        return self.rankdir == "LR"

    def flow_ports(self) -> tuple[str, str]:
        """(tail, head) compass ports of an edge that follows the flow."""
        return ("e", "w") if self.horizontal else ("s", "n")


def parse_skips(text: str) -> int | None:
    """``--skips`` text -> ``Layout.max_skip_span``: "all" None, "none" 0, "N" N."""
    word = str(text).strip().lower()
    if word == SKIPS_ALL:
        return None
    if word == SKIPS_NONE:
        return 0
    if word.isdigit():
        return int(word)
    raise EnasError(f"--skips {text!r}: expected {SKIPS_ALL}, {SKIPS_NONE} or a span N (draw the "
                    "skips spanning at most N layers)")


DEFAULT_LAYOUT = Layout()


def op_colour(op) -> str:
    """Fill colour of an op (a member of any op enum): by kind, darker for larger kernels;
    an activation has its own colour."""
    if isinstance(op, Activation):
        return ACTIVATION_COLOURS[op]
    same_kind = sorted({o.kernel for o in type(op) if o.kind is op.kind})
    shades = KIND_COLOURS[op.kind]
    return shades[min(same_kind.index(op.kernel), len(shades) - 1)]


def _font_colour(fill: str) -> str:
    return "white" if fill in DARK_FILLS else "black"


# --------------------------------------------------------------------------- DOT text
class Html(str):
    """An HTML-like DOT label, written as ``<...>`` rather than quoted."""


def _q(text) -> str:
    """A DOT string literal; ``\\n`` in ``text`` stays a DOT line break."""
    if isinstance(text, Html):
        return str(text)
    return '"' + str(text).replace('"', '\\"') + '"'


def _attrs(**attrs) -> str:
    return "[" + ", ".join(f"{k}={_q(v)}" for k, v in attrs.items()) + "]"


def _node(name: str, **attrs) -> str:
    return f"  {_q(name)} {_attrs(**attrs)};"


def _edge(tail: str, head: str, **attrs) -> str:
    return f"  {_q(tail)} -> {_q(head)}" + (f" {_attrs(**attrs)}" if attrs else "") + ";"


def _op_node(name: str, op, label: str | None = None, **attrs) -> str:
    fill = op_colour(op)
    return _node(name, label=label or op.short, fillcolor=fill, fontcolor=_font_colour(fill), **attrs)


def _legend(name: str, histogram: dict, heading: str = "ops", **attrs) -> str:
    """An HTML-like table: one row per op of the vocabulary, its colour and its count."""
    rows = "".join(
        f'<TR><TD BGCOLOR="{op_colour(op)}"><FONT COLOR="{_font_colour(op_colour(op))}">'
        f"{op.short}</FONT></TD><TD ALIGN=\"RIGHT\">{count}</TD></TR>"
        for op, count in histogram.items()
    )
    table = Html(
        '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">'
        f'<TR><TD COLSPAN="2"><B>{heading}</B></TD></TR>{rows}</TABLE>>'
    )
    return _node(name, shape="plaintext", style="solid", fillcolor="none", label=table, **attrs)


def _header(graph_name: str, title: str, **graph_attrs) -> list[str]:
    graph = {"fontname": FONT, "fontsize": 16, "labelloc": "t", "label": title, **graph_attrs}
    return [
        f"digraph {_q(graph_name)} {{",
        f"  graph {_attrs(**graph)};",
        f"  node [fontname={_q(FONT)}, fontsize=11, shape=box, style=\"rounded,filled\","
        " height=0.3, penwidth=0.8];",
        f"  edge [fontname={_q(FONT)}, arrowsize=0.6, penwidth=1.0];",
    ]


def macro_title(arch: MacroArch) -> str:
    return f"macro: {arch.num_layers} layers, {arch.num_skips} of {arch.possible_skips} skips"


def micro_title(arch: MicroArch) -> str:
    return f"micro: {arch.num_blocks} blocks per cell"


# Macro geometry (inches). The chain is pinned in place (neato, fixed positions) so that the
# skip arcs, drawn curved out of the right-hand side, bulge in proportion to their span.
MACRO_STEP = 0.62  # vertical distance between consecutive nodes
MACRO_MIN_WIDTH = 1.8
SMALL_FONT = 8
SMALL_CHAR_WIDTH = 4.2 / 72  # a generous average glyph width at SMALL_FONT points, in inches
LEGEND_GAP = 0.6  # between the legend's right edge and the chain
# Most skips drawn as bulging arcs: the authors' 98 and a random 26-layer architecture's 157 are
# laid out in under a second; 200 in about two (see the module doc for why there is a limit).
CURVED_SKIPS_MAX = 200
CURVED, ROUTED = "curved", "true"  # Graphviz's splines values


def _skip_names(layer) -> list[str]:
    return ["stem" if m == 0 else str(m - 1) for m in layer.skip_sources]


def _macro_label(k: int, layer) -> Html:
    skips = _skip_names(layer)
    note = "skips: " + ", ".join(skips) if skips else "no skips"
    font = _font_colour(op_colour(layer.op))
    return Html(
        f'<<FONT COLOR="{font}"><B>{k}</B>  {layer.op.short}<BR/>'
        f'<FONT POINT-SIZE="{SMALL_FONT}">{note}</FONT></FONT>>'
    )


def drawn_skips(arch: MacroArch, layout: Layout) -> list[tuple[int, int]]:
    """(source position, layer index) of the skips ``layout`` draws; the stem is position 0,
    layer k position k + 1, so a skip's span is ``k + 1 - source``."""
    limit = layout.max_skip_span
    return [
        (m, k)
        for k, layer in enumerate(arch.layers)
        for m in layer.skip_sources
        if limit is None or k + 1 - m <= limit
    ]


def _skips_note(arch: MacroArch, layout: Layout) -> str:
    """What the title adds when not every skip is drawn."""
    if layout.max_skip_span is None or arch.num_skips == 0:
        return ""
    if layout.max_skip_span == 0:
        return "; none drawn"
    return f"; {len(drawn_skips(arch, layout))} drawn (span <= {layout.max_skip_span})"


# Macro geometry when the chain runs left to right: the gap between two boxes (inches).
MACRO_ROW_GAP = 0.35


def _macro_dot(arch: MacroArch, title: str, graph_name: str, layout: Layout = DEFAULT_LAYOUT) -> list[str]:
    # layout=neato with pinned positions: `dot -Tpng file.dot` reproduces the drawing too.
    splines = CURVED if arch.num_skips <= CURVED_SKIPS_MAX else ROUTED
    lines = _header(graph_name, title, layout="neato", splines=splines, outputorder="edgesfirst")
    names = ["stem"] + [f"layer{k}" for k in range(arch.num_layers)] + ["output"]
    longest = max(len("skips: " + ", ".join(_skip_names(layer))) for layer in arch.layers)
    width = max(MACRO_MIN_WIDTH, longest * SMALL_CHAR_WIDTH + 0.3)
    height = 2 * MACRO_STEP / 3
    pitch = width + MACRO_ROW_GAP if layout.horizontal else MACRO_STEP

    def pos(i: int) -> str:
        x, y = (i * pitch, 0.0) if layout.horizontal else (0.0, -i * pitch)
        return f"{x:.3f},{y:.3f}!"

    size = {"width": f"{width:.2f}", "height": f"{height:.2f}"}
    lines.append(_node(names[0], label="stem", fillcolor=INPUT_FILL, pos=pos(0), **size))
    for k, layer in enumerate(arch.layers):
        lines.append(_op_node(names[k + 1], layer.op, label=_macro_label(k, layer), pos=pos(k + 1), **size))
    lines.append(_node(names[-1], label="output", fillcolor=OUTPUT_FILL, pos=pos(len(names) - 1), **size))
    if layout.horizontal:  # below the stem
        legend_at = f"0.000,{-(height + LEGEND_GAP + 1.2):.3f}!"
    else:  # left of the top of the chain
        legend_at = f"{-(width / 2 + LEGEND_GAP + 0.8):.3f},{-1.2 * MACRO_STEP:.3f}!"
    lines.append(_legend("legend", arch.op_histogram(), pos=legend_at))
    # The chain: each layer's input is its immediate predecessor.
    tail, head = layout.flow_ports()
    for k, layer in enumerate(arch.layers):
        lines.append(_edge(names[layer.input_source], names[k + 1], tailport=tail, headport=head))
    lines.append(_edge(names[-2], names[-1], tailport=tail, headport=head))
    # Skips: curved arcs out of one side of the chain (the right, or the top when it is a row).
    side = "n" if layout.horizontal else "e"
    for m, k in drawn_skips(arch, layout):
        lines.append(
            _edge(
                names[m], names[k + 1], tailport=side, headport=side, style="dashed",
                color=SKIP_COLOUR, penwidth=0.7, arrowsize=0.4,
            )
        )
    lines.append("}")
    return lines


MICRO_CELL_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}
# Nodes 0 and 1 are the outputs of the two previous cells, c_{k-2} and c_{k-1}; the cell's
# own output is c_{k}. The inputs share one node with a port each, which keeps c_{k-2} on
# the left (dot would otherwise reorder them to save crossings).
INPUT_SUBSCRIPTS = ("k-2", "k-1")
OUTPUT_SUBSCRIPT = "k"


def _input_table(cells: list[str], layout: Layout) -> Html:
    """An HTML-like table of input cells across the flow: a row when it runs downwards, a
    column when it runs rightwards."""
    rows = "".join(f"<TR>{c}</TR>" for c in cells) if layout.horizontal else f"<TR>{''.join(cells)}</TR>"
    return Html(f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="10" CELLPADDING="5">{rows}</TABLE>>')


def _inputs_label(layout: Layout) -> Html:
    cells = [
        f'<TD PORT="{n}" BGCOLOR="{INPUT_FILL}" STYLE="rounded" WIDTH="56">c<SUB>{sub}</SUB><BR/>'
        f'<FONT POINT-SIZE="{SMALL_FONT}">node {n}</FONT></TD>'
        for n, sub in enumerate(INPUT_SUBSCRIPTS)
    ]
    return _input_table(cells, layout)


def _micro_cell(lines: list[str], cname: str, cell: Cell, layout: Layout) -> None:
    inputs = f"{cname}/in"
    out_side = layout.flow_ports()[0]

    def source(n: int) -> tuple[str, dict]:
        """The DOT node of cell node ``n``, and the tail port of edges leaving it."""
        return (inputs, {"tailport": f"{n}:{out_side}"}) if n < NUM_INPUTS else (f"{cname}/{n}", {})

    lines.append(f"  subgraph {_q('cluster_' + cname)} {{")
    lines.append(
        f"  graph [label={_q(MICRO_CELL_TITLES.get(cname, cname))}, style=rounded, color=\"#888888\","
        " fontsize=14, margin=12];"
    )
    lines.append(_node(inputs, shape="plaintext", style="solid", fillcolor="none", label=_inputs_label(layout)))
    for j, block in enumerate(cell.blocks):
        n = j + NUM_INPUTS
        lines.append(
            _node(f"{cname}/{n}", label=str(n), shape="circle", style="filled", fillcolor="#ffffff",
                  width=0.35, fixedsize="true")
        )
        for b, (index, op) in enumerate(block.branches, 1):
            op_name = f"{cname}/{n}/op{b}"
            lines.append(_op_node(op_name, op, fontsize=10, height=0.25))
            tail, port = source(index)
            lines.append(_edge(tail, op_name, **port))
            lines.append(_edge(op_name, f"{cname}/{n}"))
    out = f"{cname}/out"
    label = Html(f"<c<SUB>{OUTPUT_SUBSCRIPT}</SUB><BR/>concat>")
    lines.append(_node(out, label=label, fillcolor=OUTPUT_FILL))
    for n in cell.loose_ends:
        tail, port = source(n)
        lines.append(_edge(tail, out, color="#444444", style="bold", **port))
    lines.append("  }")


def _micro_dot(arch: MicroArch, title: str, graph_name: str, layout: Layout = DEFAULT_LAYOUT) -> list[str]:
    # layout=dot explicitly: in a stream of several graphs dot keeps an earlier graph's layout.
    lines = _header(graph_name, title, layout=DOT, rankdir=layout.rankdir, nodesep=0.18, ranksep=0.35)
    for cname, cell in zip(CELL_NAMES, arch.cells):
        _micro_cell(lines, cname, cell, layout)
    lines.append(_legend("legend", arch.op_histogram()))
    lines.append("}")
    return lines


def _averaged(arch: RecurrentArch) -> str:
    """The nodes whose mean is the cell's output, in words."""
    n = arch.num_nodes
    return f"node {FIRST_NODE}" if n == FIRST_NODE else f"nodes {FIRST_NODE}..{n}"


def rnn_title(arch: RecurrentArch) -> str:
    n = arch.num_nodes
    return f"rnn: {n} node{'' if n == 1 else 's'} after node 0, output the mean of {_averaged(arch)}"


# The two inputs of a step share one node with a port each, which keeps x_t on the left.
RNN_INPUTS = (("x", "x<SUB>t</SUB>"), ("h", "h<SUB>t-1</SUB>"))
RNN_INPUTS_NODE, RNN_OUTPUT_NODE = "inputs", "output"
MEAN_COLOUR = "#888888"


def _rnn_node(l: int) -> str:
    return f"node{l}"


def _rnn_node_label(l: int, activation: Activation, note: str | None = None) -> Html:
    font = _font_colour(op_colour(activation))
    extra = f'<BR/><FONT POINT-SIZE="{SMALL_FONT}">{note}</FONT>' if note else ""
    return Html(f'<<FONT COLOR="{font}"><B>{l}</B>  {activation.short}{extra}</FONT>>')


def _rnn_dot(arch: RecurrentArch, title: str, graph_name: str, layout: Layout = DEFAULT_LAYOUT) -> list[str]:
    lines = _header(graph_name, title, layout=DOT, rankdir=layout.rankdir, nodesep=0.25, ranksep=0.3)
    cells = [
        f'<TD PORT="{port}" BGCOLOR="{INPUT_FILL}" STYLE="rounded" WIDTH="56">{label}</TD>'
        for port, label in RNN_INPUTS
    ]
    table = _input_table(cells, layout)
    lines.append(_node(RNN_INPUTS_NODE, shape="plaintext", style="solid", fillcolor="none", label=table))
    lines.append(_op_node(_rnn_node(0), NODE0_ACTIVATION, label=_rnn_node_label(0, NODE0_ACTIVATION, "highway")))
    out_side = layout.flow_ports()[0]
    for port, _ in RNN_INPUTS:
        lines.append(_edge(RNN_INPUTS_NODE, _rnn_node(0), tailport=f"{port}:{out_side}"))
    for l, node in enumerate(arch.nodes, start=FIRST_NODE):
        lines.append(_op_node(_rnn_node(l), node.activation, label=_rnn_node_label(l, node.activation)))
        lines.append(_edge(_rnn_node(node.prev), _rnn_node(l)))
    label = Html(f'<h<SUB>t</SUB><BR/><FONT POINT-SIZE="{SMALL_FONT}">mean of {_averaged(arch)}</FONT>>')
    lines.append(_node(RNN_OUTPUT_NODE, label=label, fillcolor=OUTPUT_FILL))
    for l in range(FIRST_NODE, arch.num_nodes + 1):
        lines.append(
            _edge(_rnn_node(l), RNN_OUTPUT_NODE, style="dashed", color=MEAN_COLOUR, penwidth=0.7, arrowsize=0.4)
        )
    # The legend counts nodes 1..N, as ``info`` does: node 0 is the same in every cell.
    lines.append(_legend("legend", arch.op_histogram(), heading=f"activations ({_averaged(arch)})"))
    lines.append("}")
    return lines


# One builder and one title per space: a new space adds its entries here.
_BUILDERS: dict[str, Callable] = {
    MacroArch.space: _macro_dot,
    MicroArch.space: _micro_dot,
    RecurrentArch.space: _rnn_dot,
}
_TITLES: dict[str, Callable] = {
    MacroArch.space: macro_title,
    MicroArch.space: micro_title,
    RecurrentArch.space: rnn_title,
}


def to_dot(arch, title: str | None = None, graph_name: str | None = None,
           layout: Layout = DEFAULT_LAYOUT) -> str:
    """Graphviz DOT source of ``arch``; ``title`` (default: a one-line summary, which says when
    ``layout`` leaves skips out) heads the graph."""
    try:
        build = _BUILDERS[arch.space]
    except (KeyError, AttributeError):
        raise EnasError(f"cannot draw {getattr(arch, 'space', type(arch).__name__)!r} architectures") from None
    if title is None:
        title = _TITLES[arch.space](arch) + (_skips_note(arch, layout) if isinstance(arch, MacroArch) else "")
    return "\n".join(build(arch, title, graph_name or arch.space, layout)) + "\n"


# --------------------------------------------------------------------------- files
def format_for(path: str | Path) -> str:
    """The output format named by ``path``'s suffix; EnasError for any other suffix."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        found = f"'.{suffix}'" if suffix else "no suffix"
        raise EnasError(
            f"{path}: found {found}, expected an output file ending in "
            f"{', '.join('.' + f for f in FORMATS)}"
        )
    return suffix


def dot_available() -> bool:
    return shutil.which(DOT) is not None


def dot_to(dot_source: str, fmt: str) -> bytes:
    """Lay out ``dot_source`` with Graphviz and return the ``fmt`` bytes (never opens a viewer)."""
    if fmt == DOT:
        return dot_source.encode("utf-8")
    if fmt not in FORMATS:
        raise EnasError(f"unknown output format {fmt!r}, expected one of {', '.join(FORMATS)}")
    if not dot_available():
        raise EnasError(MISSING_DOT)
    import graphviz

    try:
        return graphviz.pipe(DOT, fmt, dot_source.encode("utf-8"), quiet=True)
    except graphviz.ExecutableNotFound:
        raise EnasError(MISSING_DOT) from None
    except graphviz.CalledProcessError as e:
        stderr = (e.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        reason = stderr[0] if stderr else f"exit status {e.returncode}"
        raise EnasError(f"Graphviz's dot could not write {fmt}: {reason}") from None


def render(arch, out_path: str | Path, fmt: str | None = None, title: str | None = None,
           layout: Layout = DEFAULT_LAYOUT) -> Path:
    """Write a drawing of ``arch`` to ``out_path`` (format from its suffix unless ``fmt``).

    The file appears complete or not at all (``enastool.atomic``): a file it replaces keeps its
    permissions, a symbolic link is written through (as ``open()`` would), and a failed write
    is one line.
    """
    out = Path(out_path)
    fmt = format_for(out) if fmt is None else fmt
    target = Path(os.path.realpath(out)) if out.is_symlink() else out
    folder = target.parent
    if not folder.is_dir():
        via = f" (the target of the link {out})" if target != out else ""
        raise EnasError(f"{target}: no such directory {str(folder)!r}{via}; create it first")
    write_bytes_atomic(target, dot_to(to_dot(arch, title, layout=layout), fmt))
    return out
