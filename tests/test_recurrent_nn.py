"""Recurrent language models of the rnn space: the sampled cell is the cell run."""

import pytest
import torch
import torch.nn.functional as F

from enastool.encoding import Activation, RecurrentArch, RecurrentNode
from enastool.errors import EnasError
from enastool.nn.counting import count_params
from enastool.nn.recurrent import (
    ACTIVATION_FUNCTIONS,
    FINAL_DROP_RATES,
    NO_DROPOUT,
    SEARCH_DROP_RATES,
    DropoutMasks,
    DropRates,
    RecurrentNet,
    RecurrentSupernet,
    activation_penalty,
    cell_step,
    recurrent_counts,
)

VOCAB = 11
HIDDEN = 4
NODES = 3
BATCH = 2
STEPS = 5
EVERY_DROPOUT = DropRates(words=0.3, embedding=0.2, inputs=0.4, hidden=0.25, output=0.5, weights=0.3)
# The published ENAS cell and the DARTS cell as enas_lm's README gives them (reference sec. 8).
ENAS_CELL = RecurrentArch.from_ints([0, 2, 1, 0, 2, 1, 2, 2, 4, 0, 5, 0, 3, 2, 6, 2])
DARTS_CELL = RecurrentArch.from_ints([0, 2, 1, 1, 1, 1, 1, 3, 2, 0, 5, 2, 3, 0, 5, 1])

# Written out independently of the library's table, so the reference below checks it.
REFERENCE_FUNCTIONS = {
    "tanh": lambda h: (h.exp() - (-h).exp()) / (h.exp() + (-h).exp()),
    "relu": lambda h: h.clamp(min=0),
    "sigmoid": lambda h: 1 / (1 + (-h).exp()),
    "identity": lambda h: h,
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def cell(*pairs) -> RecurrentArch:
    return RecurrentArch(tuple(RecurrentNode(prev, act) for prev, act in pairs))


# node 1 reads 0 (relu), node 2 reads 0 (sigmoid), node 3 reads 1 (identity)
CELL = cell((0, Activation.RELU), (0, Activation.SIGMOID), (1, Activation.IDENTITY))


def tokens(batch=BATCH, steps=STEPS, seed=1):
    return torch.randint(0, VOCAB, (batch, steps), generator=torch.Generator().manual_seed(seed))


def supernet(drop=NO_DROPOUT, **kw):
    return RecurrentSupernet(VOCAB, num_nodes=NODES, hidden=HIDDEN, drop=drop, **kw).double()


def final(arch=CELL, drop=NO_DROPOUT, **kw):
    return RecurrentNet(arch, VOCAB, hidden=HIDDEN, drop=drop, **kw).double()


def reference_lm(x_ids, state, embedding, w0, nodes, masks=None):
    """The cell of reference sec. 8 step by step, as written there: node 0 is
    ``[x * mask_x, s * mask_l] @ W0``; ``nodes`` is a list of (prev, activation name, W)."""
    batch, steps = x_ids.shape
    one = torch.ones(batch, HIDDEN, dtype=w0.dtype)
    m = masks or DropoutMasks(None, None, None, None, None, None)
    words = m.words if m.words is not None else torch.ones(VOCAB, dtype=w0.dtype)
    emb_mask = m.embedding if m.embedding is not None else one
    mask_x = m.inputs if m.inputs is not None else one
    mask_l = m.hidden if m.hidden is not None else one
    out_mask = m.output if m.output is not None else one
    if m.weights is not None:
        w0 = torch.cat([w0[:HIDDEN], w0[HIDDEN:] * m.weights[0]])
        nodes = [(p, f, w * wm) for (p, f, w), wm in zip(nodes, m.weights[1:])]
    s = state
    logits, outputs = [], []
    for t in range(steps):
        ids = x_ids[:, t]
        x = embedding[ids] * words[ids][:, None] * emb_mask
        ht = torch.cat([x * mask_x, s * mask_l], dim=1) @ w0
        h, g = ht[:, :HIDDEN], ht[:, HIDDEN:]
        states = [s + torch.sigmoid(g) * (torch.tanh(h) - s)]
        for prev, name, w in nodes:
            sp = states[prev]
            ht = (sp * mask_l) @ w
            h, g = ht[:, :HIDDEN], ht[:, HIDDEN:]
            states.append(sp + torch.sigmoid(g) * (REFERENCE_FUNCTIONS[name](h) - sp))
        s = sum(states[1:]) / len(nodes)
        outputs.append(s)
        logits.append((s * out_mask) @ embedding.T)
    return torch.stack(logits, 1), s, torch.stack(outputs, 1)


def supernet_reference(net, arch, x_ids, state, masks=None):
    nodes = [(n.prev, n.activation.short, net.weight(l, n.activation, n.prev)) for l, n in enumerate(arch.nodes, 1)]
    return reference_lm(x_ids, state, net.embedding.weight, net.w0, nodes, masks)


def all_matrices(net):
    """(node, activation, prev) of every matrix of a supernet."""
    return [(l, act, prev) for l in range(1, net.num_nodes + 1) for act in Activation for prev in range(l)]


def used(arch):
    return {(l, n.activation, n.prev) for l, n in enumerate(arch.nodes, 1)}


# ----------------------------------------------------------------- the cell run is the cell sampled
@pytest.mark.parametrize("seed", range(4))
def test_supernet_eval_equals_the_hand_written_cell(seed):
    net = supernet(SEARCH_DROP_RATES).eval()
    arch = RecurrentArch.sample(seed, NODES)
    x = tokens(seed=seed)
    state = torch.randn(BATCH, HIDDEN, dtype=torch.double)
    out = net(x, arch, state)
    ref_logits, ref_state, ref_outputs = supernet_reference(net, arch, x, state)
    assert out.logits.shape == (BATCH, STEPS, VOCAB)
    assert torch.allclose(out.logits, ref_logits, atol=1e-12)
    assert torch.allclose(out.state, ref_state, atol=1e-12)
    assert torch.allclose(out.outputs, ref_outputs, atol=1e-12)


def test_supernet_training_with_masks_equals_the_hand_written_cell_with_the_same_masks():
    net = supernet(EVERY_DROPOUT).train()
    x = tokens()
    masks = net.draw_masks(BATCH, torch.Generator().manual_seed(3))
    assert all(m is not None for m in masks)  # every kind of dropout is exercised
    out = net(x, CELL, masks=masks)
    ref_logits, ref_state, ref_outputs = supernet_reference(net, CELL, x, torch.zeros(BATCH, HIDDEN).double(), masks)
    assert torch.allclose(out.logits, ref_logits, atol=1e-12)
    assert torch.allclose(out.state, ref_state, atol=1e-12)
    assert torch.allclose(out.outputs, ref_outputs, atol=1e-12)


def test_every_activation_of_the_enum_has_a_function_and_they_match_the_reference():
    h = torch.linspace(-3, 3, 13, dtype=torch.double)
    assert set(ACTIVATION_FUNCTIONS) == set(Activation)
    for act, fn in ACTIVATION_FUNCTIONS.items():
        assert torch.allclose(fn(h), REFERENCE_FUNCTIONS[act.short](h), atol=1e-12), act


def test_changing_a_matrix_the_cell_does_not_use_changes_nothing():
    net = supernet().eval()
    x = tokens()
    before = net(x, CELL).logits
    with torch.no_grad():
        for key in all_matrices(net):
            if key not in used(CELL):
                net.weight(*key).normal_()
    assert torch.equal(net(x, CELL).logits, before)
    with torch.no_grad():
        net.weight(3, Activation.IDENTITY, 1).normal_()  # one the cell uses
    assert not torch.allclose(net(x, CELL).logits, before)


@pytest.mark.parametrize("act", list(Activation), ids=lambda a: a.short)
def test_supernet_grads_reach_exactly_the_used_matrices(act):
    net = supernet(EVERY_DROPOUT).train()
    arch = cell((0, act), (1, act), (1, act))
    out = net(tokens(), arch)
    loss = F.cross_entropy(out.logits.reshape(-1, VOCAB), tokens(seed=2).reshape(-1))
    loss = loss + 1e-3 * net.l2_penalty(arch) + activation_penalty(out.outputs, alpha=0.5, beta=1.0)
    loss.backward()
    assert net.w0.grad.abs().sum() > 0 and net.embedding.weight.grad.abs().sum() > 0
    for key in all_matrices(net):
        grad = net.weight(*key).grad
        if key in used(arch):
            assert grad is not None and grad.abs().sum() > 0, key
        else:
            assert grad is None, key


def test_sampled_activation_and_prev_index_each_change_the_output():
    net = supernet().eval()
    x = tokens()
    base = net(x, CELL).logits
    other_act = cell((0, Activation.RELU), (0, Activation.TANH), (1, Activation.IDENTITY))
    other_prev = cell((0, Activation.RELU), (1, Activation.SIGMOID), (1, Activation.IDENTITY))
    assert not torch.allclose(net(x, other_act).logits, base)
    assert not torch.allclose(net(x, other_prev).logits, base)


# ----------------------------------------------------------------- masks
def test_masks_have_no_time_axis_and_whole_words_are_dropped():
    net = supernet(EVERY_DROPOUT)
    masks = net.draw_masks(BATCH)
    assert masks.words.shape == (VOCAB,)
    for m in (masks.embedding, masks.inputs, masks.hidden, masks.output):
        assert m.shape == (BATCH, HIDDEN)
    assert len(masks.weights) == NODES + 1 and all(w.shape == (HIDDEN, 2 * HIDDEN) for w in masks.weights)
    # Kept values are scaled by 1 / (1 - rate): the expectation is unchanged.
    assert set(masks.words.unique().tolist()) <= {0.0, 1 / (1 - EVERY_DROPOUT.words)}
    assert supernet(NO_DROPOUT).draw_masks(BATCH) == DropoutMasks(None, None, None, None, None, None)


def test_one_output_mask_is_drawn_per_window_and_used_at_every_step():
    drop = DropRates(output=0.5)
    net = supernet(drop).train()
    x = tokens()
    out = net(x, CELL, generator=torch.Generator().manual_seed(5))
    mask = net.draw_masks(BATCH, torch.Generator().manual_seed(5)).output  # the same draw
    assert mask.shape == (BATCH, HIDDEN) and (mask == 0).any()
    assert torch.allclose(out.logits, (out.outputs * mask[:, None]) @ net.embedding.weight.T, atol=1e-12)
    # The undropped outputs are those of eval mode (no other dropout is on).
    assert torch.allclose(out.outputs, net.eval()(x, CELL).outputs, atol=1e-12)


def test_masks_differ_between_windows_and_follow_the_generator():
    net = supernet(SEARCH_DROP_RATES).train()
    x = tokens()
    first, second = net(x, CELL).logits, net(x, CELL).logits
    assert not torch.allclose(first, second)  # a fresh set of masks per window
    again = [net(x, CELL, generator=torch.Generator().manual_seed(9)).logits for _ in range(2)]
    assert torch.equal(again[0], again[1])  # the masks are the only randomness


def test_eval_mode_is_deterministic_and_uses_no_dropout():
    net = supernet(SEARCH_DROP_RATES)
    x = tokens()
    train = net.train()(x, CELL).logits
    net.eval()
    a, b = net(x, CELL), net(x, CELL)
    assert torch.equal(a.logits, b.logits) and not torch.allclose(a.logits, train)
    reference = supernet_reference(net, CELL, x, torch.zeros(BATCH, HIDDEN).double())[0]
    assert torch.allclose(a.logits, reference, atol=1e-12)


def test_the_state_carries_a_sequence_across_windows():
    net = supernet().eval()
    x = tokens(steps=6)
    whole = net(x, CELL)
    first = net(x[:, :4], CELL)
    second = net(x[:, 4:], CELL, state=first.state.detach())
    assert torch.allclose(torch.cat([first.logits, second.logits], 1), whole.logits, atol=1e-12)
    assert torch.allclose(second.state, whole.state, atol=1e-12)


def test_every_time_step_goes_through_the_replaceable_step_function():
    """``net.step`` is where a compiled cell_step goes: one call per time step, same result."""
    net = supernet().eval()
    x = tokens()
    plain = net(x, CELL).logits
    calls = []

    def counting_step(*args):
        calls.append(args[1].shape)
        return cell_step(*args)

    net.step = counting_step
    assert torch.equal(net(x, CELL).logits, plain)
    assert calls == [(BATCH, HIDDEN)] * STEPS


# ----------------------------------------------------------------- final network
def copy_cell_into_final(net: RecurrentSupernet, arch) -> RecurrentNet:
    fin = final(arch, drop=net.drop)
    with torch.no_grad():
        fin.embedding.weight.copy_(net.embedding.weight)
        fin.w0.copy_(net.w0)
        for l, n in enumerate(arch.nodes, 1):
            fin.node_weights[l - 1].copy_(net.weight(l, n.activation, n.prev))
    return fin


@pytest.mark.parametrize("seed", range(3))
def test_final_network_with_the_supernets_chosen_matrices_gives_the_same_outputs(seed):
    net = supernet(EVERY_DROPOUT)
    arch = RecurrentArch.sample(seed, NODES)
    fin = copy_cell_into_final(net, arch)
    x = tokens(seed=seed)
    state = torch.randn(BATCH, HIDDEN, dtype=torch.double)
    for a, b in zip(net.eval()(x, arch, state), fin.eval()(x, state)):
        assert torch.equal(a, b)
    masks = net.draw_masks(BATCH)
    for a, b in zip(net.train()(x, arch, state, masks=masks), fin.train()(x, state, masks=masks)):
        assert torch.equal(a, b)


def test_final_network_trains_every_parameter():
    fin = final(drop=FINAL_DROP_RATES).train()
    out = fin(tokens())
    (F.cross_entropy(out.logits.reshape(-1, VOCAB), tokens(seed=2).reshape(-1)) + 1e-3 * fin.l2_penalty()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fin.parameters())
    assert len(fin.node_weights) == NODES


# ----------------------------------------------------------------- regularisers
def test_supernet_l2_covers_w0_and_the_used_matrices_node_1_included_and_nothing_else():
    net = supernet()
    expected = net.w0.pow(2).sum() + sum(net.weight(*key).pow(2).sum() for key in used(CELL))
    assert torch.allclose(net.l2_penalty(CELL), expected, rtol=1e-12)
    assert any(w is net.weight(1, Activation.RELU, 0) for w in net.used_weights(CELL))
    assert all(w is not net.embedding.weight for w in net.used_weights(CELL))


def test_final_l2_covers_every_parameter_embedding_included():
    fin = final()
    expected = sum(p.pow(2).sum() for p in (fin.embedding.weight, fin.w0, *fin.node_weights))
    assert torch.allclose(fin.l2_penalty(), expected, rtol=1e-12)


def test_activation_penalty_is_alpha_l2_plus_beta_slowness():
    out = torch.tensor([[[1.0, 2.0], [3.0, 5.0]]], dtype=torch.double)  # batch 1, 2 steps, H 2
    assert activation_penalty(out, alpha=0.5).item() == pytest.approx(0.5 * (1 + 4 + 9 + 25) / 4)
    assert activation_penalty(out, beta=2.0).item() == pytest.approx(2.0 * (4 + 9) / 2)
    assert activation_penalty(out).item() == 0.0
    assert activation_penalty(out[:, :1], beta=1.0).item() == 0.0  # one step: no difference


# ----------------------------------------------------------------- sizes, init and counting
def test_supernet_holds_one_matrix_per_node_activation_and_prev_index():
    net = supernet()
    expected = VOCAB * HIDDEN + (2 * HIDDEN) ** 2 + sum(4 * l for l in range(1, NODES + 1)) * HIDDEN * 2 * HIDDEN
    assert count_params(net) == expected
    assert len({id(net.weight(*key)) for key in all_matrices(net)}) == 4 * (1 + 2 + 3)


def test_every_weight_starts_uniform_within_the_init_range():
    for net, limit in ((supernet(init_range=0.04), 0.04), (final(init_range=0.05), 0.05)):
        values = torch.cat([p.detach().flatten() for p in net.parameters()])
        assert values.abs().max() <= limit and values.abs().max() > 0.9 * limit


def test_parameter_count_of_the_published_cell_at_the_paper_size():
    """20.8M = 10k x 800 embedding (tied) + 1600 x 1600 (W0) + 8 x 800 x 1600. The paper says
    24M for its withdrawn first network; the same count at DARTS's H = 850 gives DARTS's 23M."""
    counts = recurrent_counts(ENAS_CELL, hidden=800, vocab_size=10_000)
    assert counts["params"] == 10_000 * 800 + 1600 * 1600 + 8 * 800 * 1600 == 20_800_000
    assert counts["flops"] == 2 * counts["params"]  # every weight is one multiply-add per token
    assert recurrent_counts(DARTS_CELL, hidden=850)["params"] == 22_950_000


def test_counts_are_those_of_the_real_module():
    assert recurrent_counts(CELL, hidden=HIDDEN, vocab_size=VOCAB)["params"] == count_params(final())


# ----------------------------------------------------------------- bad input
def test_networks_refuse_bad_architectures_shapes_and_rates():
    net = supernet()
    with pytest.raises(EnasError, match="3 nodes but the architecture has 2"):
        net(tokens(), RecurrentArch.sample(0, 2))
    with pytest.raises(EnasError, match="expected an rnn architecture"):
        net(tokens(), "0 1 0 1 0 1")
    with pytest.raises(EnasError, match=r"\[batch, time\]"):
        net(tokens()[0], CELL)
    with pytest.raises(EnasError, match="state must be"):
        net(tokens(), CELL, state=torch.zeros(BATCH, HIDDEN + 1, dtype=torch.double))
    with pytest.raises(EnasError, match="rate output"):
        DropRates(output=1.0)
    with pytest.raises(EnasError, match="rate words"):
        DropRates(words=-0.1)
    with pytest.raises(EnasError, match="init_range"):
        supernet(init_range=0.0)
