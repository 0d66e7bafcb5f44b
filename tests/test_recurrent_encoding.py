"""The recurrent (PTB) space encoding: 2N integers, `prev_index activation` per node."""

import pytest

from enastool.encoding import SPACES, Activation, RecurrentArch, RecurrentNode
from enastool.encoding.recurrent import H_INPUT, NODE0_ACTIVATION, X_INPUT
from enastool.encoding.textio import from_json, parse_text, to_json
from enastool.errors import EncodingError

ENAS_CELL = [0, 2, 1, 0, 2, 1, 2, 2, 4, 0, 5, 0, 3, 2, 6, 2]  # reference sec. 2, N = 8


def test_the_published_cell_parses_into_its_nodes_and_prints_back():
    arch = RecurrentArch.from_ints(ENAS_CELL)
    assert arch.num_nodes == 8
    assert arch.nodes[0] == RecurrentNode(0, Activation.SIGMOID)
    assert arch.nodes[4] == RecurrentNode(4, Activation.TANH)
    assert arch.to_ints() == ENAS_CELL
    assert str(arch) == "rnn " + " ".join(map(str, ENAS_CELL))
    assert SPACES["rnn"] is RecurrentArch


def test_queries_of_the_published_cell():
    arch = RecurrentArch.from_ints(ENAS_CELL)
    assert arch.loose_ends == (7, 8)  # no node reads nodes 7 and 8
    assert arch.depth() == 6  # 0 -> 1 -> 2 -> 4 -> 5 -> 6 -> 8
    assert arch.op_histogram() == {
        Activation.TANH: 3, Activation.RELU: 1, Activation.SIGMOID: 4, Activation.IDENTITY: 0,
    }
    assert RecurrentArch.from_dict(arch.to_dict()) == arch


@pytest.mark.parametrize(
    "values, message",
    [
        ([1, 0], "token 1: node 1 prev_index: found 1, expected 0..0"),
        ([0, 4], "token 2: node 1 activation: found 4, expected an activation id 0..3"),
        ([0, 0, 2, 0], "token 3: node 2 prev_index: found 2, expected 0..1"),
        ([0, 0, 1], "found 3 integers, expected an even count"),
    ],
)
def test_bad_cells_name_the_token_and_what_was_expected(values, message):
    with pytest.raises(EncodingError) as caught:
        RecurrentArch.from_ints(values)
    assert str(caught.value).startswith(message)


def test_an_odd_count_is_named_as_the_first_repositorys_format():
    with pytest.raises(EncodingError, match="older 2N\\+1-integer format of the first ENAS repository"):
        RecurrentArch.from_ints(ENAS_CELL + [1])


def test_sampled_cells_are_valid_and_repeatable():
    cells = [RecurrentArch.sample(seed, num_nodes=5) for seed in range(20)]
    assert all(c.num_nodes == 5 for c in cells)
    assert RecurrentArch.sample(3) == RecurrentArch.sample(3)
    assert len(set(cells)) > 15


def test_a_bare_16_integer_rnn_cell_is_inferred_and_a_record_keyword_works():
    records, errors = parse_text("rnn " + " ".join(map(str, ENAS_CELL)))
    assert errors == [] and records[0].arch == RecurrentArch.from_ints(ENAS_CELL)
    records, errors = parse_text(" ".join(map(str, ENAS_CELL)))
    assert errors == [] and records[0].arch.space == "rnn"


def test_the_graph_has_both_inputs_node_0_every_node_and_the_mean():
    arch = RecurrentArch.from_ints(ENAS_CELL)
    g = arch.to_networkx()
    assert set(g.predecessors(0)) == {X_INPUT, H_INPUT}
    assert g.nodes[0]["op"] == NODE0_ACTIVATION.short == "tanh"
    assert [next(iter(g.predecessors(l))) for l in range(1, 9)] == [0, 1, 2, 2, 4, 5, 3, 6]
    assert [g.nodes[l]["op"] for l in range(1, 9)] == [n.activation.short for n in arch.nodes]
    # The output averages every node 1..8, loose ends or not; node 0 is not averaged.
    assert sorted(g.predecessors("output")) == list(range(1, 9))
    assert {g.edges[l, "output"]["kind"] for l in range(1, 9)} == {"mean"}
    assert g.nodes["output"]["op"] == "mean"


def test_json_round_trip_through_text_io_and_bad_json_is_located():
    cells = [RecurrentArch.from_ints(ENAS_CELL), RecurrentArch.sample(4, num_nodes=12)]
    for lines in (False, True):
        assert from_json(to_json(cells, lines=lines)) == cells
    bad = {
        '{"space": "rnn", "nodes": [{"prev": 1, "activation": "tanh"}]}':
            "JSON rnn record: node 1 prev_index: found 1, expected 0..0",
        '{"space": "rnn", "nodes": [{"prev": 0, "act": "tanh"}]}':
            "JSON node 1: expected an object with 'prev' and 'activation'",
        '{"space": "rnn", "nodes": [{"prev": "0", "activation": "tanh"}]}':
            "JSON node 1: 'prev' must be an integer, found '0'",
        '{"space": "rnn", "nodes": [{"prev": 0, "activation": "none"}]}':
            "JSON node 1: unknown op 'none', expected one of tanh, relu, sigmoid, identity",
    }
    for text, message in bad.items():
        records, errors = parse_text(text, "a.json")
        assert records == [] and [str(e) for e in errors] == [f"a.json: record 1: {message}"]


def test_a_bare_encoding_valid_in_no_space_of_its_length_names_each_spaces_error():
    typo = ENAS_CELL[:14] + [9, 2]  # node 8 reads node 9
    records, errors = parse_text(" ".join(map(str, typo)), "cell.txt")
    assert records == []
    assert [str(e) for e in errors] == [
        "cell.txt: record 1: found 16 integers, valid in no space that accepts that many "
        "(micro: token 9: reduction cell node 2 index_1: found 4, expected an index 0..1; "
        "rnn: token 15: node 8 prev_index: found 9, expected 0..7)"
    ]
    # With the space given, that space's own error, at its token.
    _, errors = parse_text(" ".join(map(str, typo)), "cell.txt", space="rnn")
    assert [str(e) for e in errors] == ["cell.txt: record 1: token 15: node 8 prev_index: found 9, expected 0..7"]


def test_a_bare_encoding_valid_in_one_space_of_its_length_is_read_in_it():
    # 8 integers: a 1-block micro architecture or a 4-node rnn cell.
    records, errors = parse_text("0 0 1 4 1 2 0 3")  # 4 at token 4: a micro op, no activation
    assert errors == [] and records[0].arch.space == "micro"
    records, errors = parse_text("0 0 1 3 2 2 0 3")  # 2 at token 5: node 3 reads node 2, no micro index
    assert errors == [] and records[0].arch.space == "rnn"
    assert records[0].arch.to_ints() == [0, 0, 1, 3, 2, 2, 0, 3]
