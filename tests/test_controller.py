"""The ENAS controllers: sampling, teacher forcing, entropy, skip penalty, REINFORCE."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from enastool.config import resolve_search_config
from enastool.encoding import MacroArch, MacroLayer, MacroOp, MicroArch, MicroOp
from enastool.errors import EnasError
from enastool.search.controller import MacroController, MicroController, build_controller
from enastool.search.strategies import EnasStrategy


def macro(num_layers=5, **settings):
    torch.manual_seed(0)
    return MacroController(num_layers=num_layers, **settings)


def micro(num_blocks=3, **settings):
    torch.manual_seed(0)
    return MicroController(num_blocks=num_blocks, tanh_constant=1.1, op_tanh_reduce=2.5, **settings)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def max_entropy(arch) -> float:
    """The entropy of the uniform policy over the arch's space (every decision uniform)."""
    if isinstance(arch, MacroArch):
        return sum(math.log(MacroOp.count()) + k * math.log(2) for k in range(arch.num_layers))
    per_cell = sum(2 * math.log(j + 2) + 2 * math.log(MicroOp.count()) for j in range(arch.num_blocks))
    return 2 * per_cell


@pytest.mark.parametrize("make", [macro, micro], ids=["macro", "micro"])
def test_teacher_forcing_recomputes_the_sampled_log_prob_and_entropy(make):
    controller = make()
    gen = generator(1)
    for _ in range(5):
        sample = controller.sample(gen)
        log_prob, entropy = controller.log_prob(sample.arch)
        assert torch.allclose(log_prob, sample.log_prob, atol=1e-6)
        assert torch.allclose(entropy, sample.entropy, atol=1e-6)
        assert sample.log_prob.item() < 0
        # Gradients reach the weights through the recomputed log-probability.
        controller.zero_grad()
        log_prob.backward()
        assert controller.op_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("make", [macro, micro], ids=["macro", "micro"])
def test_samples_are_valid_architectures_with_tokens_in_range(make):
    controller = make()
    gen = generator(2)
    space = MacroArch if isinstance(controller, MacroController) else MicroArch
    seen = set()
    for _ in range(20):
        arch = controller.sample(gen).arch
        assert isinstance(arch, space)
        assert space.from_ints(arch.to_ints()) == arch  # validates every id, bit and index
        seen.add(arch)
        if space is MacroArch:
            assert arch.num_layers == controller.num_layers
            assert all(0 <= layer.op.enas_id < MacroOp.count() for layer in arch.layers)
        else:
            assert arch.num_blocks == controller.num_blocks
    assert len(seen) > 15  # a fresh controller is close to uniform


def test_op_heads_follow_the_op_enums():
    assert macro().op_head.out_features == MacroOp.count()
    assert micro().op_head.out_features == MicroOp.count()
    assert macro().op_embedding.num_embeddings == MacroOp.count()


@pytest.mark.parametrize("make", [macro, micro], ids=["macro", "micro"])
def test_entropy_is_positive_and_close_to_uniform_at_initialisation(make):
    controller = make()
    sample = controller.sample(generator(3))
    bound = max_entropy(sample.arch)
    # Weights start in +-0.1, so the squashed logits are small: nearly uniform decisions.
    assert 0.95 * bound < sample.entropy.item() <= bound + 1e-4


def test_macro_probabilities_sum_to_one_over_the_whole_space():
    controller = macro(num_layers=2)
    total = torch.zeros((), dtype=torch.float64)
    for op0, op1, bit in itertools.product(MacroOp, MacroOp, (0, 1)):
        arch = MacroArch((MacroLayer(op0, ()), MacroLayer(op1, (bit,))))
        total += controller.log_prob(arch)[0].double().exp()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


def test_sampling_is_reproducible_from_the_generator_seed():
    controller = micro()
    first = [controller.sample(generator(7)).arch for _ in range(3)]
    again = [controller.sample(generator(7)).arch for _ in range(3)]
    assert first == again
    assert controller.sample(generator(8)).arch != first[0]  # ~uniform over ~10^9 architectures


def test_the_reduction_cell_is_conditioned_on_the_normal_cell():
    """The reduction cell continues the LSTM state: log P(reduce | normal) depends on normal."""
    controller = micro(num_blocks=2)
    gen = generator(4)
    (n1, r1), (n2, r2) = [(s.arch.normal, s.arch.reduce) for s in (controller.sample(gen), controller.sample(gen))]

    def lp(normal, reduce):
        return controller.log_prob(MicroArch(normal, reduce))[0].item()

    assert lp(n1, r1) - lp(n1, r2) != pytest.approx(lp(n2, r1) - lp(n2, r2), abs=1e-6)


def test_controllers_refuse_architectures_of_another_space_or_size():
    with pytest.raises(EnasError, match="5-layer macro"):
        macro(num_layers=5).log_prob(MacroArch.sample(0, num_layers=4))
    with pytest.raises(EnasError, match="3 blocks"):
        micro(num_blocks=3).log_prob(MicroArch.sample(0, num_blocks=5))
    with pytest.raises(EnasError, match="micro controller"):
        micro().log_prob(MacroArch.sample(0, num_layers=3))


def expected_skip_rate(controller, samples=200) -> float:
    gen = generator(11)
    with torch.no_grad():
        return sum(controller.sample(gen).arch.skip_density for _ in range(samples)) / samples


@pytest.mark.parametrize("target", [0.1, 0.9])
def test_the_skip_penalty_alone_moves_the_skip_rate_toward_the_target(target):
    controller = macro(num_layers=6, skip_target=target)
    before = expected_skip_rate(controller)
    assert before == pytest.approx(0.5, abs=0.1)
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.05)
    gen = generator(5)
    for _ in range(40):
        loss = torch.stack([controller.sample(gen).skip_penalty for _ in range(4)]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = expected_skip_rate(controller)
    assert abs(after - target) < abs(before - target) / 2


def test_the_skip_penalty_is_zero_when_the_rate_meets_the_target():
    controller = macro(num_layers=4, skip_target=0.5)
    with torch.no_grad():
        for layer in (controller.attn_score,):
            layer.weight.zero_()  # every skip score 0: probability exactly 0.5
    assert controller.sample(generator()).skip_penalty.item() == pytest.approx(0.0, abs=1e-7)


def config_for(space, **overrides):
    settings = dict(controller_samples=8, controller_lr=0.02, entropy_weight=0.0, seed=3)
    settings.update(overrides)
    return resolve_search_config("smoke", space, overrides=settings)


class RewardTask:
    """Stands in for a search task: rewards an architecture with ``reward_of(arch)``."""

    def __init__(self, reward_of):
        self.reward = reward_of

    def reward_figures(self, rewards):
        return {"valid_acc": sum(rewards) / len(rewards)}


def frequency(strategy, predicate, samples=200) -> float:
    gen = generator(12)
    with torch.no_grad():
        return sum(predicate(strategy.controller.sample(gen).arch) for _ in range(samples)) / samples


@pytest.mark.parametrize(
    "space, predicate",
    [
        ("macro", lambda arch: arch.layers[0].op is MacroOp.SEP5),
        ("micro", lambda arch: arch.normal.blocks[1].index1 == 2),
    ],
    ids=["macro-layer0-sep5", "micro-node3-reads-node2"],
)
def test_reinforce_raises_the_probability_of_rewarded_decisions(space, predicate):
    strategy = EnasStrategy(config_for(space), torch.device("cpu"))
    before = frequency(strategy, predicate)

    def reward_of(arch):
        return torch.tensor(1.0 if predicate(arch) else 0.0)

    for _ in range(25):
        figures = strategy.update(RewardTask(reward_of))
    after = frequency(strategy, predicate)
    assert before < 0.35 and after > 0.6, (before, after)
    assert set(figures) >= {"reward", "valid_acc", "baseline", "entropy", "controller_loss", "arch"}
    assert 0.0 <= figures["baseline"] <= 1.0


def test_the_baseline_starts_at_the_first_reward_and_decays_toward_the_rewards():
    strategy = EnasStrategy(config_for("macro", controller_samples=1, baseline_decay=0.9), torch.device("cpu"))
    strategy.update(RewardTask(lambda arch: torch.tensor(0.5)))
    assert strategy.baseline == pytest.approx(0.5)
    strategy.update(RewardTask(lambda arch: torch.tensor(1.0)))
    assert strategy.baseline == pytest.approx(0.9 * 0.5 + 0.1 * 1.0)


def test_the_op_tanh_constant_bounds_how_likely_one_op_can_get():
    """Micro op logits live in +-1.1/2.5: no op can pass e^.44 / (e^.44 + 4 e^-.44) ~ 0.375."""
    controller = micro()
    with torch.no_grad():  # saturate the tanh: op 0 as likely as it gets, the others least
        controller.op_head.weight.fill_(-100.0)
        controller.op_head.weight[0].fill_(100.0)
    bound = math.exp(0.44) / (math.exp(0.44) + 4 * math.exp(-0.44))
    probabilities = controller._op_logits(torch.ones(1, controller.lstm_size)).softmax(-1)
    assert probabilities[0].item() == pytest.approx(bound, rel=1e-5)


def test_build_controller_follows_the_config():
    controller = build_controller(config_for("micro", lstm_size=16, num_blocks=4))
    assert isinstance(controller, MicroController) and controller.num_blocks == 4
    assert controller.lstm[0].hidden_size == 16
    assert controller.op_tanh_constant == pytest.approx(1.1 / 2.5)
    macro_controller = build_controller(config_for("macro", layers=6))
    assert isinstance(macro_controller, MacroController) and macro_controller.num_layers == 6
