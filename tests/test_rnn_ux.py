"""Issue 13's researcher features on the rnn space: display, --format json, runs, plot, load_run, export.

Tiny runs on the PTB-format corpus of ``tiny_ptb`` (hidden size 8, a few seconds each).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

import enastool
from enastool.config import resolve_final_config
from enastool.data import load_corpus
from enastool.nn.recurrent import RecurrentNet
from enastool.runs import RunDir
from enastool.train.lm import LMTrainer
from enastool_cli.main import app
from enastool_cli.progress import ProgressReporter

from test_cli_display import CLOCK, last_frame, terminal

CELL = "rnn 0 0 1 1 0 3"  # 3 nodes
TINY = ["--device", "cpu", "--hidden-size", "8", "--batch-size", "16", "--bptt", "10"]
SEARCH = ["--space", "rnn", "--strategy", "enas", "--preset", "smoke", *TINY, "--num-nodes", "3",
          "--epochs", "2", "--controller-samples", "2", "--controller-updates", "2", "--log-every", "5"]
FINAL = ["--preset", "smoke", *TINY, "--epochs", "3", "--eval-every", "2", "--set", "log_every=5"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def rnn_runs(tmp_path_factory, tiny_ptb):
    """An rnn search and a final run on tiny_ptb, each with its --format json summary and stderr."""
    root = tmp_path_factory.mktemp("rnn-ux")
    search = invoke("search", *SEARCH, "--data-dir", tiny_ptb, "--out", root / "search", "--format", "json")
    assert search.exit_code == 0, search.output
    cell = root / "cell.arch"
    cell.write_text(CELL + "\n")
    final = invoke("train-final", cell, *FINAL, "--data-dir", tiny_ptb, "--out", root / "final", "--format", "json")
    assert final.exit_code == 0, final.output
    return {"root": root, "search": (root / "search", search), "final": (root / "final", final)}


def records(path, kind: str) -> list[dict]:
    return [r for r in RunDir.open(path).read_metrics() if r["kind"] == kind]


# ------------------------------------------------------------------------ events and the display
def test_the_lm_trainer_ticks_every_step_and_records_every_epoch(tmp_path, tiny_ptb):
    config = resolve_final_config("smoke", "rnn", overrides=dict(
        device="cpu", hidden_size=8, batch_size=16, bptt=10, epochs=3, log_every=5, eval_every=2,
        data_dir=str(tiny_ptb)), arch=CELL)
    events = []
    trainer = LMTrainer(None, config, RunDir.create(tmp_path / "f", config), callback=events.append,
                        interrupt=None)
    trainer.train(resume=False)
    total = 3 * trainer.steps_per_epoch
    assert [e["step"] for e in events if e["kind"] == "tick"] == list(range(1, total + 1))
    epochs = [e for e in events if e["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]  # the epochs bar moves every epoch
    assert "valid_ppl" not in epochs[0] and "valid_ppl" in epochs[1] and "test_ppl" in epochs[2]
    steps = [e for e in events if e["kind"] == "step"]
    assert steps and all(s["tokens_per_s"] > 0 for s in steps)
    assert all(s["ppl"] == pytest.approx(math.exp(s["loss"])) for s in steps)
    # the metrics file holds the same epoch records, each with its wall-clock time
    written = records(tmp_path / "f", "epoch")
    assert [r["epoch"] for r in written] == [1, 2, 3] and all(r["wall_time"] > 1e9 for r in written)

    # Replayed into the live display at 80 columns: count, clocks, perplexity and tokens/s.
    console, buffer = terminal(80)
    with ProgressReporter("train-final rnn", console=console) as reporter:
        last_step = steps[-1]
        for event in events:
            if event["kind"] == "done":
                break
            reporter(event)
            if event is last_step:
                bar, epochs_row, figures = last_frame(reporter, buffer)
                break
    assert f"{last_step['step']}/{total}" in bar and len(CLOCK.findall(bar)) == 2 and "…" not in bar
    assert epochs_row.startswith("epochs") and f"/{3}" in epochs_row
    assert f"ppl {last_step['ppl']:.1f}" in figures and f"tok/s {last_step['tokens_per_s']:.0f}" in figures


def test_plain_lines_of_an_rnn_search_and_final_run_show_perplexity_tokens_per_s_and_eta(rnn_runs):
    for name in ("search", "final"):
        _, result = rnn_runs[name]
        lines = [line for line in result.stderr.splitlines() if " step " in line or ": step" in line]
        assert lines, result.stderr
        assert all("ppl " in line and "tok/s " in line and " eta " in line for line in lines), lines
    _, final = rnn_runs["final"]
    assert "train-final: test perplexity" in final.stderr


# ------------------------------------------------------------------------ --format json
def test_json_summaries_of_rnn_search_and_final_training(rnn_runs):
    path, result = rnn_runs["search"]
    summary = json.loads(result.stdout)  # stdout holds the summary and nothing else
    assert summary["kind"] == "search" and summary["space"] == "rnn" and summary["dataset"] == "ptb"
    assert summary["status"] == "finished" and summary["epoch"] == 2 and summary["run"] == str(path)
    assert summary["next"] == f"enastool derive {path}"

    path, result = rnn_runs["final"]
    summary = json.loads(result.stdout)
    done = records(path, "done")[0]
    last = records(path, "epoch")[-1]
    assert summary["kind"] == "final" and summary["arch"] == CELL and summary["status"] == "finished"
    assert summary["test_ppl"] == pytest.approx(done["test_ppl"]) == pytest.approx(last["test_ppl"])
    assert summary["best_valid_ppl"] == pytest.approx(min(r["valid_ppl"] for r in records(path, "epoch")
                                                          if "valid_ppl" in r))
    assert summary["epoch"] == 3


def test_validate_json_of_rnn_records(tmp_path):
    source = tmp_path / "cells.arch"
    source.write_text(f"{CELL}\nrnn 0 9\n")
    result = invoke("validate", source, "--format", "json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False and report["count"] == 1 and report["spaces"] == {"rnn": 1}
    assert report["records"] == [{"record": 1, "space": "rnn", "arch": CELL}]
    assert len(report["errors"]) == 1 and str(source) in report["errors"][0]


# ------------------------------------------------------------------------ runs and plot
def test_runs_lists_rnn_runs_with_their_best_perplexity(rnn_runs):
    result = invoke("runs", rnn_runs["root"], "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {row["run"].rsplit("/", 1)[-1]: row for row in json.loads(result.stdout)}
    for name, epochs in (("search", 2), ("final", 3)):
        row = rows[name]
        valid = [r["valid_ppl"] for r in records(rnn_runs[name][0], "epoch") if "valid_ppl" in r]
        assert (row["space"], row["status"], row["epoch"], row["epochs"]) == ("rnn", "finished", epochs, epochs)
        assert row["best"] == {"name": "valid_ppl", "value": pytest.approx(min(valid))}  # lower is better
    table = invoke("runs", rnn_runs["root"]).stdout
    assert "valid_ppl" in table and "rnn" in table


def test_plot_draws_the_rnn_curves(rnn_runs, tmp_path):
    pytest.importorskip("matplotlib")
    final = invoke("plot", rnn_runs["final"][0], "-o", tmp_path / "final.png")
    assert final.exit_code == 0, final.output
    assert "perplexity" in final.stderr and "learning rate" in final.stderr and "accuracy" not in final.stderr
    search = invoke("plot", rnn_runs["search"][0], "-o", tmp_path / "search.png")
    assert search.exit_code == 0, search.output
    for panel in ("perplexity", "controller reward", "controller entropy", "learning rate"):
        assert panel in search.stderr, search.stderr
    assert (tmp_path / "final.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------ Python API and export
def test_load_run_gives_the_language_model_in_eval_mode(rnn_runs, tiny_ptb):
    path = rnn_runs["final"][0]
    run = enastool.load_run(path)
    assert isinstance(run, enastool.TrainedTextRun) and isinstance(run.network, RecurrentNet)
    assert not run.network.training and run.arch == enastool.parse(CELL)
    corpus = load_corpus("ptb", str(tiny_ptb))
    assert run.vocab_size == corpus.info.vocab_size and run.hidden_size == 8 and run.epoch == 3
    # the weights are the checkpoint's (no NT-ASGD averaging in three epochs)
    state = torch.load(path / "last.pt", weights_only=True)
    assert not run.averaged
    assert all(torch.equal(v, state["model"][k]) for k, v in run.network.state_dict().items())
    # the state carries: two halves of a text give the logits of the whole
    tokens = corpus.split("valid")[:40].reshape(2, 20).long()
    logits, end = run.predict(tokens)
    first, middle = run.predict(tokens[:, :12])
    second, end2 = run.predict(tokens[:, 12:], middle)
    assert logits.shape == (2, 20, run.vocab_size)
    assert torch.allclose(torch.cat([first, second], dim=1), logits, atol=1e-5)
    assert torch.allclose(end, end2, atol=1e-5)
    with pytest.raises(enastool.EnasError, match="token ids must lie in"):
        run.predict(torch.full((1, 3), run.vocab_size))


def test_export_of_an_rnn_run_is_one_line_naming_what_is_supported(rnn_runs, tmp_path):
    path = rnn_runs["final"][0]
    result = invoke("export", path, "-o", tmp_path / "lm.pt2")
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "macro and micro" in lines[0], lines
    assert not (tmp_path / "lm.pt2").exists()
