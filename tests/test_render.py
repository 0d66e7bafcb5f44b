"""Rendering: the DOT text of every space, files in every format, and life without Graphviz."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from enastool.encoding import (
    Activation,
    Block,
    Cell,
    MacroArch,
    MacroOp,
    MicroArch,
    MicroOp,
    OpKind,
    RecurrentArch,
)
from enastool.encoding import render as render_mod
from enastool.encoding.render import (
    ACTIVATION_COLOURS,
    FORMATS,
    MISSING_DOT,
    Layout,
    dot_to,
    drawn_skips,
    format_for,
    op_colour,
    parse_skips,
    render,
    to_dot,
)
from enastool.encoding.textio import load_one
from enastool.errors import EnasError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)"(?: \[(.*)\])?;$', re.M)
NODE = re.compile(r'^\s*"([^"]+)" \[(.*)\];$', re.M)


def edges(dot: str) -> list[tuple[str, str, str]]:
    return [(a, b, attrs or "") for a, b, attrs in EDGE.findall(dot)]


def nodes(dot: str) -> dict[str, str]:
    return {name: attrs for name, attrs in NODE.findall(dot)}


def plain_positions(dot: str) -> dict[str, tuple[float, float]]:
    """Node centres after Graphviz's layout (``-Tplain``)."""
    out = subprocess.run(["dot", "-Tplain"], input=dot.encode(), capture_output=True, check=True).stdout
    positions = {}
    for line in out.decode().splitlines():
        parts = line.split()
        if parts and parts[0] == "node":
            positions[parts[1].strip('"')] = (float(parts[2]), float(parts[3]))
    return positions


# ----------------------------------------------------------------- colours
def test_every_op_of_every_vocabulary_has_its_own_colour():
    for vocabulary in (MacroOp, MicroOp, Activation):
        colours = [op_colour(op) for op in vocabulary]
        assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)
        assert len(set(colours)) == len(colours), vocabulary
    # Same kind and kernel, same colour, whatever the vocabulary.
    assert op_colour(MacroOp.SEP3) == op_colour(MicroOp.SEP3)
    assert op_colour(MacroOp.MAX3) == op_colour(MicroOp.MAX3)
    assert set(render_mod.KIND_COLOURS) == set(OpKind)
    assert set(ACTIVATION_COLOURS) == set(Activation)
    # An activation that passes its input through is drawn like the identity op.
    assert op_colour(Activation.IDENTITY) == op_colour(MicroOp.IDENTITY)


def test_render_module_writes_no_op_name_of_its_own():
    # The op enums are the only list of op names: the renderer reads them from there.
    source = Path(render_mod.__file__).read_text()
    for op in (*MacroOp, *MicroOp, *Activation):
        assert op.short not in source and op.darts not in source, op


# ----------------------------------------------------------------- macro
def test_render_macro_draws_the_chain_and_every_skip_of_the_authors_architecture(macro_final):
    dot = to_dot(macro_final)
    names = ["stem"] + [f"layer{k}" for k in range(24)] + ["output"]
    assert set(names) <= set(nodes(dot))
    chain = [(a, b) for a, b, attrs in edges(dot) if "dashed" not in attrs]
    assert chain == list(zip(names, names[1:]))
    skips = {(a, b) for a, b, attrs in edges(dot) if "dashed" in attrs}
    expected = {
        (names[m], f"layer{k}")
        for k, layer in enumerate(macro_final.layers)
        for m in layer.skip_sources
    }
    assert len(skips) == 98 and skips == expected
    assert ("stem", "layer2") in skips  # layer 2 is "0 1 0": bit 0 is the stem
    assert ("layer1", "layer3") in skips  # layer 3 is "2 0 0 1": bit 2 is layer 1
    assert 'label="macro: 24 layers, 98 of 276 skips"' in dot


def test_render_macro_colours_layers_by_op_and_lists_their_skips(macro_final):
    drawn = nodes(to_dot(macro_final))
    for k, layer in enumerate(macro_final.layers):
        attrs = drawn[f"layer{k}"]
        assert f'fillcolor="{op_colour(layer.op)}"' in attrs
        assert f"<B>{k}</B>  {layer.op.short}" in attrs
    assert "skips: stem, 0, 2<" in drawn["layer5"]  # "3 1 1 0 1 0": bits 0, 1, 3
    assert "no skips" in drawn["layer0"]
    # The legend counts every op of the vocabulary, unused ones (pooling) included.
    legend = drawn["legend"]
    assert all(op.short in legend for op in MacroOp)
    assert f"{MacroOp.CONV5.short}</FONT></TD><TD ALIGN=\"RIGHT\">9<" in legend


@needs_dot
def test_render_macro_keeps_the_chain_straight(macro_final):
    positions = plain_positions(to_dot(macro_final))
    chain = ["stem"] + [f"layer{k}" for k in range(24)] + ["output"]
    xs = {positions[n][0] for n in chain}
    ys = [positions[n][1] for n in chain]
    assert len(xs) == 1
    assert ys == sorted(ys, reverse=True)  # top to bottom
    assert positions["legend"][0] < positions["stem"][0]


# ----------------------------------------------------------------- micro
def test_render_micro_draws_both_cells_with_inputs_ops_and_loose_ends(micro_final):
    dot = to_dot(micro_final)
    assert 'subgraph "cluster_normal"' in dot and 'subgraph "cluster_reduce"' in dot
    assert dot.index("cluster_normal") < dot.index("cluster_reduce")  # normal on the left
    assert 'label="normal cell"' in dot and 'label="reduction cell"' in dot
    drawn = nodes(dot)
    all_edges = edges(dot)
    for cname, cell in (("normal", micro_final.normal), ("reduce", micro_final.reduce)):
        assert "c<SUB>k-2</SUB>" in drawn[f"{cname}/in"] and "c<SUB>k-1</SUB>" in drawn[f"{cname}/in"]
        for j, block in enumerate(cell.blocks):
            n = j + 2
            for b, (index, op) in enumerate(block.branches, 1):
                op_node = f"{cname}/{n}/op{b}"
                assert f'label="{op.short}"' in drawn[op_node]
                assert f'fillcolor="{op_colour(op)}"' in drawn[op_node]
                tail = f"{cname}/in" if index < 2 else f"{cname}/{index}"
                incoming = [attrs for a, b2, attrs in all_edges if (a, b2) == (tail, op_node)]
                assert len(incoming) == 1
                if index < 2:
                    assert f'tailport="{index}:s"' in incoming[0]
                assert (op_node, f"{cname}/{n}", "") in all_edges
        into_out = [(a, attrs) for a, b, attrs in all_edges if b == f"{cname}/out"]
        assert [a for a, _ in into_out] == [f"{cname}/{n}" for n in cell.loose_ends]
    # The authors' cells: all five blocks are loose in the normal cell, node 3 is used in the reduction cell.
    assert micro_final.normal.loose_ends == (2, 3, 4, 5, 6)
    assert micro_final.reduce.loose_ends == (2, 4, 5, 6)
    assert "c<SUB>k</SUB><BR/>concat" in drawn["normal/out"]


def test_render_micro_feeds_a_loose_input_node_into_the_output():
    # Node 1 is read by no block, so c_{k-1} itself is concatenated into the output.
    arch = MicroArch(
        Cell((Block(0, MicroOp.SEP3, 0, MicroOp.IDENTITY),)), Cell((Block(1, MicroOp.MAX3, 0, MicroOp.AVG3),))
    )
    into_out = [(a, attrs) for a, b, attrs in edges(to_dot(arch)) if b == "normal/out"]
    assert [(a, 'tailport="1:s"' in attrs) for a, attrs in into_out] == [("normal/in", True), ("normal/2", False)]
    assert [a for a, b, _ in edges(to_dot(arch)) if b == "reduce/out"] == ["reduce/2"]


def test_each_graph_names_its_layout_so_a_stream_of_graphs_renders_each_right(macro_final, micro_final):
    # `enastool convert --to dot` writes one graph per record; dot would otherwise keep the
    # macro graph's neato layout for the micro graph that follows it.
    assert 'layout="neato"' in to_dot(macro_final)
    assert 'layout="dot"' in to_dot(micro_final)


# ----------------------------------------------------------------- rnn
RNN_FINAL = RecurrentArch.from_ints([0, 2, 1, 0, 2, 1, 2, 2, 4, 0, 5, 0, 3, 2, 6, 2])


def test_render_rnn_draws_the_inputs_node_0_every_node_and_the_mean():
    dot = to_dot(RNN_FINAL)
    drawn = nodes(dot)
    all_edges = edges(dot)
    assert "x<SUB>t</SUB>" in drawn["inputs"] and "h<SUB>t-1</SUB>" in drawn["inputs"]
    # x_t and h_{t-1} both feed node 0, each from its own port (x_t on the left).
    assert [(a, b, attrs) for a, b, attrs in all_edges if a == "inputs"] == [
        ("inputs", "node0", 'tailport="x:s"'), ("inputs", "node0", 'tailport="h:s"'),
    ]
    assert "<B>0</B>  tanh" in drawn["node0"] and "highway" in drawn["node0"]
    assert f'fillcolor="{ACTIVATION_COLOURS[Activation.TANH]}"' in drawn["node0"]
    # One edge per node from the node it reads, in its activation's colour.
    cell_edges = [(a, b) for a, b, attrs in all_edges if b.startswith("node") and a != "inputs"]
    assert cell_edges == [(f"node{node.prev}", f"node{l}") for l, node in enumerate(RNN_FINAL.nodes, 1)]
    assert ("node6", "node8") in cell_edges and ("node3", "node7") in cell_edges  # "6 2", "3 2"
    for l, node in enumerate(RNN_FINAL.nodes, 1):
        assert f"<B>{l}</B>  {node.activation.short}" in drawn[f"node{l}"]
        assert f'fillcolor="{op_colour(node.activation)}"' in drawn[f"node{l}"]
    # The output is the mean of every node 1..8, loose ends (7, 8) or not.
    into_output = [(a, attrs) for a, b, attrs in all_edges if b == "output"]
    assert [a for a, _ in into_output] == [f"node{l}" for l in range(1, 9)]
    assert all('style="dashed"' in attrs for _, attrs in into_output)
    assert "h<SUB>t</SUB>" in drawn["output"] and "mean of nodes 1..8" in drawn["output"]
    assert 'label="rnn: 8 nodes after node 0, output the mean of nodes 1..8"' in dot
    assert 'layout="dot"' in dot


def test_render_rnn_legend_counts_the_activations_of_nodes_1_to_n():
    legend = nodes(to_dot(RNN_FINAL))["legend"]
    assert "<B>activations (nodes 1..8)</B>" in legend
    counts = {"tanh": 3, "relu": 1, "sigmoid": 4, "identity": 0}
    for act in Activation:
        assert (
            f'<TD BGCOLOR="{ACTIVATION_COLOURS[act]}"><FONT COLOR="black">{act.short}</FONT></TD>'
            f'<TD ALIGN="RIGHT">{counts[act.short]}<'
        ) in legend
    one = RecurrentArch.from_ints([0, 3])
    assert "mean of node 1<" in nodes(to_dot(one))["output"]
    assert to_dot(one).count('-> "output"') == 1


@needs_dot
def test_render_rnn_runs_from_the_inputs_down_to_the_output():
    positions = plain_positions(to_dot(RNN_FINAL))
    heights = {name: y for name, (x, y) in positions.items()}
    cell = [f"node{l}" for l in range(1, 9)]
    assert heights["inputs"] > heights["node0"] > max(heights[n] for n in cell)
    assert min(heights[n] for n in cell) > heights["output"]
    # A node sits below the node it reads.
    assert all(heights[f"node{node.prev}"] > heights[f"node{l}"] for l, node in enumerate(RNN_FINAL.nodes, 1))


@needs_dot
def test_every_sampled_architecture_renders_without_graphviz_warnings():
    archs = [MacroArch.sample(seed, num_layers=n) for seed, n in enumerate((1, 2, 7, 30))]
    archs += [MicroArch.sample(seed, num_blocks=b) for seed, b in enumerate((1, 2, 5, 9))]
    archs += [RNN_FINAL] + [RecurrentArch.sample(seed, num_nodes=n) for seed, n in enumerate(range(1, 13))]
    for arch in archs:
        done = subprocess.run(["dot", "-Tsvg"], input=to_dot(arch).encode(), capture_output=True)
        assert done.returncode == 0 and done.stderr == b"", (arch, done.stderr)
        assert b"<svg" in done.stdout


# ----------------------------------------------------------------- files
def test_format_comes_from_the_suffix_and_anything_else_is_one_line():
    assert [format_for(f"a.{f}") for f in FORMATS] == ["png", "svg", "pdf", "dot"]
    assert format_for("A.PNG") == "png"
    with pytest.raises(EnasError) as info:
        format_for("arch.jpg")
    assert str(info.value) == "arch.jpg: found '.jpg', expected an output file ending in .png, .svg, .pdf, .dot"
    with pytest.raises(EnasError, match="found no suffix"):
        format_for("arch")


@needs_dot
@pytest.mark.parametrize(
    ("suffix", "check"),
    [
        ("png", lambda data: data.startswith(PNG_MAGIC)),
        ("svg", lambda data: b"<svg" in data and b"layer23" in data),
        ("pdf", lambda data: data.startswith(b"%PDF")),
        ("dot", lambda data: data.startswith(b'digraph "macro"')),
    ],
)
def test_render_writes_each_format(tmp_path, macro_final, suffix, check):
    out = render(macro_final, tmp_path / f"arch.{suffix}")
    assert out == tmp_path / f"arch.{suffix}"
    data = out.read_bytes()
    assert len(data) > 0 and check(data)
    assert [p.name for p in tmp_path.iterdir()] == [f"arch.{suffix}"]  # no temporary file left


@needs_dot
def test_render_micro_png_is_a_real_image(tmp_path, micro_final):
    data = render(micro_final, tmp_path / "cell.png").read_bytes()
    assert data.startswith(PNG_MAGIC)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > height > 100  # two cells side by side: wider than tall


def test_without_dot_only_dot_files_work(tmp_path, monkeypatch, micro_final):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    out = render(micro_final, tmp_path / "cell.dot")
    assert out.read_text() == to_dot(micro_final)
    with pytest.raises(EnasError) as info:
        render(micro_final, tmp_path / "cell.png")
    assert str(info.value) == MISSING_DOT
    assert "\n" not in MISSING_DOT and "apt-get install graphviz" in MISSING_DOT
    assert not (tmp_path / "cell.png").exists()


def test_a_dot_that_cannot_be_run_is_the_same_one_line_error(monkeypatch):
    import graphviz

    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(("dot",))

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/dot")
    monkeypatch.setattr(graphviz, "pipe", missing)
    with pytest.raises(EnasError) as info:
        dot_to("digraph { a -> b }", "svg")
    assert str(info.value) == MISSING_DOT


def test_render_into_a_missing_directory_names_it(tmp_path, micro_final):
    with pytest.raises(EnasError, match="no such directory"):
        render(micro_final, tmp_path / "nowhere" / "cell.dot")


# ----------------------------------------------------------------- the largest drawings
def test_a_dense_macro_routes_its_skips_so_graphviz_stays_fast(macro_final):
    # Bulging arcs cost Graphviz minutes past a few hundred skips; the densest valid
    # architecture (every skip of MAX_LAYERS layers) gets routed splines instead.
    from enastool.encoding.macro import MAX_LAYERS, MacroLayer

    dense = MacroArch(tuple(MacroLayer(MacroOp(k % MacroOp.count()), (1,) * k) for k in range(MAX_LAYERS)))
    assert dense.num_skips > render_mod.CURVED_SKIPS_MAX >= macro_final.num_skips
    assert 'splines="true"' in to_dot(dense)
    assert 'splines="curved"' in to_dot(macro_final)


# ----------------------------------------------------------------- replacing files
@pytest.mark.skipif(not hasattr(__import__("os"), "fchmod"), reason="POSIX permission bits")
def test_render_over_an_existing_file_keeps_its_permissions(tmp_path, micro_final):
    import os
    import stat

    out = tmp_path / "cell.dot"
    out.write_text("old")
    os.chmod(out, 0o640)
    render(micro_final, out)
    assert out.read_text().startswith('digraph "micro"')
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640


def test_render_writes_through_a_symbolic_link_as_open_would(tmp_path, micro_final):
    target, link = tmp_path / "real.dot", tmp_path / "link.dot"
    target.write_text("old")
    link.symlink_to(target)
    render(micro_final, link)
    assert link.is_symlink() and target.read_text().startswith('digraph "micro"')
    dangling = tmp_path / "dangling.dot"
    dangling.symlink_to(tmp_path / "gone" / "x.dot")
    with pytest.raises(EnasError, match=r"no such directory .*gone.* \(the target of the link .*dangling.dot\)"):
        render(micro_final, dangling)


# ----------------------------------------------------------------- layout options
def skip_edges(dot: str) -> set[tuple[str, str]]:
    return {(a, b) for a, b, attrs in edges(dot) if "dashed" in attrs}


def test_render_macro_skips_option_thins_the_authors_98_skips_by_span(macro_final):
    position = {"stem": 0, **{f"layer{k}": k + 1 for k in range(24)}}
    every = skip_edges(to_dot(macro_final))
    four = to_dot(macro_final, layout=Layout(max_skip_span=4))
    kept = skip_edges(four)
    assert kept == {(a, b) for a, b in every if position[b] - position[a] <= 4}
    assert len(kept) == 23 and ("stem", "layer2") in kept and ("layer1", "layer3") in kept
    assert 'label="macro: 24 layers, 98 of 276 skips; 23 drawn (span <= 4)"' in four
    assert "skips: stem, 0, 2<" in nodes(four)["layer5"]  # the labels still list every skip
    none = to_dot(macro_final, layout=Layout(max_skip_span=parse_skips("none")))
    assert skip_edges(none) == set() and "; none drawn" in none
    assert skip_edges(to_dot(macro_final, layout=Layout(max_skip_span=parse_skips("all")))) == every
    assert len(skip_edges(to_dot(macro_final, layout=Layout(max_skip_span=24)))) == 98
    assert len(drawn_skips(macro_final, Layout(max_skip_span=8))) == 52


def test_render_rankdir_lr_lays_the_macro_chain_out_in_a_row_with_skips_above(macro_final):
    dot = to_dot(macro_final, layout=Layout("LR", 4))
    drawn = nodes(dot)
    chain = ["stem"] + [f"layer{k}" for k in range(24)] + ["output"]
    pins = [tuple(map(float, re.search(r'pos="([-0-9.]+),([-0-9.]+)!"', drawn[n]).groups())) for n in chain]
    assert {y for _, y in pins} == {0.0}
    assert [x for x, _ in pins] == sorted(x for x, _ in pins) and len({x for x, _ in pins}) == 26
    for a, b, attrs in edges(dot):
        if "dashed" in attrs:
            assert 'tailport="n"' in attrs and 'headport="n"' in attrs
        else:
            assert 'tailport="e"' in attrs and 'headport="w"' in attrs
    assert 'tailport="s"' not in to_dot(macro_final, layout=Layout("LR")).split("legend")[1]


def test_render_rankdir_lr_turns_the_micro_and_rnn_graphs(micro_final):
    for arch in (micro_final, load_one(FIXTURES / "rnn_final.txt")):
        down, right = to_dot(arch), to_dot(arch, layout=Layout("LR"))
        assert 'rankdir="TB"' in down and 'rankdir="LR"' in right
        # the inputs' ports face the flow: below them top to bottom, to their right left to right
        assert ':s"' in down and ':s"' not in right and ':e"' in right
    with pytest.raises(EnasError, match="rankdir 'BT'"):
        Layout("BT")
    with pytest.raises(EnasError, match="--skips '4x'"):
        parse_skips("4x")
