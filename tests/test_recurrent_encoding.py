"""The recurrent (PTB) space encoding: 2N integers, `prev_index activation` per node."""

import pytest

from enastool.encoding import SPACES, Activation, RecurrentArch, RecurrentNode
from enastool.encoding.textio import parse_text
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
