"""The encoding core: validation, queries, sampling and canonical forms."""

import random
import subprocess
import sys

import pytest

from enastool.encoding import Block, Cell, MacroArch, MacroLayer, MacroOp, MicroArch, MicroOp
from enastool.errors import EncodingError


def test_macro_bits_follow_the_authors_semantics():
    # layer 2 with bits [1, 0]: bit 0 is the stem; the input is layer 1, never a bit.
    arch = MacroArch.from_ints([0, 1, 0, 2, 1, 0])
    layer2 = arch.layers[2]
    assert layer2.op is MacroOp.CONV5
    assert layer2.input_source == 2  # prev = [stem, layer0, layer1]
    assert layer2.skip_sources == (0,)  # the stem
    g = arch.to_networkx()
    assert g.has_edge("stem", "layer2") and g.edges["stem", "layer2"]["kind"] == "skip"
    assert g.edges["layer1", "layer2"]["kind"] == "input"
    assert not g.has_edge("layer0", "layer2")


def test_macro_validation_names_token_and_value():
    with pytest.raises(EncodingError, match=r"token 3: layer 1 skip bit 0: found 2, expected 0 or 1"):
        MacroArch.from_ints([0, 1, 2])
    with pytest.raises(EncodingError, match=r"token 1: layer 0 op: found 6, expected a macro op id 0..5"):
        MacroArch.from_ints([6])
    with pytest.raises(EncodingError, match=r"found 4 integers, expected a triangular count"):
        MacroArch.from_ints([0, 0, 0, 0])
    with pytest.raises(EncodingError, match="at least 1 layer"):
        MacroArch(())
    with pytest.raises(EncodingError, match="layer 1: expected 1 skip bits, found 2"):
        MacroArch((MacroLayer(MacroOp.CONV3, ()), MacroLayer(MacroOp.CONV3, (0, 1))))


def test_micro_validation_names_cell_node_and_expected_range():
    ints = [0, 0, 1, 1] * 2
    ints[6] = 2  # reduction cell, node 2, index_2 = 2 (must be < 2)
    with pytest.raises(EncodingError, match=r"token 7: reduction cell node 2 index_2: found 2, expected an index 0..1"):
        MicroArch.from_ints(ints)
    with pytest.raises(EncodingError, match="positive multiple of 8"):
        MicroArch.from_ints([0, 0, 1, 1])
    with pytest.raises(EncodingError, match="same count"):
        MicroArch(Cell((Block(0, MicroOp.SEP3, 1, MicroOp.SEP3),)), Cell((Block(0, MicroOp.SEP3, 1, MicroOp.SEP3),) * 2))


def test_objects_are_immutable_hashable_and_equal_by_value():
    a = MicroArch.from_ints([0, 0, 1, 1, 0, 4, 1, 2])
    b = MicroArch.from_ints([0, 0, 1, 1, 0, 4, 1, 2])
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.normal = b.reduce  # type: ignore[misc]


def test_micro_loose_ends_and_depth():
    # node 2 = f(0) + f(1); node 3 = f(2) + f(0): loose ends {1?no} -> only node 3
    cell = Cell((Block(0, MicroOp.SEP3, 1, MicroOp.IDENTITY), Block(2, MicroOp.MAX3, 0, MicroOp.AVG3)))
    assert cell.loose_ends == (3,)
    assert cell.depth() == 2
    cell2 = Cell((Block(0, MicroOp.SEP3, 0, MicroOp.SEP5),))
    assert cell2.loose_ends == (1, 2)


def test_canonical_form_makes_commuted_branches_equal():
    a = MicroArch.from_ints([1, 3, 0, 0, 1, 0, 0, 4])
    b = MicroArch.from_ints([0, 0, 1, 3, 0, 4, 1, 0])
    assert a != b
    assert a.canonical() == b.canonical()
    assert a.equivalent(b)
    assert a.canonical().format() == "0 0 1 3 0 4 1 0"


def test_sampling_is_seeded_valid_and_covers_the_space():
    assert MacroArch.sample(7, 6) == MacroArch.sample(7, 6)
    assert MicroArch.sample(7, 3) == MicroArch.sample(random.Random(7), 3)
    archs = [MicroArch.sample(s, 5) for s in range(300)]
    ops = {op for a in archs for op in a.op_histogram() if a.op_histogram()[op]}
    assert ops == set(MicroOp)
    # uniform index choice: node 6 (5 inputs) takes index 0 about a fifth of the time
    first = sum(a.normal.blocks[4].index1 == 0 for a in archs) / len(archs)
    assert 0.1 < first < 0.3
    macro = [MacroArch.sample(s, 10, ops=[MacroOp.CONV3, MacroOp.SEP5]) for s in range(100)]
    assert {layer.op for a in macro for layer in a.layers} == {MacroOp.CONV3, MacroOp.SEP5}
    density = sum(a.skip_density for a in macro) / len(macro)
    assert 0.4 < density < 0.6


def test_op_enums_carry_ids_and_names():
    assert [op.enas_id for op in MacroOp] == list(range(6))
    assert [op.darts for op in MicroOp] == ["sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "skip_connect"]
    assert MicroOp.from_name("skip_connect") is MicroOp.IDENTITY


def test_importing_the_encoding_core_does_not_import_torch():
    code = "import sys, enastool.encoding, enastool.errors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
