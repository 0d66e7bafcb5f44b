"""`enastool search` and `enastool derive` from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from enastool.config import resolve_search_config
from enastool.encoding.textio import parse_text
from enastool.runs import RunDir
from enastool_cli.main import app

# Tiny settings on top of --preset smoke: about a second per run on one CPU thread.
TINY = ["--device", "cpu", "--channels", "4", "--batch-size", "128", "--epochs", "1",
        "--controller-samples", "2", "--controller-updates", "2", "--quiet"]
# Subprocesses: one thread each (the test machine is shared), the package from this checkout.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ENASTOOL = [sys.executable, "-m", "enastool_cli"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enastool: error:"), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished micro enas search made through the CLI."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("search", "--space", "micro", "--preset", "smoke", "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    return out


def test_search_writes_a_run_directory_with_the_resolved_config(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "config.toml", "run.json", "metrics.jsonl", "last.pt"} <= names
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["space"], config["strategy"], config["dataset"]) == ("micro", "enas", "digits")
    assert (config["channels"], config["epochs"], config["num_blocks"]) == (4, 1, 2)  # options > smoke
    assert config["controller_lr"] == 0.03 and config["op_tanh_reduce"] == 2.5  # smoke, and the micro column
    info = json.loads((run_dir / "run.json").read_text())
    assert info["kind"] == "search"
    assert info["command"][:6] == ["enastool", "search", "--out", str(run_dir), "--preset", "smoke"]


def test_search_into_an_existing_non_empty_directory_is_refused(run_dir):
    line = one_error_line(invoke("search", "--preset", "smoke", "--out", run_dir, *TINY))
    assert "not empty" in line and "--resume" in line


def test_search_needs_out_or_resume_and_resume_takes_no_settings(run_dir):
    assert "--out RUN" in one_error_line(invoke("search", "--preset", "smoke"))
    line = one_error_line(invoke("search", "--resume", run_dir, "--epochs", "3", "--out", "x"))
    assert "config.json" in line and "--epochs" in line and "--out" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_bad_device_is_refused_before_the_run_directory_is_made(tmp_path):
    out = tmp_path / "run"
    line = one_error_line(invoke("search", "--preset", "smoke", "--out", out, "--device", "cuda", "--quiet"))
    assert "--device cuda" in line and not out.exists()


def test_search_reads_a_toml_config_and_options_override_it(tmp_path):
    config_file = tmp_path / "search.toml"
    config_file.write_text('[search]\nspace = "macro"\nstrategy = "random"\nchannels = 6\nlayers = 3\n')
    out = tmp_path / "run"
    result = invoke("search", "--preset", "smoke", "--config", config_file, "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    config = RunDir.open(out).config
    assert (config.space, config.strategy, config.layers, config.channels) == ("macro", "random", 3, 4)


def test_derive_prints_the_top_records_best_first(run_dir):
    result = invoke("derive", run_dir, "--samples", "6", "--top", "3", "--batches", "1", "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("micro ") for line in lines)
    records, errors = parse_text(result.stdout)
    assert errors == [] and len(records) == 3
    assert "rank" in result.stderr and "score" in result.stderr  # the ranking table


def test_derive_json_carries_scores_sorted_descending(run_dir):
    result = invoke("derive", run_dir, "--samples", "6", "--top", "4", "--format", "json",
                    "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    scores = [row["score"] for row in rows]
    assert len(rows) == 4 and scores == sorted(scores, reverse=True)
    assert all(row["space"] == "micro" and "normal" in row for row in rows)
    assert result.stderr == ""


def test_derive_output_pipes_into_validate(run_dir):
    derived = subprocess.run([*ENASTOOL, "derive", str(run_dir), "--samples", "4", "--top", "2",
                              "--batches", "1", "--device", "cpu", "--quiet"],
                             capture_output=True, text=True, env=ENV, check=True)
    checked = subprocess.run([*ENASTOOL, "validate", "-"], input=derived.stdout,
                             capture_output=True, text=True, env=ENV)
    assert checked.returncode == 0, checked.stderr


def test_derive_on_a_search_run_without_a_checkpoint_is_one_line(tmp_path):
    out = tmp_path / "empty"
    RunDir.create(out, resolve_search_config("smoke", "macro"))
    assert "no last.pt yet" in one_error_line(invoke("derive", out))


def wait_for(predicate, process, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"the run exited ({process.returncode}) before its first metrics record:\n{stderr}")
        if time.monotonic() > deadline:
            process.kill()
            process.communicate()
            pytest.fail(f"no metrics record within {timeout:.0f} s; no signal was sent")
        time.sleep(0.01)


def first_record_written(out: Path):
    metrics = out / "metrics.jsonl"
    return lambda: metrics.exists() and metrics.stat().st_size > 0


# Many tiny steps, each logged: the first record (step 1) comes at 0.2% of the run, which
# still trains for about 2 s on one CPU thread, so the signal lands mid-run.
SIGNAL_EPOCHS, SIGNAL_BATCH, STEPS_PER_EPOCH = 3, 8, 156  # 1248 digits training images / 8
TOTAL_STEPS = SIGNAL_EPOCHS * STEPS_PER_EPOCH


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_a_checkpoint_and_resume_finishes_the_run(tmp_path, sig, code):
    out = tmp_path / "run"
    args = [*ENASTOOL, "search", "--space", "macro", "--strategy", "random", "--preset", "smoke",
            "--out", str(out), "--device", "cpu", "--channels", "4", "--batch-size", str(SIGNAL_BATCH),
            "--epochs", str(SIGNAL_EPOCHS), "--log-every", "1", "--quiet"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for(first_record_written(out), process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0, "the run finished before the signal landed: make it longer"
    assert process.returncode == code, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    state = torch.load(out / "last.pt", weights_only=True)
    assert 0 < state["step"] < TOTAL_STEPS
    if sig == signal.SIGINT:  # one resume is enough to show that the run finishes
        resumed = subprocess.run([*ENASTOOL, "search", "--resume", str(out), "--quiet"],
                                 capture_output=True, text=True, env=ENV, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        assert torch.load(out / "last.pt", weights_only=True)["step"] == TOTAL_STEPS
        assert RunDir.open(out).read_metrics()[-1]["kind"] == "done"


def test_the_progress_reporter_prints_controller_events_as_unwrapped_plain_lines():
    from io import StringIO

    from rich.console import Console

    from enastool_cli.progress import ProgressReporter

    buffer = StringIO()
    with ProgressReporter("search", console=Console(file=buffer, width=40)) as reporter:
        assert not reporter.live  # not a terminal: plain lines
        reporter({"kind": "start", "epochs": 2, "total_steps": 10})
        reporter({"kind": "controller", "controller_step": 3, "controller_updates": 5, "epoch": 1.0,
                  "reward": 0.5, "valid_acc": 0.25, "baseline": 0.4})
        reporter({"kind": "start", "description": "scoring 3 architectures on 181 validation images"})
    lines = buffer.getvalue().splitlines()
    assert lines[1] == "search: controller 3  reward 0.500  valid 0.250  baseline 0.400"
    assert lines[2] == "search: scoring 3 architectures on 181 validation images"


# ------------------------------------------------------------------------ bad settings, one line
@pytest.mark.parametrize("args, fragment", [
    (["--seed", "99999999999999999999999"], "command line: seed = 99999999999999999999999 must be in [0, 4,294,967,295]"),
    (["--epochs", "9223372036854775807"], "command line: epochs = 9223372036854775807 must be in [1, 100,000]"),
    (["--batch-size", "1000000000"], "command line: batch_size = 1000000000 must be in [1, 65,536]"),
    (["--lr-max", "nan"], "command line: lr_max = nan must be in (0, 100.0]"),
    (["--dataset", "digits", "--data-dir", "somewhere"],
     "command line: data_dir = 'somewhere' does not apply to the digits data set"),
    (["--dtype", "float16", "--device", "cpu"], "--dtype float16 needs a CUDA device"),
    (["--strategy", "nao", "--space", "micro", "--num-blocks", "6"],
     "command line: strategy = 'nao' cannot encode these architectures: NAO micro tokens: "
     "num_blocks must be 1..5"),
    (["--strategy", "nao", "--nao-pool", "1"], "command line: nao_pool = 1 must be in [2, 1,000,000]"),
])
def test_bad_settings_are_one_line_and_leave_no_run_directory(tmp_path, args, fragment):
    out = tmp_path / "run"
    line = one_error_line(invoke("search", "--preset", "smoke", "--out", out, *args))
    assert fragment in line
    assert not out.exists()


def test_a_dangling_link_as_out_is_named(tmp_path):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone" / "run")
    line = one_error_line(invoke("search", "--preset", "smoke", "--out", link, *TINY))
    assert line == (f"enastool: error: {link} is a symbolic link to {tmp_path / 'gone' / 'run'}, which does not "
                    "exist; create the folder it points to, remove the link, or choose another --out")


# ------------------------------------------------------------------------ nao
# The smoke preset's nao additions shrunk: 2 epochs, a pool of 40 scored after each, one EPD round.
NAO_TINY = ["--strategy", "nao", "--device", "cpu", "--channels", "4", "--batch-size", "128",
            "--epochs", "2", "--nao-eval-every", "1", "--nao-pool", "40", "--nao-epd-epochs", "10", "--quiet"]


@pytest.fixture(scope="module")
def nao_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli-nao") / "run"
    result = invoke("search", "--space", "micro", "--preset", "smoke", "--out", out, *NAO_TINY)
    assert result.exit_code == 0, result.output
    return out


def test_nao_search_writes_its_pool_and_derive_ranks_it(nao_run):
    config = json.loads((nao_run / "config.json").read_text())
    assert (config["strategy"], config["nao_pool"], config["nao_new"]) == ("nao", 40, 30)  # options > smoke
    pool = [json.loads(line) for line in (nao_run / "pool.jsonl").read_text().splitlines()]
    assert len(pool) == 2 * 40
    last = [row for row in pool if row["evaluation"] == 2]
    result = invoke("derive", nao_run, "--top", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [row["arch"] for row in last[:3]]
    assert "the pool scored at the last evaluation point" in " ".join(result.stderr.split())  # the table


def test_nao_derive_json_carries_the_scores_and_the_predictors(nao_run):
    result = invoke("derive", nao_run, "--top", "4", "--format", "json", "--predictor", "--quiet")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    pool = [json.loads(line) for line in (nao_run / "pool.jsonl").read_text().splitlines()][40:]
    assert [row["score"] for row in rows] == [row["score"] for row in pool[:4]]
    assert all(0 < row["predicted"] < 1 and row["space"] == "micro" for row in rows)
    line = one_error_line(invoke("derive", nao_run, "--samples", "5"))
    assert "--samples: not for a nao run, whose derive ranks the pool" in line


def test_predictor_of_a_run_without_one_is_one_line(run_dir):
    line = one_error_line(invoke("derive", run_dir, "--samples", "2", "--batches", "1", "--predictor"))
    assert "strategy enas has no predictor; only nao runs train one" in line


def test_nao_derive_pipes_into_train_final(nao_run, tmp_path):
    derived = invoke("derive", nao_run, "--quiet")
    assert derived.exit_code == 0, derived.output
    out = tmp_path / "final"
    trained = CliRunner().invoke(app, ["train-final", "-", "--preset", "smoke", "--device", "cpu", "--epochs", "1",
                                       "--channels", "4", "--out", str(out), "--quiet"], input=derived.stdout)
    assert trained.exit_code == 0, trained.output
    assert RunDir.open(out).config.arch == derived.stdout.split(maxsplit=1)[1].strip()


def test_a_nao_scoring_batch_larger_than_the_validation_split_leaves_no_run_directory(tmp_path):
    config_file = tmp_path / "nao.toml"
    config_file.write_text("nao_score_examples = 500\n")
    out = tmp_path / "run"
    line = one_error_line(invoke("search", "--space", "micro", "--preset", "smoke", "--config", config_file,
                                 "--out", out, *NAO_TINY))
    assert ("nao_score_examples = 500: a scoring batch of 500 images does not fit the 181 validation "
            "images of digits (2..181); lower it") in line
    assert not out.exists()
