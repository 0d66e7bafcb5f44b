"""Final training of an rnn cell: perplexity, the loss's terms, NT-ASGD, evaluation, exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from enastool.config import resolve_final_config
from enastool.data import load_corpus
from enastool.encoding import RecurrentArch
from enastool.errors import EnasError
from enastool.runs import RunDir
from enastool.train.evaluate import evaluate_final_run
from enastool.train.lm import LMTrainer, WeightAverage, averaging_due
from enastool.train.trainer import build_final_trainer, train_final
from helpers import Countdown, assert_same

CELL = RecurrentArch.from_ints([0, 0, 1, 1, 0, 3])  # 3 nodes: tanh, relu, identity
# On the tiny PTB-format corpus (conftest) in 16 streams: 9 windows of about 35 tokens per
# epoch; a few seconds per run on one CPU thread.
TINY = dict(device="cpu", dtype="float32", compile=False, hidden_size=32, batch_size=16, epochs=3,
            log_every=3)
STEPS_PER_EPOCH = 9
TIMING = ("tokens_per_s", "seconds", "wall_time")  # the fields that may differ between equal runs


def tiny_config(tiny_ptb, **changes):
    overrides = {**TINY, "data_dir": str(tiny_ptb), **changes}
    return resolve_final_config("smoke", "rnn", overrides=overrides, arch=CELL)


def train(config, path, **options) -> tuple[dict, RunDir]:
    run = RunDir.create(path, config)
    return train_final(CELL, config, run, **options), run


def scripted_validation(monkeypatch, script: dict[int, float]) -> None:
    """The validation perplexity of epoch e (1-based) reads ``script[e]``; the evaluation itself
    still runs, and the test evaluation is untouched. Deterministic, so NT-ASGD starts where the
    script says in every run that uses it."""
    real = LMTrainer._evaluate

    def evaluate(self, stream):
        result = real(self, stream)
        if stream is self.valid_stream:
            result["perplexity"] = script[self.progress.epoch]
        return result

    monkeypatch.setattr(LMTrainer, "_evaluate", evaluate)


def test_paper_and_smoke_final_presets_train_with_the_papers_recipe():
    paper = resolve_final_config("paper", "rnn", arch=CELL)
    assert (paper.hidden_size, paper.batch_size, paper.epochs, paper.grad_clip, paper.l2) == (800, 64, 3000, 0.25, 8e-7)
    assert (paper.dataset, paper.nonmono, paper.test_batch_size) == ("pydoc", 10, 1)
    assert resolve_final_config("paper", "rnn", arch=CELL, overrides={"data_dir": "d"}).dataset == "ptb"


def test_final_training_perplexity_falls_and_the_test_is_read_once_at_the_end(tmp_path, tiny_ptb):
    config = tiny_config(tiny_ptb, epochs=6)
    events = []
    result, run = train(config, tmp_path / "run", callback=events.append)
    epochs = [r for r in run.read_metrics() if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4, 5, 6]
    valid = [r["valid_ppl"] for r in epochs]
    # The tiny language's unigram perplexity is 26.4; the network learns its word order
    # (measured: 35.0 after the first epoch, 4.8 after the sixth).
    assert valid[-1] < 0.5 * valid[0] and valid[-1] < 15
    assert [("test_ppl" in r) for r in epochs] == [False] * 5 + [True]
    assert result["test_ppl"] == epochs[-1]["test_ppl"] == pytest.approx(math.exp(result["test_loss"]))
    assert epochs[-1]["test_tokens"] == load_corpus("ptb", tiny_ptb).info.tokens["test"] - 1  # one stream
    assert result["best_valid_ppl"] == min(valid) and result["epoch"] == 6
    assert result["step"] == 6 * STEPS_PER_EPOCH
    assert {p.name for p in run.path.iterdir()} >= {"last.pt", "best.pt", "arch.txt", "metrics.jsonl"}
    assert [e["kind"] for e in events][0] == "start" and events[-1]["kind"] == "done"
    steps = [r for r in run.read_metrics() if r["kind"] == "step"]
    assert all(r["lr"] == 20.0 and r["ppl"] == pytest.approx(math.exp(r["loss"])) for r in steps)


def test_the_weight_decay_is_in_the_loss_over_every_weight_and_sgd_adds_none(tmp_path, tiny_ptb):
    """One step with l2 = 0 and one with l2 = 0.01 from the same start and masks differ by
    exactly lr x seq_len / bptt x 2 x l2 x w on every weight, the embedding included."""
    after = {}
    for l2 in (0.0, 0.01):
        config = tiny_config(tiny_ptb, l2=l2, grad_clip=0.0)
        trainer = build_final_trainer(CELL, config, None)
        start = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        window = trainer.train_stream.next_window()
        trainer.optimizer.param_groups[0]["lr"] = 20.0 * window.seq_len / config.bptt
        trainer._train_step(window)
        after[l2] = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    rate = 20.0 * window.seq_len / config.bptt
    for name, w in start.items():
        assert torch.allclose(after[0.0][name] - after[0.01][name], rate * 2 * 0.01 * w, atol=1e-6), name


def test_nt_asgd_starts_when_a_validation_is_worse_than_the_best_before_the_last_nonmono():
    assert averaging_due([100.0, 90.0], 120.0, nonmono=1)  # worse than 100, the best but the last one
    assert not averaging_due([100.0, 90.0], 95.0, nonmono=1)  # worse than 90, but that is the last one
    assert not averaging_due([100.0], 200.0, nonmono=1)  # no more than nonmono earlier validations
    assert averaging_due([50.0, 60.0, 70.0], 55.0, nonmono=2)
    assert not averaging_due([50.0, 60.0, 70.0], 50.0, nonmono=2)  # not worse than the best


def test_the_weight_average_is_the_running_mean_and_swaps_back():
    weight = torch.nn.Parameter(torch.zeros(3))
    average = WeightAverage([weight])
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            weight.fill_(value)
        average.update()
    assert average.count == 3 and torch.allclose(average.means[0], torch.full((3,), 3.0))
    with average.swapped_in():
        assert torch.equal(weight.detach(), torch.full((3,), 3.0))
    assert torch.equal(weight.detach(), torch.full((3,), 6.0))


def test_averaging_runs_after_the_trigger_and_evaluation_reads_the_mean(tmp_path, tiny_ptb, monkeypatch):
    scripted_validation(monkeypatch, {1: 100.0, 2: 90.0, 3: 120.0, 4: 80.0})
    snapshots = []
    real_step = LMTrainer._train_step

    def step(self, window):
        loss = real_step(self, window)
        if self.average is not None:
            snapshots.append([p.detach().clone() for p in self.params])
        return loss

    monkeypatch.setattr(LMTrainer, "_train_step", step)
    config = tiny_config(tiny_ptb, epochs=4, nonmono=1)
    result, run = train(config, tmp_path / "run")
    epochs = [r for r in run.read_metrics() if r["kind"] == "epoch"]
    assert [r.get("averaging_starts", False) for r in epochs] == [False, False, True, False]
    assert [r["averaged"] for r in epochs] == [False, False, False, True]
    assert result["averaging_epoch"] == 3
    state = run.load_checkpoint()
    assert state["average"]["count"] == len(snapshots) == STEPS_PER_EPOCH  # the steps of epoch 4
    for index, mean in enumerate(state["average"]["means"]):
        expected = torch.stack([snapshot[index] for snapshot in snapshots]).mean(dim=0)
        assert torch.allclose(mean, expected, atol=1e-6)
    report = evaluate_final_run(run, device="cpu")
    assert report["averaged"] is True and report["split"] == "test" and report["batch_size"] == 1
    assert report["perplexity"] == pytest.approx(result["test_ppl"], rel=1e-9)
    assert report["tokens"] == epochs[-1]["test_tokens"]


# Polls: 8 within each epoch of 9 steps, 1 after its end. 4: epoch 1 before any checkpoint;
# 9: right after the first epoch end; 31: epoch 4, step 4, with the weights being averaged.
@pytest.mark.parametrize("at", [4, 9, 31])
def test_an_interrupted_final_training_resumes_bit_for_bit(tmp_path, tiny_ptb, monkeypatch, at):
    scripted_validation(monkeypatch, {1: 100.0, 2: 90.0, 3: 120.0, 4: 80.0, 5: 85.0})
    config = tiny_config(tiny_ptb, epochs=5, nonmono=1)
    whole_result, whole = train(config, tmp_path / "whole")

    broken = RunDir.create(tmp_path / "broken", config)
    first = LMTrainer(CELL, config, broken, callback=None, interrupt=Countdown(at)).train(resume=False)
    assert first["interrupted"] is True
    again = LMTrainer(None, config, RunDir.open(broken.path), callback=None, interrupt=None).train(resume=True)
    assert again["interrupted"] is False

    a, b = whole.load_checkpoint(), broken.load_checkpoint()
    for key in ("model", "optimizer", "train_stream", "hidden", "average", "progress", "test"):
        assert_same(a[key], b[key], key)
    assert a["average"]["count"] > 0 and a["hidden"] is not None
    metrics = [[{k: v for k, v in r.items() if k not in TIMING} for r in run.read_metrics()]
               for run in (whole, broken)]
    assert metrics[0] == metrics[1]
    assert again["test_ppl"] == whole_result["test_ppl"]


def test_rnn_final_training_refuses_torchrun(tiny_ptb, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(EnasError, match="rnn language models train in one process.*without torchrun"):
        build_final_trainer(CELL, tiny_config(tiny_ptb), None)


def test_a_corpus_the_network_was_not_trained_on_is_refused(tmp_path, tiny_ptb):
    _, run = train(tiny_config(tiny_ptb, epochs=1), tmp_path / "run")
    with pytest.raises(EnasError, match="trained on a corpus with digest .* pydoc here has"):
        evaluate_final_run(run, dataset="pydoc", device="cpu")
    with pytest.raises(EnasError, match="--tta averages mirrored images"):
        evaluate_final_run(run, tta=True, device="cpu")
    valid = evaluate_final_run(run, split="valid", batch_size=4, device="cpu")
    assert valid["batch_size"] == 4 and valid["tokens"] == 4 * (947 // 4 - 1)


def test_a_damaged_or_foreign_checkpoint_is_refused_in_one_line_before_any_load(tmp_path, tiny_ptb):
    config = tiny_config(tiny_ptb, epochs=1)
    _, run = train(config, tmp_path / "run")
    state = run.load_checkpoint()
    assert state["kind"] == "final" and state["hidden"].dtype == torch.float32

    def resume_with(damaged: dict) -> str:
        run.save_checkpoint("last.pt", damaged)
        with pytest.raises(EnasError) as err:
            LMTrainer(None, config, RunDir.open(run.path), callback=None, interrupt=None).train(resume=True)
        message = str(err.value)
        assert "\n" not in message and "last.pt" in message
        return message

    assert "hidden" in resume_with({**state, "hidden": torch.zeros(3, 3)})
    assert "optimizer" in resume_with({**state, "optimizer": {"state": {}, "param_groups": []}})
    assert "another architecture" in resume_with({**state, "arch": "rnn 1 0 1 1"})
    assert "another corpus" in resume_with({**state, "network": {**state["network"], "corpus_digest": "x"}})
    assert "checkpoint format" in resume_with({**state, "version": 1})
