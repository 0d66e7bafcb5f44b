"""The rnn space's search: the text task, both strategies, perplexity, derive, exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from enastool.config import resolve_search_config
from enastool.data import load_corpus
from enastool.encoding import RecurrentArch
from enastool.errors import EnasError
from enastool.runs import RunDir
from enastool.search.derive import derive, score_architectures
from enastool.search.loop import SearchLoop, search
from enastool.search.tasks import REWARD_CONSTANT, TextTask, score_figures
from enastool.train.lm import token_loss
from helpers import Countdown, assert_same

# The smoke preset shrunk to under a second per epoch on one CPU thread: the embedded corpus
# in 128 streams of 433 tokens, windows around 35 tokens (12 per epoch), 3-node cells.
TINY = dict(
    device="cpu", dtype="float32", hidden_size=16, num_nodes=3, batch_size=128, bptt=35,
    epochs=1, controller_samples=2, controller_updates=2, log_every=5, derive_samples=6,
)
TIMING = ("tokens_per_s", "seconds", "wall_time")  # the fields that may differ between equal runs


def tiny_config(strategy="enas", **changes):
    return resolve_search_config("smoke", "rnn", overrides={**TINY, "strategy": strategy, **changes})


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.mark.parametrize("strategy", ["enas", "random"])
def test_both_strategies_search_the_rnn_space_on_the_embedded_corpus(tmp_path, strategy):
    config = tiny_config(strategy)
    assert (config.dataset, config.lr_max, config.lr_min, config.momentum) == ("pydoc", 20.0, 20.0, 0.0)
    run = RunDir.create(tmp_path / "run", config)
    events = []
    result = search(config, run, callback=events.append)
    assert result["interrupted"] is False
    assert result["controller_step"] == (2 if strategy == "enas" else 0)
    start = events[0]
    assert start["kind"] == "start" and start["total_steps"] == result["step"]
    steps = [r for r in run.read_metrics() if r["kind"] == "step"]
    assert steps and all(math.isclose(r["ppl"], math.exp(r["loss"])) for r in steps)
    assert all("tokens_per_s" in r and "acc" not in r for r in steps)
    epoch = next(r for r in run.read_metrics() if r["kind"] == "epoch")
    # enas: the mean over the controller updates; random: the epoch-end probe of 10 cells.
    assert 1 < epoch["valid_ppl"] < 2 * load_corpus("pydoc").info.vocab_size
    assert RecurrentArch.from_ints([int(t) for t in result["arch"].split()[1:]]).num_nodes == 3


def test_oneshot_is_refused_for_rnn_when_the_config_resolves():
    with pytest.raises(EnasError, match="strategy = 'oneshot' is not available for the rnn space: choose enas or random"):
        tiny_config("oneshot")


def test_a_data_set_of_the_wrong_kind_is_refused():
    with pytest.raises(EnasError, match="dataset = 'digits' is not a data set of the rnn space"):
        tiny_config(dataset="digits")
    with pytest.raises(EnasError, match="dataset = 'pydoc' is not a data set of the micro space"):
        resolve_search_config("smoke", "micro", overrides={"dataset": "pydoc"})


def ptb_config(tiny_ptb, strategy="enas", **changes):
    """The tiny settings on the tiny PTB-format corpus in 16 streams: 9 windows per epoch."""
    return tiny_config(strategy, data_dir=str(tiny_ptb), batch_size=16, **changes)


def test_validation_perplexity_falls_as_the_shared_weights_train(tmp_path, tiny_ptb):
    archs = [RecurrentArch.sample(seed, num_nodes=3) for seed in range(4)]
    short, long = ptb_config(tiny_ptb, "random", epochs=1), ptb_config(tiny_ptb, "random", epochs=6)
    mean_ppl = {}
    for name, config in (("short", short), ("long", long)):
        run = RunDir.create(tmp_path / name, config)
        search(config, run)
        scores = score_architectures(run, archs, device="cpu")
        mean_ppl[name] = sum(REWARD_CONSTANT / s for s in scores) / len(scores)
        epochs = [r for r in run.read_metrics() if r["kind"] == "epoch"]
    # Measured: 27.8 after one epoch, 8.9 after six (the unigram model: 26.4).
    assert mean_ppl["long"] < 0.5 * mean_ppl["short"]
    train_ppl = [r["ppl"] for r in epochs]
    assert max(train_ppl[1:]) < train_ppl[0] and train_ppl[-1] < 0.5 * train_ppl[0]


def test_the_reward_is_80_over_the_perplexity_of_the_next_validation_window_from_zero_state():
    task = TextTask(tiny_config(), torch.device("cpu"), None, False)
    task.supernet.eval()
    arch = RecurrentArch.sample(1, num_nodes=3)
    first = task.valid_stream.window(0, 35)
    for window in (first, first):  # one full window in 128 streams of 49 validation tokens
        with torch.no_grad():
            expected = REWARD_CONSTANT / torch.exp(token_loss(task.supernet(window.x, arch).logits, window.y))
        assert torch.allclose(task.reward(arch), expected)
    assert task.reward_figures([0.5, 0.2])["valid_ppl"] == pytest.approx(math.sqrt(160 * 400))


def test_training_carries_the_state_and_zeroes_it_when_a_pass_starts():
    config = tiny_config(bptt=40)  # about 11 windows per pass of the 433-token streams
    task = TextTask(config, torch.device("cpu"), None, False)
    task.supernet.train()
    arch = RecurrentArch.sample(0, num_nodes=3)
    firsts = carried = 0
    for _ in range(3):  # three loop epochs of (433 - 1) // 40 = 10 windows each (Python 3.11.7)
        for window in task.train_batches():
            if task.train_stream.position == 1:  # the first window of a pass
                assert not task.hidden.any()
                firsts += 1
            else:
                assert task.hidden.any() and not task.hidden.requires_grad
                carried += 1
            _, _, correct, tokens = task.train_loss(window, None, arch, 0.0)
            assert correct is None and tokens == window.y.numel()
            assert task.lr_factor(window) == window.seq_len / config.bptt
    assert task.windows_taken == 3 * task.steps_per_epoch and firsts >= 2 and carried >= 20


def test_derive_ranks_by_80_over_the_validation_perplexity(tmp_path, tiny_ptb):
    config = ptb_config(tiny_ptb, "enas")
    run = RunDir.create(tmp_path / "run", config)
    search(config, run)
    ranked = derive(run.path, device="cpu")
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True) and len(ranked) <= config.derive_samples
    archs = [arch for arch, _ in ranked]
    again = score_architectures(run.path, archs, device="cpu")
    assert again == pytest.approx(scores)
    task = TextTask(config, torch.device("cpu"), None, False)
    task.supernet.load_state_dict(run.load_checkpoint()["supernet"])
    task.supernet.eval()
    results = task.scores(archs[:2], task.score_data(None))
    assert results[0]["tokens"] == sum(w.y.numel() for w in task.score_data(None))
    for result, score in zip(results, scores):
        assert result["valid_ppl"] == pytest.approx(score_figures("rnn", score)["valid_ppl"])
        assert result["score"] == pytest.approx(score)


# On the tiny PTB-format corpus in 16 streams: 9 windows per epoch, one validation window.
# Polls per epoch: enas 9 (after each step) + 2 (updates) + 1 (epoch end), random 9 + 1:
# enas 5 stops mid-way through the first epoch's steps, 10 after its first controller update,
# random 14 in the second epoch.
@pytest.mark.parametrize("strategy, at", [("enas", 5), ("enas", 10), ("random", 14)])
def test_an_interrupted_rnn_search_resumes_bit_for_bit(tmp_path, tiny_ptb, strategy, at):
    """Interrupted mid-epoch (a shared step, or a controller update) and resumed, the run ends
    with the weights, controller, streams, hidden state and records of one that never stopped."""
    config = ptb_config(tiny_ptb, strategy, epochs=2)
    assert config.dataset == "ptb"
    whole = RunDir.create(tmp_path / "whole", config)
    search(config, whole)

    broken = RunDir.create(tmp_path / "broken", config)
    first = SearchLoop(config, broken, interrupt=Countdown(at)).search()
    assert first["interrupted"] is True and 0 < first["step"] < 2 * 9
    resumed = SearchLoop(config, RunDir.open(broken.path)).search(resume=True)
    assert resumed["interrupted"] is False

    a, b = whole.load_checkpoint(), broken.load_checkpoint()
    for key in ("supernet", "optimizer", "strategy", "task", "progress"):
        assert_same(a[key], b[key], key)
    assert a["task"]["hidden"] is not None
    assert without_timing(whole.read_metrics()) == without_timing(broken.read_metrics())
