"""The recurrent (rnn) controller: valid cells, teacher forcing, the distance prior, REINFORCE."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from enastool.encoding import Activation, MicroArch, RecurrentArch
from enastool.errors import EnasError
from enastool.search.controller import (
    CONTROLLERS,
    DISTANCE_PRIOR,
    INPUT_DISTANCE_OFFSET,
    RNN_PARAM_INIT_RANGE,
    RNN_TANH_CONSTANT,
    RNN_TEMPERATURE,
    RecurrentController,
    build_controller,
)

NODES = 5


def rnn(num_nodes=NODES, **settings):
    torch.manual_seed(0)
    return RecurrentController(num_nodes=num_nodes, **settings)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def prior_log_probs(l: int, divisor: float = DISTANCE_PRIOR) -> torch.Tensor:
    """log softmax over j = 0..l-1 of -(l - j)^2 / divisor, in double precision."""
    j = torch.arange(l, dtype=torch.double)
    return torch.log_softmax(-((l - j) ** 2) / divisor, dim=0)


def flatten_decisions(controller):
    """Make every attention score and every activation logit exactly 0: only the prior is left."""
    with torch.no_grad():
        controller.attn_score.weight.zero_()
        controller.op_embedding.weight.zero_()  # also the activation head (tied)


def test_samples_are_valid_cells_of_n_nodes():
    controller = rnn()
    gen = generator(2)
    seen = set()
    for _ in range(30):
        arch = controller.sample(gen).arch
        assert isinstance(arch, RecurrentArch) and arch.num_nodes == NODES
        assert RecurrentArch.from_ints(arch.to_ints()) == arch  # validates every index and id
        seen.add(arch)
    assert len(seen) > 25


def test_teacher_forcing_recomputes_the_sampled_log_prob_and_entropy():
    controller = rnn()
    gen = generator(1)
    for _ in range(5):
        sample = controller.sample(gen)
        log_prob, entropy = controller.log_prob(sample.arch)
        assert torch.allclose(log_prob, sample.log_prob, atol=1e-6)
        assert torch.allclose(entropy, sample.entropy, atol=1e-6)
        assert sample.log_prob.item() < 0 and sample.skip_penalty.item() == 0.0
        controller.zero_grad()
        log_prob.backward()
        for name in ("op_embedding", "attn_score", "attn_anchor", "attn_query"):
            assert getattr(controller, name).weight.grad.abs().sum() > 0, name


def test_with_flat_scores_the_policy_is_exactly_the_distance_prior_and_uniform_activations():
    controller = rnn()
    flatten_decisions(controller)
    sample = controller.sample(generator(3))
    expected_lp = sum(prior_log_probs(l)[n.prev] for l, n in enumerate(sample.arch.nodes, 1))
    expected_lp += NODES * math.log(1 / Activation.count())
    expected_entropy = sum(-(p.exp() * p).sum() for p in map(prior_log_probs, range(1, NODES + 1)))
    expected_entropy += NODES * math.log(Activation.count())
    assert sample.log_prob.item() == pytest.approx(float(expected_lp), abs=1e-5)
    assert sample.entropy.item() == pytest.approx(float(expected_entropy), abs=1e-5)


def prev_index_histogram(controller, samples=300):
    """Over nodes l >= 3: how often a node reads its predecessor, and how often node 0."""
    gen = generator(11)
    near = far = 0
    with torch.no_grad():
        for _ in range(samples):
            for l, node in enumerate(controller.sample(gen).arch.nodes, 1):
                if l >= 3:
                    near += node.prev == l - 1
                    far += node.prev == 0
    return near, far


def test_the_distance_prior_makes_near_prev_indices_more_likely_at_initialisation():
    near, far = prev_index_histogram(rnn())
    assert near > 3 * far  # node 3 alone: p(2) = 0.57 vs p(0) = 0.13 from the prior
    near, far = prev_index_histogram(rnn(distance_prior=0.0))  # no prior: about uniform
    assert 0.75 < near / far < 1.33


def test_the_next_input_is_the_chosen_anchor_divided_by_its_distance():
    controller = rnn()
    calls = []
    controller.lstm[0].register_forward_hook(lambda m, inp, out: calls.append((inp[0].detach(), out[0].detach())))
    arch = controller.sample(generator(4)).arch
    assert len(calls) == 2 * NODES  # per node: the prev-index step, then the activation step
    anchors = [torch.zeros(1, controller.lstm_size)] + [calls[2 * (l - 1)][1] for l in range(1, NODES + 1)]
    for l, node in enumerate(arch.nodes, 1):
        given = calls[2 * l - 1][0]  # the input of node l's activation step
        expected = anchors[node.prev] / (INPUT_DISTANCE_OFFSET + l - node.prev)
        assert torch.allclose(given, expected, atol=1e-7), (l, node.prev)
        if l < NODES:  # the next node's first input is this node's activation embedding
            act = node.activation.enas_id
            assert torch.equal(calls[2 * l][0], controller.op_embedding.weight[act : act + 1].detach())


def test_reinforce_raises_the_probability_of_rewarded_decisions():
    controller = rnn()
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.05)

    def rewarded(arch):
        return arch.nodes[1].activation is Activation.SIGMOID

    def frequency():
        gen = generator(12)
        with torch.no_grad():
            return sum(rewarded(controller.sample(gen).arch) for _ in range(100)) / 100

    before = frequency()
    gen, baseline = generator(5), None
    for _ in range(20):
        samples = [controller.sample(gen) for _ in range(6)]
        rewards = torch.tensor([float(rewarded(s.arch)) for s in samples])
        baseline = rewards.mean() if baseline is None else 0.9 * baseline + 0.1 * rewards.mean()
        loss = -torch.stack([(r - baseline) * s.log_prob for r, s in zip(rewards, samples)]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = frequency()
    assert before < 0.35 and after > 0.7, (before, after)


def test_the_tanh_constant_bounds_how_likely_one_activation_can_get():
    controller = rnn()
    with torch.no_grad():  # saturate the tanh: sigmoid as likely as it gets
        controller.op_embedding.weight.fill_(-100.0)
        controller.op_embedding.weight[Activation.SIGMOID.enas_id].fill_(100.0)
    c = RNN_TANH_CONSTANT
    bound = math.exp(c) / (math.exp(c) + 3 * math.exp(-c))
    probabilities = controller._op_logits(torch.ones(1, controller.lstm_size)).softmax(-1)
    assert probabilities[Activation.SIGMOID.enas_id].item() == pytest.approx(bound, rel=1e-5)


def test_defaults_are_the_authors_recurrent_settings():
    controller = rnn()
    assert controller.temperature == RNN_TEMPERATURE == 5.0
    assert controller.tanh_constant == controller.op_tanh_constant == RNN_TANH_CONSTANT == 2.25
    assert controller.distance_prior == DISTANCE_PRIOR == 6.0
    assert controller.op_head.weight is controller.op_embedding.weight  # one matrix, as enas_lm
    assert controller.op_head.out_features == Activation.count()
    values = torch.cat([p.detach().flatten() for p in controller.parameters()])
    assert 0.9 * RNN_PARAM_INIT_RANGE < values.abs().max() <= RNN_PARAM_INIT_RANGE
    assert RecurrentController().num_nodes == 8  # the published cell's size


def test_sampling_is_reproducible_from_the_generator_seed():
    controller = rnn()
    first = [controller.sample(generator(7)).arch for _ in range(3)]
    assert first == [controller.sample(generator(7)).arch for _ in range(3)]
    assert controller.sample(generator(8)).arch != first[0]


def test_the_controller_refuses_cells_of_another_size_or_space():
    with pytest.raises(EnasError, match="rnn cell of 5 nodes, found an rnn cell of 4 nodes"):
        rnn().log_prob(RecurrentArch.sample(0, 4))
    with pytest.raises(EnasError, match="rnn controller"):
        rnn().log_prob(MicroArch.sample(0, 2))
    with pytest.raises(EnasError, match="distance_prior"):
        rnn(distance_prior=-1.0)
    with pytest.raises(EnasError, match="num_nodes"):
        rnn(num_nodes=0)


def search_config(**fields):
    """The fields a search config has today; num_nodes and distance_prior are not among them."""
    base = dict(space="rnn", lstm_size=16, lstm_layers=1, tanh_constant=2.25, op_tanh_reduce=1.0, temperature=5.0)
    return SimpleNamespace(**{**base, **fields})


def test_build_controller_reads_the_config_and_defaults_the_fields_it_may_lack():
    assert CONTROLLERS["rnn"] is RecurrentController
    controller = build_controller(search_config())
    assert isinstance(controller, RecurrentController)
    assert controller.num_nodes == 8 and controller.distance_prior == DISTANCE_PRIOR
    assert controller.lstm[0].hidden_size == 16
    controller = build_controller(search_config(num_nodes=3, distance_prior=2.0, temperature=1.0))
    assert controller.num_nodes == 3 and controller.distance_prior == 2.0 and controller.temperature == 1.0
