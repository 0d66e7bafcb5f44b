"""DARTS and NAO converters (micro and recurrent cells), and the canonical form of micro architectures."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enastool.encoding import Activation, Block, Cell, MacroArch, MicroArch, MicroOp, RecurrentArch, RecurrentNode
from enastool.encoding.darts import from_darts, to_darts
from enastool.encoding.nao import (
    INDEX_OFFSET,
    MAX_BLOCKS,
    OP_OFFSET,
    VOCAB_SIZE,
    format_nao,
    from_nao,
    parse_nao_text,
    to_nao,
)
from enastool.encoding.textio import parse_text
from enastool.errors import EncodingError

# normal: node 2 = sep3(0) + id(1), node 3 = max(2) + avg(0): loose ends [3].
# reduce: node 2 = sep5(1) + sep3(1), node 3 = id(0) + max(1): loose ends [2, 3].
SMALL = MicroArch(
    Cell((Block(0, MicroOp.SEP3, 1, MicroOp.IDENTITY), Block(2, MicroOp.MAX3, 0, MicroOp.AVG3))),
    Cell((Block(1, MicroOp.SEP5, 1, MicroOp.SEP3), Block(0, MicroOp.IDENTITY, 1, MicroOp.MAX3))),
)
SMALL_DARTS = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('max_pool_3x3', 2), ('avg_pool_3x3', 0)], "
    "normal_concat=[3], "
    "reduce=[('sep_conv_5x5', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('max_pool_3x3', 1)], "
    "reduce_concat=[2, 3])"
)


@st.composite
def micro_archs(draw, max_blocks=6):
    return MicroArch.sample(draw(st.integers(0, 2**32 - 1)), num_blocks=draw(st.integers(1, max_blocks)))


# ----------------------------------------------------------------- DARTS
def test_to_darts_gives_the_exact_genotype_text():
    assert to_darts(SMALL) == SMALL_DARTS


def test_from_darts_accepts_layout_variants():
    spread = SMALL_DARTS.replace(", ", ",\n    ").replace("(normal", "(\n  normal")
    no_prefix = SMALL_DARTS[len("Genotype"):]
    assigned = "MY_CELL = " + SMALL_DARTS
    positional = SMALL_DARTS.replace("normal=", "").replace("normal_concat=", "")
    positional = positional.replace("reduce=", "").replace("reduce_concat=", "")
    for text in (SMALL_DARTS, spread, no_prefix, assigned, positional):
        assert from_darts(text) == SMALL


def test_from_darts_concat_may_be_omitted_or_a_range():
    text = SMALL_DARTS.replace("normal_concat=[3], ", "").replace("reduce_concat=[2, 3]", "reduce_concat=range(2, 4)")
    assert from_darts(text) == SMALL


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (("'max_pool_3x3', 2", "'dil_conv_3x3', 2"), "DARTS normal node 3 pair 1: op 'dil_conv_3x3' has no ENAS equivalent"),
        (("'skip_connect', 0", "'none', 0"), "DARTS reduce node 3 pair 1: op 'none' has no ENAS equivalent"),
        (("('max_pool_3x3', 2)", "('max_pool_3x3', 3)"), "DARTS normal node 3 pair 1: found input 3, expected 0..2"),
        (("normal_concat=[3]", "normal_concat=[2, 3]"), "DARTS normal_concat: found [2, 3], expected the loose ends [3]"),
        (("reduce_concat=[2, 3]", "reduce_concat=range(2, 5)"), "DARTS reduce_concat: found [2, 3, 4], expected the loose ends [2, 3]"),
        ((", ('avg_pool_3x3', 0)]", "]"), "DARTS normal: found 3 pairs, expected two per node"),
        (("('sep_conv_3x3', 0)", "(0, 'sep_conv_3x3')"), "DARTS normal node 2 pair 1: found (0, 'sep_conv_3x3'), expected (op_name, input)"),
        (("normal_concat", "normal_cat"), "DARTS genotype: unknown field 'normal_cat'"),
        (("reduce=[", "reduce=[__import__('os'), "), "DARTS reduce: expected a list of (op_name, input) pairs"),
        (("Genotype(", "Genotype(["), "not a DARTS genotype"),
    ],
)
def test_from_darts_refuses_what_enas_cannot_build(edit, fragment):
    old, new = edit
    assert old in SMALL_DARTS
    with pytest.raises(EncodingError) as info:
        from_darts(SMALL_DARTS.replace(old, new, 1))
    assert fragment in str(info.value)


def test_from_darts_never_evaluates():
    with pytest.raises(EncodingError):
        from_darts("Genotype(normal=[(__import__('os').system('false'), 0)], reduce=[])")
    with pytest.raises(EncodingError, match="not a DARTS genotype"):
        from_darts("print('hi')")


def test_macro_has_no_darts_form():
    with pytest.raises(EncodingError, match="macro architectures have no DARTS genotype form"):
        to_darts(MacroArch.from_ints([0]))
    _, errors = parse_text(SMALL_DARTS, "g.txt", space="macro")
    assert [str(e) for e in errors] == ["g.txt: record 1: found a DARTS genotype, but macro architectures have no DARTS form"]


def test_parse_text_reads_several_genotypes_as_records():
    records, errors = parse_text(f"# two cells\n{SMALL_DARTS}\n{SMALL_DARTS.replace('sep_conv_5x5', 'x')}\n", "g.txt")
    assert [r.arch for r in records] == [SMALL]
    assert [str(e) for e in errors] == [
        "g.txt: record 2: DARTS reduce node 2 pair 1: op 'x' has no ENAS equivalent, "
        "expected one of sep_conv_3x3, sep_conv_5x5, avg_pool_3x3, max_pool_3x3, skip_connect"
    ]


@settings(deadline=None, max_examples=100)
@given(micro_archs())
def test_darts_round_trip(arch):
    text = to_darts(arch)
    assert from_darts(text) == arch
    assert f"normal_concat={list(arch.normal.loose_ends)}" in text


# ----------------------------------------------------------------- DARTS, recurrent cells
# nodes 1..3: tanh(0), relu(1), identity(1); a mean of all three.
RNN3 = RecurrentArch((RecurrentNode(0, Activation.TANH), RecurrentNode(1, Activation.RELU), RecurrentNode(1, Activation.IDENTITY)))
RNN3_DARTS = "Genotype(recurrent=[('tanh', 0), ('relu', 1), ('identity', 1)], concat=range(1, 4))"
# DARTS's published recurrent cell, as quark0/darts rnn/genotypes.py writes it (DARTS_V2).
DARTS_V2 = (
    "DARTS_V2 = Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ('relu', 1), ('identity', 1), "
    "('tanh', 2), ('sigmoid', 5), ('tanh', 3), ('relu', 5)], concat=range(1, 9))"
)


@st.composite
def rnn_archs(draw, max_nodes=12):
    return RecurrentArch.sample(draw(st.integers(0, 2**32 - 1)), num_nodes=draw(st.integers(1, max_nodes)))


def test_to_darts_writes_a_recurrent_cell_as_darts_does():
    assert to_darts(RNN3) == RNN3_DARTS
    assert from_darts(RNN3_DARTS) == RNN3


def test_dartss_own_cell_converts_to_exact_enas_integers():
    # DARTS numbers inputs as ENAS does (states[0] is node 0) and names the same activations.
    assert from_darts(DARTS_V2).to_ints() == [0, 2, 1, 1, 1, 1, 1, 3, 2, 0, 5, 2, 3, 0, 5, 1]


def test_from_darts_recurrent_accepts_layout_variants():
    spread = RNN3_DARTS.replace(", (", ",\n    (").replace("(recurrent", "(\n  recurrent")
    positional = RNN3_DARTS.replace("recurrent=", "").replace("concat=", "")
    for text in (
        spread,
        positional,
        RNN3_DARTS[len("Genotype"):],
        "ENAS_CELL = " + RNN3_DARTS,
        RNN3_DARTS.replace("range(1, 4)", "[1, 2, 3]"),
        RNN3_DARTS.replace("range(1, 4)", "(3, 1, 2)"),  # a mean does not depend on the order
        RNN3_DARTS.replace(", concat=range(1, 4)", ""),  # omitted: the mean of every node
        RNN3_DARTS.replace("'relu'", "'ReLU'"),
    ):
        assert from_darts(text) == RNN3, text


@pytest.mark.parametrize(
    "edit, message",
    [
        (("'relu', 1", "'none', 1"), "DARTS recurrent pair 2 (node 2): activation 'none' has no ENAS equivalent "
         "(an ENAS node always applies an activation to the node it reads), expected one of tanh, relu, sigmoid, identity"),
        (("'identity', 1", "'skip_connect', 1"), "DARTS recurrent pair 3 (node 3): activation 'skip_connect' has no "
         "ENAS equivalent, expected one of tanh, relu, sigmoid, identity"),
        (("('relu', 1)", "('relu', 2)"), "DARTS recurrent pair 2 (node 2): found input 2, expected 0..1"),
        (("('relu', 1)", "(1, 'relu')"), "DARTS recurrent pair 2 (node 2): found (1, 'relu'), expected (activation_name, input)"),
        (("('relu', 1)", "('relu', True)"), "DARTS recurrent pair 2 (node 2): found ('relu', True), expected (activation_name, input)"),
        (("range(1, 4)", "range(1, 3)"), "DARTS concat: found [1, 2], expected range(1, 4), every node 1..3 "
         "(ENAS averages all nodes after node 0; a mean of other nodes is another network)"),
        (("range(1, 4)", "[2, 3]"), "DARTS concat: found [2, 3], expected range(1, 4)"),
        (("range(1, 4)", "[1, 1, 2, 3]"), "DARTS concat: found [1, 1, 2, 3], expected range(1, 4)"),
        (("range(1, 4)", "range(0, 4)"), "DARTS concat: found [0, 1, 2, 3], expected range(1, 4)"),
        (("concat=", "concat_list="), "DARTS genotype: unknown field 'concat_list', expected recurrent, concat"),
        (("recurrent=[", "recurrent=[__import__('os'), "), "DARTS recurrent: expected a list of (activation_name, input) pairs"),
        (("recurrent=[('tanh', 0), ('relu', 1), ('identity', 1)]", "recurrent=[]"),
         "DARTS recurrent: expected a non-empty list of (activation_name, input) pairs"),
        (("recurrent=[('tanh', 0), ('relu', 1), ('identity', 1)], ", ""), "DARTS genotype: missing 'recurrent'"),
    ],
)
def test_from_darts_refuses_recurrent_cells_enas_cannot_build(edit, message):
    old, new = edit
    assert old in RNN3_DARTS
    with pytest.raises(EncodingError) as info:
        from_darts(RNN3_DARTS.replace(old, new, 1))
    assert str(info.value).startswith(message)


def test_from_darts_refuses_more_recurrent_nodes_than_supported():
    pairs = ", ".join(f"('tanh', {l - 1})" for l in range(1, 66))
    with pytest.raises(EncodingError, match="found 65 pairs \\(one per node\\), at most 64 nodes are supported"):
        from_darts(f"Genotype(recurrent=[{pairs}])")


def test_from_darts_recurrent_never_evaluates():
    with pytest.raises(EncodingError, match="DARTS recurrent: expected a list"):
        from_darts("Genotype(recurrent=[(__import__('os').system('false'), 0)], concat=[1])")


def test_parse_text_reads_recurrent_genotypes_and_checks_space():
    records, errors = parse_text(f"{SMALL_DARTS}\n# and a recurrent cell\n{RNN3_DARTS}\n", "g.txt")
    assert errors == [] and [r.arch for r in records] == [SMALL, RNN3]
    assert parse_text(RNN3_DARTS, "g.txt", space="rnn")[0][0].arch == RNN3
    records, errors = parse_text(f"{SMALL_DARTS}\n{RNN3_DARTS}\n", "g.txt", space="rnn")
    assert [r.arch for r in records] == [RNN3]
    assert [str(e) for e in errors] == ["g.txt: record 1: found a DARTS micro genotype, but --space rnn was asked for"]
    _, errors = parse_text(RNN3_DARTS, "g.txt", space="micro")
    assert [str(e) for e in errors] == ["g.txt: record 1: found a DARTS rnn genotype, but --space micro was asked for"]


@settings(deadline=None, max_examples=100)
@given(rnn_archs())
def test_darts_recurrent_round_trip(arch):
    text = to_darts(arch)
    assert from_darts(text) == arch
    assert text.endswith(f"concat=range(1, {arch.num_nodes + 1}))")


# ----------------------------------------------------------------- NAO
def test_nao_offsets_and_exact_tokens():
    assert (INDEX_OFFSET, OP_OFFSET, VOCAB_SIZE, MAX_BLOCKS) == (1, 7, 12, 5)
    # normal: (0 sep3, 1 id), (2 max, 0 avg); reduce: (1 sep5, 1 sep3), (0 id, 1 max)
    assert to_nao(SMALL) == [1, 7, 2, 11, 3, 10, 1, 9, 2, 8, 2, 7, 1, 11, 2, 10]
    assert format_nao(SMALL) == "1 7 2 11 3 10 1 9 2 8 2 7 1 11 2 10"


def test_nao_strips_start_and_end_symbols():
    tokens = to_nao(SMALL)
    assert from_nao([0, *tokens, 0]) == from_nao([0, *tokens]) == from_nao(tokens) == SMALL


@pytest.mark.parametrize(
    "tokens, message",
    [
        ([1, 7, 3, 7] * 2, "token 3: normal cell node 2 index_2: found 3, expected an index token 1..2"),
        ([1, 7, 2, 12] * 2, "token 4: normal cell node 2 op_2: found 12, expected an op token 7..11"),
        ([0, 1, 7, 2, 7, 1, 7, 2, 6], "token 9: reduction cell node 2 op_2: found 6, expected an op token 7..11"),
        ([1, 7, 2], "found 3 NAO tokens, expected a positive multiple of 8 up to 40"),
        ([1, 7, 2, 7] * 12, "found 48 NAO tokens"),
    ],
)
def test_from_nao_range_checks_name_positions(tokens, message):
    with pytest.raises(EncodingError) as info:
        from_nao(tokens)
    assert str(info.value).startswith(message)


def test_nao_refuses_more_blocks_than_its_vocabulary():
    with pytest.raises(EncodingError, match="found 6 blocks per cell, NAO's vocabulary holds at most 5"):
        to_nao(MicroArch.sample(0, num_blocks=6))


def test_parse_nao_text_one_architecture_per_line():
    text = f"# pool\n{format_nao(SMALL)}\n\n0 {format_nao(SMALL)} 0\n"
    assert parse_nao_text(text, "pool.nao") == [SMALL, SMALL]
    with pytest.raises(EncodingError) as info:
        parse_nao_text(text + "1 7 2 x 1 7 2 7\n", "pool.nao")
    assert str(info.value) == "pool.nao: record 3: token 4: found 'x', expected an integer"
    with pytest.raises(EncodingError, match="pool.nao: found no NAO sequence"):
        parse_nao_text("# nothing\n", "pool.nao")


@settings(deadline=None, max_examples=100)
@given(micro_archs(max_blocks=MAX_BLOCKS))
def test_nao_round_trip(arch):
    tokens = to_nao(arch)
    assert len(tokens) == 8 * arch.num_blocks
    assert all(INDEX_OFFSET <= t < VOCAB_SIZE for t in tokens)
    assert from_nao(tokens) == arch
    assert parse_nao_text(format_nao(arch)) == [arch]


# ----------------------------------------------------------------- canonical form
@settings(deadline=None, max_examples=100)
@given(micro_archs(), st.data())
def test_swapping_a_blocks_branches_keeps_the_canonical_form(arch, data):
    cell_name = data.draw(st.sampled_from(["normal", "reduce"]))
    cell = getattr(arch, cell_name)
    j = data.draw(st.integers(0, cell.num_blocks - 1))
    b = cell.blocks[j]
    swapped_cell = Cell(cell.blocks[:j] + (Block(b.index2, b.op2, b.index1, b.op1),) + cell.blocks[j + 1 :])
    swapped = MicroArch(**{"normal": arch.normal, "reduce": arch.reduce, cell_name: swapped_cell})
    assert swapped.canonical() == arch.canonical()
    assert swapped.canonical().canonical() == swapped.canonical()
    # The canonical form survives every text form unchanged.
    canon = arch.canonical()
    assert from_darts(to_darts(canon)) == canon
    assert parse_text(f"micro {canon.format()}")[0][0].arch == canon


def test_an_overlong_nao_line_is_refused_before_its_tokens_are_read():
    from enastool.encoding.nao import MAX_TOKENS, read_nao_records

    records, errors = read_nao_records("1 7 " * 100_000 + "x", "long.nao")
    assert records == [] and [str(e) for e in errors] == [
        f"long.nao: record 1: found 200001 NAO tokens, expected a positive multiple of 8 up to {MAX_TOKENS} "
        "(4 per block and cell, at most 5 blocks)"  # the stray 'x' at the end is never looked at
    ]
