"""Golden tests: the authors' final architectures in every format, and every invalid fixture."""

from pathlib import Path

import pytest

from enastool.encoding import Activation, MacroOp, MicroOp, RecurrentArch
from enastool.encoding.darts import from_darts, to_darts
from enastool.encoding.nao import from_nao, parse_nao_text, to_nao
from enastool.encoding.textio import load_archs, load_one, read_source
from enastool.errors import EncodingError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
INVALID = FIXTURES / "invalid"

# Op ids of the 24 layers, read off the first column of cifar10_macro_final.sh (ENAS.md sec. 3).
MACRO_FINAL_OPS = [0, 3, 0, 2, 2, 3, 2, 2, 1, 0, 2, 0, 2, 1, 0, 2, 2, 2, 3, 3, 0, 3, 0, 0]
MICRO_FINAL_INTS = [
    0, 2, 0, 0, 0, 4, 0, 1, 0, 4, 1, 1, 1, 0, 0, 1, 0, 2, 1, 1,
    1, 0, 1, 0, 0, 3, 0, 2, 1, 1, 3, 1, 1, 0, 0, 4, 0, 3, 1, 1,
]


def test_macro_final_has_24_layers_with_the_published_ops(macro_final):
    assert macro_final.num_layers == 24
    assert [layer.op.enas_id for layer in macro_final.layers] == MACRO_FINAL_OPS
    assert len(macro_final.to_ints()) == 300
    hist = macro_final.op_histogram()
    assert hist[MacroOp.AVG3] == hist[MacroOp.MAX3] == 0  # the final script has no pooling


def test_macro_final_has_98_of_276_skips(macro_final):
    assert macro_final.num_skips == 98
    assert macro_final.possible_skips == 276
    # spot checks from the text: layer 2 is "0 1 0" (skip from the stem), layer 3 "2 0 0 1".
    assert macro_final.layers[2].skip_sources == (0,)
    assert macro_final.layers[3].skip_sources == (2,)


def test_micro_final_cells_and_loose_ends(micro_final):
    assert micro_final.to_ints() == MICRO_FINAL_INTS
    assert micro_final.num_blocks == 5
    # Normal cell: every block reads nodes 0/1 only, so all five blocks are concatenated.
    assert micro_final.normal.loose_ends == (2, 3, 4, 5, 6)
    # Reduction cell: node 3 is read by node 4.
    assert micro_final.reduce.loose_ends == (2, 4, 5, 6)
    assert micro_final.normal.blocks[0].op1 is MicroOp.AVG3


def test_bare_multiline_equals_records_equals_json(macro_final, micro_final):
    records = load_archs(FIXTURES / "authors_final.records")
    as_json = load_archs(FIXTURES / "authors_final.json")
    assert records == as_json == [macro_final, micro_final]


def test_darts_and_nao_fixtures_hold_the_micro_final(micro_final):
    darts_text = (FIXTURES / "micro_final.darts").read_text()
    assert from_darts(darts_text) == micro_final
    assert to_darts(micro_final) == darts_text.strip()
    assert load_one(FIXTURES / "micro_final.darts") == micro_final  # recognised without a flag
    assert "normal_concat=[2, 3, 4, 5, 6]" in darts_text and "reduce_concat=[2, 4, 5, 6]" in darts_text
    nao_text = (FIXTURES / "micro_final.nao").read_text()
    assert parse_nao_text(nao_text, "micro_final.nao") == [micro_final]
    # node 2 of the normal cell is "0 2 0 0": index tokens 1, op tokens 2+7 and 0+7.
    assert to_nao(micro_final)[:4] == [1, 9, 1, 7]
    assert from_nao(to_nao(micro_final)) == micro_final


RNN_FINAL_INTS = [0, 2, 1, 0, 2, 1, 2, 2, 4, 0, 5, 0, 3, 2, 6, 2]  # reference sec. 2 and 8


def test_rnn_final_is_the_published_cell_in_every_format():
    bare = load_one(FIXTURES / "rnn_final.txt")  # 16 bare integers, inferred as rnn
    assert isinstance(bare, RecurrentArch) and bare.to_ints() == RNN_FINAL_INTS
    assert load_one(FIXTURES / "rnn_final.darts") == load_one(FIXTURES / "rnn_final.json") == bare
    assert to_darts(bare) == (FIXTURES / "rnn_final.darts").read_text().strip()
    assert "concat=range(1, 9)" in to_darts(bare)
    # Node 1 is sigmoid of node 0; nodes 7 and 8 are read by no node.
    assert bare.nodes[0].activation is Activation.SIGMOID and bare.loose_ends == (7, 8)


def test_dartss_published_recurrent_cell_in_enas_integers():
    darts_v2 = load_one(FIXTURES / "rnn_darts_v2.darts")
    assert darts_v2.to_ints() == [0, 2, 1, 1, 1, 1, 1, 3, 2, 0, 5, 2, 3, 0, 5, 1]
    assert to_darts(darts_v2) == (FIXTURES / "rnn_darts_v2.darts").read_text().strip()


# file -> (records that still parse, fragments the single error must contain)
INVALID_CASES = {
    "empty.txt": (0, ["empty.txt: ", "empty"]),
    "non_integer.records": (1, ["non_integer.records: record 2: token 7: found 'x', expected an integer"]),
    "wrong_length.records": (0, ["wrong_length.records: record 1: found 39 integers", "multiple of 8"]),
    "op_out_of_range.records": (
        0,
        ["op_out_of_range.records: record 1: token 2: normal cell node 2 op_1: found 5, expected a micro op id 0..4"],
    ),
    "index_out_of_range.records": (
        0,
        ["index_out_of_range.records: record 1: token 13: normal cell node 5 index_1: found 9, expected an index 0..4"],
    ),
    "bit_out_of_range.txt": (
        0,
        ["bit_out_of_range.txt: record 1: token 5: layer 2 skip bit 0: found 2, expected 0 or 1"],
    ),
    "unknown_keyword.records": (
        1,
        ["unknown_keyword.records: record 2: found 'mcro', expected a space keyword: macro or micro or rnn"],
    ),
    "truncated_record.records": (1, ["truncated_record.records: record 2: found no integers after 'micro'"]),
    "negative_number.txt": (0, ["negative_number.txt: record 1: token 3: found -1, expected a non-negative integer"]),
    "float_number.txt": (0, ["float_number.txt: record 1: token 2: found '1.0', expected an integer"]),
    "long_number.txt": (
        0,
        ["long_number.txt: record 1: token 2: found a 20-digit number, expected at most 12 digits"],
    ),
    "ambiguous_space.txt": (
        0,
        ["ambiguous_space.txt: record 1: found 120 integers", "macro and micro", "--space"],
    ),
    "binary_garbage.bin": (0, ["binary_garbage.bin: found binary data (NUL byte at offset 12)"]),
    "bad_json.json": (0, ["bad_json.json: invalid JSON:"]),
    "unknown_darts_op.darts": (
        0,
        ["unknown_darts_op.darts: record 1: DARTS normal node 2 pair 2: op 'dil_conv_3x3' has no ENAS equivalent"],
    ),
    "darts_concat.darts": (
        0,
        ["darts_concat.darts: record 1: DARTS normal_concat: found [2, 3], expected the loose ends [3]"],
    ),
    "rnn_legacy_format.records": (
        0,
        ["rnn_legacy_format.records: record 1: found 17 integers, expected an even count", "older 2N+1-integer format"],
    ),
    "darts_rnn_none.darts": (
        0,
        ["darts_rnn_none.darts: record 1: DARTS recurrent pair 3 (node 3): activation 'none' has no ENAS equivalent"],
    ),
    "darts_rnn_concat.darts": (
        0,
        ["darts_rnn_concat.darts: record 1: DARTS concat: found [2, 5, 6, 9, 10, 11], expected range(1, 12)"],
    ),
    "bare_valid_nowhere.txt": (
        0,
        ["bare_valid_nowhere.txt: record 1: found 16 integers, valid in no space that accepts that many",
         "micro: token 9:", "rnn: token 15: node 8 prev_index: found 9, expected 0..7"],
    ),
}


@pytest.mark.parametrize("name", sorted(INVALID_CASES))
def test_invalid_fixture_gives_exactly_the_expected_error(name):
    expected_records, fragments = INVALID_CASES[name]
    records, errors = read_source(INVALID / name)
    assert len(records) == expected_records
    assert len(errors) == 1
    message = str(errors[0])
    assert message.startswith(str(INVALID / name) + ": ")
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_invalid_nao_fixture_names_token_and_range():
    path = INVALID / "nao_op_out_of_range.nao"
    with pytest.raises(EncodingError) as info:
        parse_nao_text(path.read_text(), path.name)
    assert str(info.value) == (
        "nao_op_out_of_range.nao: record 1: token 4: normal cell node 2 op_2: found 12, "
        "expected an op token 7..11"
    )


def test_every_invalid_fixture_is_tested_and_listed_in_the_readme():
    names = {p.name for p in INVALID.iterdir()}
    assert names == set(INVALID_CASES) | {"nao_op_out_of_range.nao"}
    readme = (FIXTURES / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in names)


def test_ambiguous_fixture_parses_in_either_space_when_asked():
    path = INVALID / "ambiguous_space.txt"
    assert load_one(path, space="macro").num_layers == 15
    assert load_one(path, space="micro").num_blocks == 15
