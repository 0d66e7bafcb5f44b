"""Token schemes: the fixed-length sequences NAO's encoder-decoder reads and writes."""

import random
from types import SimpleNamespace

import pytest

from enastool.encoding import MacroArch, MicroArch
from enastool.encoding.nao import to_nao
from enastool.encoding.recurrent import RecurrentArch
from enastool.encoding.tokens import (
    BOUNDARY_TOKEN,
    TOKEN_SCHEMES,
    MacroTokens,
    MicroTokens,
    RecurrentTokens,
    build_token_scheme,
    scheme_for_arch,
)
from enastool.errors import EnasError, EncodingError

SCHEMES = [MicroTokens(1), MicroTokens(2), MicroTokens(5), MacroTokens(1), MacroTokens(4), MacroTokens(12),
           RecurrentTokens(1), RecurrentTokens(8), RecurrentTokens(11)]
PUBLISHED_RNN = "0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2"  # the ENAS cell, reference sec. 2


def sample(scheme, rng):
    if isinstance(scheme, MicroTokens):
        return MicroArch.sample(rng, num_blocks=scheme.num_blocks)
    if isinstance(scheme, RecurrentTokens):
        return RecurrentArch.sample(rng, num_nodes=scheme.num_nodes)
    return MacroArch.sample(rng, num_layers=scheme.num_layers)


def random_valid_tokens(scheme, rng):
    """Every token drawn uniformly from its position's range."""
    return [rng.choice(scheme.allowed(p)) for p in range(scheme.length)]


def test_micro_tokens_are_nao_tokens(micro_final):
    scheme = MicroTokens(5)
    assert scheme.length == 40 and scheme.vocab_size == 12 and scheme.symmetric
    assert scheme.encode(micro_final) == to_nao(micro_final)
    assert scheme.decode(to_nao(micro_final)) == micro_final


def test_micro_position_ranges_follow_the_node():
    scheme = MicroTokens(3)
    # node 2: indices 0..1 (tokens 1..2); node 4: indices 0..3 (tokens 1..4); ops 7..11
    expected_cell = [range(1, 3), range(7, 12)] * 2 + [range(1, 4), range(7, 12)] * 2 + [range(1, 5), range(7, 12)] * 2
    assert scheme.ranges() == expected_cell + expected_cell
    assert all(BOUNDARY_TOKEN not in r for r in scheme.ranges())


def test_macro_tokens_shift_ops_and_bits_clear_of_the_boundary():
    arch = MacroArch.from_ints([1, 3, 0, 5, 1, 1])  # layer 0: sep3; layer 1: conv5x5 no skip; layer 2: maxpool, 2 skips
    scheme = MacroTokens(3)
    assert scheme.length == 6 and scheme.vocab_size == 9 and not scheme.symmetric
    assert scheme.encode(arch) == [4, 6, 1, 8, 2, 2]
    assert scheme.decode([4, 6, 1, 8, 2, 2]) == arch
    assert scheme.ranges() == [range(3, 9), range(3, 9), range(1, 3), range(3, 9), range(1, 3), range(1, 3)]


def test_rnn_tokens_are_nao_ws_ptb_tokens():
    # NAO-WS's PTB code: index token = prev + 1, activation token = activation + N + 1, in the
    # order tanh, relu, sigmoid, identity; 11 nodes give their vocabulary of 16.
    cell = RecurrentArch.from_ints([int(t) for t in PUBLISHED_RNN.split()])
    scheme = scheme_for_arch(cell)
    assert scheme == RecurrentTokens(8) and scheme.length == 16 and scheme.vocab_size == 13
    assert scheme.encode(cell) == [1, 11, 2, 9, 3, 10, 3, 11, 5, 9, 6, 9, 4, 11, 7, 11]
    assert scheme.decode(scheme.encode(cell)) == cell
    assert RecurrentTokens(11).vocab_size == 16 and not scheme.symmetric
    # node l reads one of nodes 0..l-1 (tokens 1..l); activations 9..12
    assert scheme.ranges()[:6] == [range(1, 2), range(9, 13), range(1, 3), range(9, 13), range(1, 4), range(9, 13)]
    assert scheme.augment(scheme.encode(cell), random.Random(0)) == scheme.encode(cell)


def test_macro_tokens_round_trip_the_authors_final_arch(macro_final):
    scheme = scheme_for_arch(macro_final)
    assert scheme == MacroTokens(24) and scheme.length == 300
    assert scheme.decode(scheme.encode(macro_final)) == macro_final


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_every_in_range_sequence_decodes_and_round_trips(scheme):
    rng = random.Random(0)
    for _ in range(200):
        tokens = random_valid_tokens(scheme, rng)
        arch = scheme.decode(tokens)  # never raises: the ranges are the whole constraint
        assert scheme.encode(arch) == tokens
    for _ in range(50):
        arch = sample(scheme, rng)
        tokens = scheme.encode(arch)
        assert len(tokens) == scheme.length
        assert all(t in scheme.allowed(p) for p, t in enumerate(tokens))
        assert scheme.decode(tokens) == arch


@pytest.mark.parametrize("scheme", [MicroTokens(3), MacroTokens(4), RecurrentTokens(4)], ids=str)
def test_out_of_range_token_is_refused_with_its_position(scheme):
    tokens = scheme.encode(sample(scheme, random.Random(1)))
    position = scheme.length - 1
    bad = list(tokens)
    bad[position] = scheme.allowed(position).stop  # one past the range
    with pytest.raises(EncodingError) as err:
        scheme.decode(bad)
    assert err.value.position == position + 1
    with pytest.raises(EncodingError, match=f"expected {scheme.length}"):
        scheme.decode(tokens[:-1])


def test_micro_augmentation_swaps_one_node_per_cell_into_an_equivalent_arch():
    scheme = MicroTokens(5)
    rng = random.Random(3)
    changed = 0
    for _ in range(100):
        arch = MicroArch.sample(rng)
        tokens = scheme.encode(arch)
        swapped = scheme.augment(tokens, rng)
        other = scheme.decode(swapped)
        assert other.equivalent(arch)
        assert scheme.canonical(swapped) == scheme.canonical(tokens) == tuple(scheme.encode(arch.canonical()))
        diff = [p for p in range(40) if swapped[p] != tokens[p]]
        # at most one node (4 tokens) per cell moved, and its tokens are the branches exchanged
        assert len({p // 4 for p in diff if p < 20}) <= 1 and len({p // 4 for p in diff if p >= 20}) <= 1
        for p in diff:
            first = p - p % 4
            assert swapped[first : first + 4] == tokens[first + 2 : first + 4] + tokens[first : first + 2]
        changed += bool(diff)
    assert changed > 80  # a node whose two branches are equal is the only no-op


def test_macro_has_no_symmetry():
    scheme = MacroTokens(5)
    tokens = scheme.encode(MacroArch.sample(0, num_layers=5))
    assert scheme.augment(tokens, random.Random(0)) == tokens
    assert scheme.canonical(tokens) == tuple(tokens)


def test_schemes_are_built_from_a_config_or_an_arch(micro_final):
    assert set(TOKEN_SCHEMES) == {"micro", "macro", "rnn"}
    assert build_token_scheme(SimpleNamespace(space="micro", num_blocks=4, layers=6)) == MicroTokens(4)
    assert build_token_scheme(SimpleNamespace(space="macro", num_blocks=4, layers=6)) == MacroTokens(6)
    assert build_token_scheme(SimpleNamespace(space="rnn", num_nodes=8)) == RecurrentTokens(8)
    assert scheme_for_arch(micro_final) == MicroTokens(5)
    with pytest.raises(EnasError, match="supported spaces: micro, macro, rnn"):
        build_token_scheme(SimpleNamespace(space="conv"))


def test_sizes_and_archs_that_do_not_fit_are_refused():
    with pytest.raises(EnasError, match="num_blocks must be 1..5"):
        MicroTokens(6)
    with pytest.raises(EnasError, match="num_layers must be >= 1"):
        MacroTokens(0)
    with pytest.raises(EncodingError, match="5 blocks per cell, found a micro architecture of 2"):
        MicroTokens(5).encode(MicroArch.sample(0, num_blocks=2))
    with pytest.raises(EncodingError, match="found a macro"):
        MicroTokens(5).encode(MacroArch.sample(0, num_layers=3))
    with pytest.raises(EnasError, match="num_nodes must be 1..64"):
        RecurrentTokens(0)
    with pytest.raises(EncodingError, match="rnn cell of 8 nodes, found an rnn cell of 3 nodes"):
        RecurrentTokens(8).encode(RecurrentArch.sample(0, num_nodes=3))
