"""`enastool train-final` and `enastool evaluate` as a user runs them: CLI, pipes, signals, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from enastool.data import load_dataset
from enastool.encoding import MacroArch, MicroArch
from enastool.nn.counting import count_params
from enastool.runs import RunDir
from enastool.train.evaluate import load_final_run
from enastool_cli.main import app

# A 4-layer macro and a 2-block micro architecture: the sizes the smoke search derives.
MACRO = MacroArch.sample(3, num_layers=4)
MICRO = MicroArch.sample(2, num_blocks=2)
CHANCE = 0.1  # ten digit classes
PROMISED_ACCURACY = 0.9  # the issue: smoke final training reaches 90% test accuracy on digits
DIGITS_TEST_IMAGES = 368
# Tiny runs for the tests that are about mechanics, not accuracy.
TINY = ["--preset", "smoke", "--device", "cpu", "--channels", "8", "--eval-every", "1"]
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TORCHRUN_TIMEOUT_S = 240


def record(arch) -> str:
    return f"{arch.space} {arch.format()}"


def invoke(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def epochs_of(run_path) -> list[dict]:
    """The records of the evaluated epochs (every epoch has a record; these have test figures)."""
    return [m for m in RunDir.open(run_path).read_metrics() if m["kind"] == "epoch" and "test_accuracy" in m]


def enastool_command() -> list[str]:
    return [sys.executable, "-m", "enastool_cli"]


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enastool: error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


# ------------------------------------------------------------------------ the smoke preset
@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Both spaces trained with the plain smoke preset through the CLI, the record on stdin."""
    root = tmp_path_factory.mktemp("smoke")
    runs = {}
    for arch in (MACRO, MICRO):
        out = root / arch.space
        result = invoke("train-final", "-", "--preset", "smoke", "--device", "cpu", "--out", out,
                        input=record(arch) + "\n")
        assert result.exit_code == 0, result.output
        runs[arch.space] = (out, result)
    return runs


@pytest.mark.parametrize("space", ["macro", "micro"])
def test_smoke_preset_reaches_the_promised_accuracy_on_digits(smoke_runs, space):
    out, result = smoke_runs[space]
    assert result.stdout == ""  # stdout carries data only; the run directory is the product
    records = epochs_of(out)
    assert [r["epoch"] for r in records] == [5, 10]  # smoke: 10 epochs, tested every 5
    assert all(r["test_accuracy"] > CHANCE and r["test_images"] == DIGITS_TEST_IMAGES for r in records)
    assert records[-1]["test_accuracy"] >= PROMISED_ACCURACY
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("train-final: test accuracy ") and f"{records[-1]['test_accuracy']:.4f}" in summary
    assert (out / "arch.txt").read_text().strip() == record(MACRO if space == "macro" else MICRO)


def test_evaluate_json_matches_the_recorded_test_accuracy(smoke_runs):
    out, _ = smoke_runs["micro"]
    last_record = epochs_of(out)[-1]
    result = invoke("evaluate", out, "--format", "json", "--checkpoint", "last", "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"accuracy", "loss", "params", "images"} <= set(report)
    assert report["accuracy"] == pytest.approx(last_record["test_accuracy"], abs=1e-12)
    assert report["loss"] == pytest.approx(last_record["test_loss"], rel=1e-5)
    assert report["images"] == load_dataset("digits", purpose="final").test.num_examples
    model, arch, _ = load_final_run(out)
    assert report["params"] == count_params(model)
    assert (report["checkpoint"], report["arch"]) == ("last.pt", record(arch))

    default = json.loads(invoke("evaluate", out, "--format", "json", "--device", "cpu").stdout)
    assert default == report  # last.pt is the default
    best = json.loads(invoke("evaluate", out, "--format", "json", "--checkpoint", "best", "--device", "cpu").stdout)
    assert best["checkpoint"] == "best.pt"
    assert best["accuracy"] == pytest.approx(last_record["best_accuracy"], abs=1e-12)


def test_evaluate_table_tta_and_valid_split(smoke_runs):
    out, _ = smoke_runs["macro"]
    table = invoke("evaluate", out, "--device", "cpu")
    assert table.exit_code == 0, table.output
    rows = dict(line.split(None, 1) for line in table.stdout.strip().splitlines())
    assert {"accuracy", "loss", "params", "images"} <= set(rows)
    assert rows["images"] == str(DIGITS_TEST_IMAGES)
    valid = json.loads(invoke("evaluate", out, "--format", "json", "--split", "valid", "--tta").stdout)
    assert valid["tta"] is True and valid["split"] == "valid"
    assert valid["images"] == load_dataset("digits", purpose="search").valid.num_examples


# ------------------------------------------------------------------------ interrupt and resume
def wait_for_first_record(child, metrics, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not (metrics.exists() and metrics.read_text().strip()):
        if child.poll() is not None:
            _, stderr = child.communicate()
            pytest.fail(f"train-final exited ({child.returncode}) before its first metrics record:\n{stderr}")
        if time.monotonic() > deadline:
            child.kill()
            child.communicate()
            pytest.fail(f"no metrics record within {timeout:.0f} s; SIGINT was not sent")
        time.sleep(0.01)


def test_sigint_saves_and_resume_ends_equal_to_an_uninterrupted_run(tmp_path):
    arch_file = tmp_path / "arch.txt"
    arch_file.write_text(record(MICRO) + "\n")
    # Many tiny steps, each logged (train-final has no --log-every: the TOML sets it): the first
    # record (step 1 of 178) comes at 0.6% of a run that trains for about 2 s on one CPU thread,
    # so SIGINT lands mid-run.
    settings = tmp_path / "log_every_step.toml"
    settings.write_text("log_every = 1\n")
    options = [*TINY, "--config", settings, "--batch-size", "16", "--epochs", "2"]
    whole = invoke("train-final", arch_file, *options, "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output

    parts = tmp_path / "parts"
    command = [*enastool_command(), "train-final", str(arch_file), *map(str, options), "--out", str(parts)]
    child = subprocess.Popen(command, env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_first_record(child, parts / "metrics.jsonl")
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode != 0, "the run finished before SIGINT landed: make it longer"
    assert child.returncode == 130, stderr
    assert stdout == "" and "Traceback" not in stderr
    assert f"--resume {parts}" in stderr.strip().splitlines()[-1]
    stopped_at = torch.load(parts / "last.pt", weights_only=True)["step"]
    total = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["step"]
    assert 0 < stopped_at < total

    resumed = invoke("train-final", "--resume", parts)  # SOURCE optional: the run knows its arch
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(parts / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    def figures(run_path):
        # Training loss is a running mean since the last log line, cut short by the interrupt:
        # compare the step numbers of those and every figure of the test evaluations.
        return [(m["kind"], m["step"], m.get("test_accuracy"), m.get("test_loss"))
                for m in RunDir.open(run_path).read_metrics() if m["kind"] in ("step", "epoch")]

    assert figures(parts) == figures(tmp_path / "whole")


# ------------------------------------------------------------------------ torchrun
@pytest.mark.slow
def test_torchrun_two_processes_write_an_ordinary_run(tmp_path):
    arch_file = tmp_path / "arch.txt"
    arch_file.write_text(record(MACRO) + "\n")
    out = tmp_path / "ddp"
    enastool = shutil.which("enastool")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    program = ["--no-python", enastool] if enastool else ["-m", "enastool_cli"]
    command = [*launcher, *program, "train-final", str(arch_file), *TINY, "--epochs", "2", "--out", str(out)]
    done = subprocess.run(command, env=CHILD_ENV, capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    summaries = [line for line in done.stderr.splitlines() if line.startswith("train-final: test accuracy")]
    assert len(summaries) == 1  # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "arch.txt", "best.pt", "config.json", "config.toml", "last.pt", "metrics.csv", "metrics.jsonl",
        "run.json", "status.json",
    ]
    assert RunDir.open(out).read_status()["status"] == "finished"  # rank 0 keeps it
    metrics = RunDir.open(out).read_metrics()
    steps = [m["step"] for m in metrics if m["kind"] == "step"]
    assert steps == sorted(set(steps))  # one writer
    train_images = load_dataset("digits", purpose="final").train.num_examples
    # 64 images per process per step: each step covers 128 images of the epoch
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2 * (train_images // 128)
    report = json.loads(invoke("evaluate", out, "--format", "json", "--checkpoint", "last").stdout)
    assert report["images"] == DIGITS_TEST_IMAGES  # both ranks' test shards were counted
    assert report["accuracy"] == pytest.approx(epochs_of(out)[-1]["test_accuracy"], abs=1e-12)
    assert report["accuracy"] > CHANCE


# ------------------------------------------------------------------------ bad input
def test_two_records_in_source_is_one_line_and_exit_2(tmp_path):
    result = invoke("train-final", "-", "--out", tmp_path / "run", input=f"{record(MACRO)}\n{record(MICRO)}\n")
    assert_one_line_error(result, "exactly one architecture record, found 2")
    assert not (tmp_path / "run").exists()


def test_evaluate_missing_run_is_one_line_and_exit_2(tmp_path):
    assert_one_line_error(invoke("evaluate", tmp_path / "nowhere"), "no such run directory")


def test_search_run_without_arch_and_final_run_with_arch_are_refused(tmp_path, smoke_runs):
    from enastool.config import resolve_search_config

    search = RunDir.create(tmp_path / "search", resolve_search_config("smoke", "micro"), kind="search")
    assert_one_line_error(invoke("evaluate", search.path), "is a search run", "--arch")
    final, _ = smoke_runs["micro"]
    (tmp_path / "a.arch").write_text(record(MICRO))
    assert_one_line_error(invoke("evaluate", final, "--arch", tmp_path / "a.arch"), "is a final run", "drop --arch")


def test_resume_refuses_new_settings_and_new_runs_refuse_a_used_folder(smoke_runs):
    out, _ = smoke_runs["macro"]
    assert_one_line_error(invoke("train-final", "--resume", out, "--epochs", "3"), "drop --epochs")
    assert_one_line_error(invoke("train-final", out / "arch.txt", "--out", out), "not empty", f"--resume {out}")


# ------------------------------------------------------------------------ search runs
def test_evaluate_scores_architectures_with_a_search_runs_shared_weights(tmp_path):
    derive = pytest.importorskip("enastool.search.derive", reason="enastool.search.derive is not there yet")
    from enastool.config import resolve_search_config
    from enastool.search.loop import search

    config = resolve_search_config("smoke", "micro", overrides=dict(
        device="cpu", epochs=1, lr_t0=1, channels=4, controller_updates=1, controller_samples=2,
    ))
    run = RunDir.create(tmp_path / "search", config, kind="search")
    search(config, run)
    archs = [MicroArch.sample(seed, num_blocks=config.num_blocks) for seed in (5, 6)]
    (tmp_path / "two.arch").write_text("".join(record(a) + "\n" for a in archs))
    result = invoke("evaluate", run.path, "--arch", tmp_path / "two.arch", "--format", "json",
                    "--batches", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    expected = derive.score_architectures(run.path, archs, batches=2, device="cpu")
    assert [row["arch"] for row in rows] == [record(a) for a in archs]
    assert [row["score"] for row in rows] == pytest.approx(expected)
    table = invoke("evaluate", run.path, "--arch", tmp_path / "two.arch", "--batches", "2", "--device", "cpu")
    assert [line.split(None, 1)[1] for line in table.stdout.strip().splitlines()] == [record(a) for a in archs]
