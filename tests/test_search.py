"""The search loop: every space x strategy, metrics, checkpoints, exact resume, derive."""

from __future__ import annotations

import json

import pytest
import torch

from enastool.config import resolve_search_config
from enastool.encoding import MacroArch, MicroArch, MicroOp
from enastool.errors import EnasError
from enastool.runs import RunDir
from enastool.search.derive import derive, score_architectures
from enastool.search.loop import SearchLoop, search
from enastool.search.strategies import OneShotStrategy
from helpers import Countdown

# The smoke preset shrunk further so that each run takes about a second on one CPU thread:
# 9 training steps per epoch (1,248 digits / 128) and one validation batch.
TINY = dict(
    device="cpu", dtype="float32", channels_last=False, channels=4, batch_size=128,
    epochs=1, controller_samples=2, controller_updates=2, log_every=3,
)
STEPS_PER_EPOCH = 1248 // 128
TIMING = ("images_per_s", "seconds", "wall_time")  # the only fields that may differ between equal runs


def tiny_config(space="macro", strategy="enas", **changes):
    return resolve_search_config("smoke", space, overrides={**TINY, "strategy": strategy, **changes})


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def state_of(run: RunDir) -> dict:
    return torch.load(run.checkpoint_path("last.pt"), weights_only=True)


def assert_same_tensors(a: dict, b: dict, where: str = "") -> None:
    assert a.keys() == b.keys(), where
    for key in a:
        if isinstance(a[key], dict):
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), f"{where}.{key} differs"
        else:
            assert a[key] == b[key], f"{where}.{key} differs"


# ------------------------------------------------------------------------ every combination
@pytest.mark.parametrize("strategy", ["enas", "random", "oneshot"])
@pytest.mark.parametrize("space", ["macro", "micro"])
def test_every_space_and_strategy_runs_the_smoke_preset_on_digits(tmp_path, space, strategy):
    config = tiny_config(space, strategy)
    assert config.dataset == "digits"
    run = RunDir.create(tmp_path / "run", config)
    events = []
    result = search(config, run, callback=events.append)
    assert result["interrupted"] is False
    assert (result["epoch"], result["step"]) == (1, STEPS_PER_EPOCH)
    assert result["controller_step"] == (2 if strategy == "enas" else 0)

    kinds = [e["kind"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "checkpoint" in kinds
    assert events[0]["total_steps"] == STEPS_PER_EPOCH and events[0]["strategy"] == strategy

    records = run.read_metrics()
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [3, 6, 9]
    for record in steps:
        assert {"step", "epoch", "loss", "acc", "lr", "images_per_s"} <= record.keys()
        assert record["loss"] > 0 and 0 <= record["acc"] <= 1 and record["lr"] <= config.lr_max
        if strategy == "oneshot":
            assert "arch" not in record and 0 < record["drop_rate"] <= config.oneshot_drop_max
        else:
            assert record["arch"].startswith(space + " ")
    (epoch,) = [r for r in records if r["kind"] == "epoch"]
    assert epoch["epoch"] == 1 and epoch["step"] == STEPS_PER_EPOCH
    assert 0 <= epoch["valid_acc"] <= 1
    controller = [r for r in records if r["kind"] == "controller"]
    if strategy == "enas":
        assert len(controller) == 2
        expected = {"reward", "baseline", "entropy", "controller_loss", "valid_acc", "arch", "controller_step"}
        assert expected <= controller[0].keys() and expected <= epoch.keys()
        assert ("skip_rate" in epoch) == (space == "macro")
        assert epoch["entropy"] > 0
    else:
        assert controller == []

    state = state_of(run)  # weights_only=True: plain data and tensors only
    assert state["step"] == STEPS_PER_EPOCH and state["space"] == space
    assert ("controller" in state["strategy"]) == (strategy == "enas")


# ------------------------------------------------------------------------ reproducibility
def test_same_seed_gives_the_same_architectures_and_losses(tmp_path):
    config = tiny_config("micro", "enas")
    runs = []
    for name in ("a", "b"):
        run = RunDir.create(tmp_path / name, config)
        search(config, run)
        runs.append(run)
    first, second = (without_timing(r.read_metrics()) for r in runs)
    assert first == second
    assert len({r["arch"] for r in first if r["kind"] == "step"}) > 1  # fresh children each log
    other = tiny_config("micro", "enas", seed=1)
    run = RunDir.create(tmp_path / "c", other)
    search(other, run)
    assert without_timing(run.read_metrics()) != first


@pytest.mark.parametrize("space", ["macro", "micro"])
def test_an_interrupted_and_resumed_search_ends_bitwise_equal_to_an_uninterrupted_one(tmp_path, space):
    config = tiny_config(space, "enas", epochs=2)
    straight = RunDir.create(tmp_path / "straight", config)
    search(config, straight)

    run = RunDir.create(tmp_path / "stopped", config)
    # Polls per epoch: 9 steps, 2 controller updates, 1 epoch end. Stop mid-epoch in the
    # shared steps, then after the first controller update, then right after the last
    # shared step of the second epoch; each stop resumes from its checkpoint.
    stops = [(5, 5, 0), (5, STEPS_PER_EPOCH, 1), (11, 2 * STEPS_PER_EPOCH, 2)]
    for number, (at, step, controller_step) in enumerate(stops):
        result = search(config, run, resume=number > 0, interrupt=Countdown(at))
        assert result["interrupted"] is True
        assert (result["step"], result["controller_step"]) == (step, controller_step)
    # A hard stop after the checkpoint would leave records from the future: resume drops them.
    run.log({"kind": "step", "step": 999, "loss": 0.0})
    run.log({"kind": "controller", "step": result["step"], "controller_step": 99})
    final = search(config, run, resume=True)
    assert final["interrupted"] is False and final["step"] == 2 * STEPS_PER_EPOCH

    last_step = [r for r in straight.read_metrics() if r["kind"] == "step"][-1]
    # A step record has its own figures, never the previous epoch's controller figures.
    assert not {"reward", "valid_acc", "baseline"} & last_step.keys()
    a, b = state_of(straight), state_of(run)
    for key in ("supernet", "optimizer", "strategy", "task", "progress"):
        assert_same_tensors(a[key], b[key], key)
    assert without_timing(straight.read_metrics()) == without_timing(run.read_metrics())
    # Every generator is seeded from the run seed (Python's and NumPy's too): the same bytes.
    assert (straight.path / "last.pt").read_bytes() == (run.path / "last.pt").read_bytes()


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    config = tiny_config("macro", "random")
    run = RunDir.create(tmp_path / "run", config)
    search(config, run)
    before = state_of(run)
    result = search(config, run, resume=True)
    assert result["interrupted"] is False and result["step"] == STEPS_PER_EPOCH
    assert_same_tensors(before["supernet"], state_of(run)["supernet"])


def test_resume_refuses_a_checkpoint_of_another_strategy(tmp_path):
    config = tiny_config("macro", "random")
    run = RunDir.create(tmp_path / "run", config)
    search(config, run)
    other = tiny_config("macro", "oneshot")
    with pytest.raises(EnasError, match="strategy_name is 'random', but the run's is 'oneshot'"):
        search(other, run, resume=True)


# ------------------------------------------------------------------------ refusals, clipping
def test_search_refuses_to_run_under_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    config = tiny_config()
    with pytest.raises(EnasError, match="one process.*without torchrun"):
        search(config, RunDir.create(tmp_path / "run", config))


def test_a_batch_larger_than_the_validation_split_is_refused(tmp_path):
    config = tiny_config(batch_size=200)  # digits hold out 181 validation images
    with pytest.raises(EnasError, match="181 validation images"):
        search(config, RunDir.create(tmp_path / "run", config))


def update_norm(tmp_path, name, grad_clip) -> tuple[float, float]:
    config = tiny_config("micro", "random", grad_clip=grad_clip, momentum=0.0, l2=0.0)
    loop = SearchLoop(config, RunDir.create(tmp_path / name, config))
    before = [p.detach().clone() for p in loop.params]
    loop._train_step(next(loop.task.train_batches()))
    change = torch.stack([(p.detach() - b).norm() for p, b in zip(loop.params, before)]).norm()
    return change.item(), loop.lr


def test_gradient_clipping_bounds_the_shared_weight_update(tmp_path):
    clip = 1e-3
    clipped, lr = update_norm(tmp_path, "clipped", clip)
    free, _ = update_norm(tmp_path, "free", 0.0)
    # Plain SGD: the step is lr x the clipped gradient. The 1% allows for the float32 rounding
    # of the stored weights, which is not small next to steps this tiny spread over every weight.
    assert 0 < clipped <= lr * clip * 1.01
    assert free > 10 * lr * clip


def test_oneshot_drop_rate_ramps_linearly_to_its_maximum():
    config = tiny_config(strategy="oneshot", epochs=10, oneshot_drop_max=0.4, oneshot_drop_ramp=0.5)
    strategy = OneShotStrategy(config, torch.device("cpu"))
    assert [strategy.drop_rate(e) for e in (0, 2.5, 5, 8)] == pytest.approx([0.0, 0.2, 0.4, 0.4])


def test_a_dropped_oneshot_path_gets_no_weight_decay_and_no_momentum(tmp_path, monkeypatch):
    config = tiny_config("micro", "oneshot", l2=0.05, momentum=0.9)
    loop = SearchLoop(config, RunDir.create(tmp_path / "run", config))
    net = loop.supernet
    batch = next(loop.task.train_batches())
    loop._train_step(batch)  # step 0: r = 0, every path runs and gets a momentum buffer
    dropped = net.cells[0].op(2, 0, 0, MicroOp.SEP3)  # node 2, slot x, reading node 0
    kept_module = net.cells[0].op(2, 1, 1, MicroOp.SEP3)
    assert all(id(p) in {id(q) for q in loop.optimizer.state} for p in dropped.parameters())
    paths = net.cells[0].paths[0]
    kept = [tuple(range(k)) for k in net.oneshot_fan_ins()]
    kept[0] = tuple(p for p in kept[0] if paths[p] != (0, MicroOp.SEP3.enas_id))  # node 2, slot x
    monkeypatch.setattr(
        loop.strategy, "logits", lambda supernet, x, child, epoch: supernet.forward_oneshot(x, kept)
    )
    weights = [p.detach().clone() for p in dropped.parameters()]
    buffers = [loop.optimizer.state[p]["momentum_buffer"].clone() for p in dropped.parameters()]
    others = [p.detach().clone() for p in kept_module.parameters()]
    loop._train_step(batch)
    assert all(p.grad is None for p in dropped.parameters())
    assert all(torch.equal(w, p) for w, p in zip(weights, dropped.parameters()))  # no decay, no momentum
    momentum = [loop.optimizer.state[p]["momentum_buffer"] for p in dropped.parameters()]
    assert all(torch.equal(b, m) for b, m in zip(buffers, momentum))
    assert not any(torch.equal(w, p) for w, p in zip(others, kept_module.parameters()))


def test_oneshot_strategy_draws_host_masks_from_its_own_generator():
    config = tiny_config("macro", "oneshot", epochs=2)
    strategy = OneShotStrategy(config, torch.device("cpu"))
    assert strategy.generator.device.type == "cpu"
    seen = []

    class Recorder:
        def oneshot_fan_ins(self):
            return (6, 7, 8, 9)

        def forward_oneshot(self, x, kept):
            seen.append(kept)
            return x

    state = strategy.state_dict()
    strategy.logits(Recorder(), None, None, epoch=0.0)
    assert seen[-1] == [tuple(range(k)) for k in (6, 7, 8, 9)]  # r = 0 at the start: everything
    strategy.logits(Recorder(), None, None, epoch=2.0)  # r = oneshot_drop_max
    first = seen[-1]
    assert any(len(node) < k for node, k in zip(first, (6, 7, 8, 9)))
    strategy.load_state_dict(state)
    strategy.logits(Recorder(), None, None, epoch=0.0)
    strategy.logits(Recorder(), None, None, epoch=2.0)
    assert seen[-1] == first  # the generator state is the whole story


def test_an_interrupted_and_resumed_oneshot_search_ends_bitwise_equal(tmp_path):
    config = tiny_config("macro", "oneshot", epochs=2, oneshot_drop_ramp=0.5)
    straight = RunDir.create(tmp_path / "straight", config)
    search(config, straight)
    run = RunDir.create(tmp_path / "stopped", config)
    assert search(config, run, interrupt=Countdown(13))["step"] == 12  # mid second epoch
    final = search(config, run, resume=True)
    assert final["interrupted"] is False and final["step"] == 2 * STEPS_PER_EPOCH
    a, b = state_of(straight), state_of(run)
    for key in ("supernet", "optimizer", "strategy", "task", "progress"):
        assert_same_tensors(a[key], b[key], key)
    assert without_timing(straight.read_metrics()) == without_timing(run.read_metrics())


# ------------------------------------------------------------------------ derive and scoring
@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """One finished enas run per space (shared by the derive tests)."""
    runs = {}
    for space in ("macro", "micro"):
        config = tiny_config(space, "enas")
        run = RunDir.create(tmp_path_factory.mktemp(space) / "run", config)
        search(config, run)
        runs[space] = run
    return runs


def test_derive_ranks_distinct_candidates_best_first(finished_runs):
    run = finished_runs["micro"]
    ranked = derive(run.path, samples=12, batches=1, device="cpu")
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    canonical = [arch.canonical() for arch, _ in ranked]
    assert len(set(canonical)) == len(canonical) <= 12
    assert derive(run.path, samples=12, top=3, batches=1, device="cpu") == ranked[:3]  # repeatable
    archs = [arch for arch, _ in ranked[:3]]
    assert score_architectures(run.path, archs, batches=1, device="cpu") == scores[:3]


def test_score_architectures_uses_the_whole_validation_split_by_default(finished_runs):
    run = finished_runs["macro"]
    archs = [MacroArch.sample(seed, num_layers=4) for seed in range(3)]
    scores = score_architectures(run, archs, device="cpu")
    assert all(abs(s * 181 - round(s * 181)) < 1e-9 for s in scores)  # 181 validation digits
    assert scores == score_architectures(str(run.path), archs, batches=None, device="cpu")


def test_score_architectures_refuses_architectures_the_run_cannot_score(finished_runs):
    run = finished_runs["macro"]
    with pytest.raises(EnasError, match="architecture 2 has 6 layers.*macro architectures of 4 layers"):
        score_architectures(run, [MacroArch.sample(0, num_layers=4), MacroArch.sample(0, num_layers=6)])
    with pytest.raises(EnasError, match="architecture 1 is a micro architecture.*macro space"):
        score_architectures(run, [MicroArch.sample(0, num_blocks=2)])


def test_derive_needs_a_checkpoint_and_a_search_run(tmp_path):
    config = tiny_config()
    run = RunDir.create(tmp_path / "fresh", config)
    with pytest.raises(EnasError, match="no last.pt yet"):
        derive(run.path)
    with pytest.raises(EnasError, match="no such run directory"):
        derive(tmp_path / "missing")


def test_derive_works_on_an_interrupted_run(tmp_path):
    config = tiny_config("macro", "oneshot")
    run = RunDir.create(tmp_path / "run", config)
    assert search(config, run, interrupt=Countdown(2))["interrupted"]
    ranked = derive(run.path, samples=4, top=2, batches=1, device="cpu")
    assert len(ranked) == 2 and ranked[0][1] >= ranked[1][1]
    assert json.loads(json.dumps(ranked[0][0].to_dict()))["space"] == "macro"
