"""metrics.csv and the TensorBoard sink beside metrics.jsonl, and status.json."""

from __future__ import annotations

import csv
import json
import math

import pytest
from click.testing import CliRunner

from enastool.config import resolve_search_config
from enastool.errors import EnasError
from enastool.logs import METRICS_CSV, csv_cell
from enastool.runs import RunDir
from enastool.search.loop import search
from enastool_cli.main import app
from helpers import Countdown

from conftest import TINY_SEARCH


@pytest.fixture
def run(tmp_path):
    return RunDir.create(tmp_path / "run", resolve_search_config("smoke", "micro"))


def csv_rows(run: RunDir) -> list[dict]:
    with open(run.path / METRICS_CSV, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assert_csv_equals_records(run: RunDir) -> None:
    """Every row is its record: each cell reads back to the value, absent keys are empty."""
    records = run.read_metrics()
    rows = csv_rows(run)
    assert len(rows) == len(records)
    header = list(rows[0]) if rows else []
    assert header == list(dict.fromkeys(k for r in records for k in r))  # first-seen order
    for record, row in zip(records, rows):
        for key in header:
            if key not in record:
                assert row[key] == ""
            elif isinstance(record[key], str):
                assert row[key] == record[key]
            elif isinstance(record[key], float) and math.isnan(record[key]):
                assert row[key] == "NaN"
            else:
                assert json.loads(row[key]) == record[key]


def test_csv_rows_equal_the_records_as_keys_appear(run):
    run.log({"kind": "step", "step": 5, "loss": 2.5, "acc": 0.125})
    run.log({"kind": "step", "step": 10, "loss": float("nan"), "acc": 0.25, "arch": "micro 0 1"})
    run.log({"kind": "epoch", "step": 10, "epoch": 1, "valid_acc": 0.5, "interrupted": False})
    run.log({"event": "note, with a comma and \"quotes\""})
    assert_csv_equals_records(run)
    assert csv_rows(run)[1]["arch"] == "micro 0 1" and csv_rows(run)[0]["arch"] == ""
    assert (csv_cell(True), csv_cell(None), csv_cell([1, 2])) == ("true", "", "[1, 2]")


def test_truncation_and_a_lost_row_leave_the_csv_equal_to_the_records(run):
    for step in range(1, 7):
        run.log({"kind": "step", "step": step, "loss": 1.0 / step})
    assert run.truncate_after(3) == 3
    assert [r["step"] for r in csv_rows(run)] == ["1", "2", "3"]
    assert_csv_equals_records(run)
    # a crash between the two appends: metrics.jsonl has a record metrics.csv lacks
    with run.metrics_path.open("a") as handle:
        handle.write(json.dumps({"kind": "step", "step": 4, "loss": 0.25}) + "\n")
    reopened = RunDir.open(run.path)  # a new process: its first record rebuilds the table
    reopened.log({"kind": "step", "step": 5, "loss": 0.2})
    assert [r["step"] for r in csv_rows(reopened)] == ["1", "2", "3", "4", "5"]
    assert_csv_equals_records(reopened)


def test_an_interrupted_and_resumed_search_keeps_csv_equal_to_metrics(tmp_path):
    config = resolve_search_config("smoke", "micro", overrides={**TINY_SEARCH, "strategy": "enas"})
    run = RunDir.create(tmp_path / "run", config)
    with run.tracking():
        assert search(config, run, interrupt=Countdown(at=5))["interrupted"]
    assert run.read_status()["status"] == "interrupted"
    # a record written after the checkpoint (a hard stop), which resume drops again
    run.log({"kind": "step", "step": 999, "loss": 9.0})
    resumed = RunDir.open(run.path)
    with resumed.tracking():
        assert not search(config, resumed, resume=True)["interrupted"]
    assert resumed.read_status()["status"] == "finished"
    assert 999 not in [r.get("step") for r in resumed.read_metrics()]
    assert_csv_equals_records(resumed)


def test_status_records_a_failure_with_its_message(run):
    with pytest.raises(EnasError):
        with run.tracking():
            assert run.read_status()["status"] == "running"
            run.log({"kind": "step", "step": 1, "loss": 2.0})
            raise EnasError("data/cifar: no such folder")
    status = run.read_status()
    assert status["status"] == "failed" and status["error"] == "EnasError: data/cifar: no such folder"
    assert isinstance(status["pid"], int) and status["host"]


def test_an_error_before_anything_was_written_leaves_the_status_as_it_was(run):
    # a resume refused by the run's checks, or a Ctrl-C while the data loads: the run was not touched
    with pytest.raises(EnasError):
        with run.tracking():
            raise EnasError("metrics.jsonl: line 1 is not a JSON object")
    assert run.read_status() is None and not (run.path / "status.json").exists()
    with run.tracking():
        run.log({"kind": "step", "step": 1, "loss": 2.0})
    before = (run.path / "status.json").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with run.tracking():
            raise KeyboardInterrupt
    assert (run.path / "status.json").read_bytes() == before


# ----------------------------------------------------------------------------- TensorBoard
def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {}
    for sub in [folder, *[p for p in folder.iterdir() if p.is_dir()]]:
        accumulator = EventAccumulator(str(sub))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found[tag] = [(e.step, e.value) for e in accumulator.Scalars(tag)]
    return found


def test_tensorboard_gets_every_number_and_hides_what_resume_redoes(run):
    run.enable_tensorboard()
    for step in range(1, 7):
        run.log({"kind": "step", "step": step, "loss": float(step), "arch": "micro 0"})
    run.log({"kind": "controller", "step": 6, "controller_step": 1, "reward": 0.5})
    run.log({"kind": "controller", "step": 6, "controller_step": 2, "reward": 0.75})
    run.log({"kind": "epoch", "step": 6, "epoch": 1, "valid_acc": 0.5, "interrupted": False})
    run.truncate_after(4)  # resume from a checkpoint at step 4
    run.log({"kind": "step", "step": 5, "loss": 50.0})
    run.close()
    scalars = tensorboard_scalars(run.tensorboard_dir)
    assert scalars["step/loss"] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 50.0)]
    assert scalars.get("controller/reward", []) == []  # dropped with their step-6 epoch
    assert "epoch/valid_acc" not in scalars or scalars["epoch/valid_acc"] == []
    assert not any(tag.endswith("/arch") or tag.endswith("/interrupted") for tag in scalars)


def test_controller_records_are_drawn_at_their_update_count(run):
    run.enable_tensorboard()
    for update in (1, 2, 3):
        run.log({"kind": "controller", "step": 9, "controller_step": update, "reward": update / 10})
    run.close()
    points = tensorboard_scalars(run.tensorboard_dir)["controller/reward"]
    assert [step for step, _ in points] == [1, 2, 3]
    assert [value for _, value in points] == pytest.approx([0.1, 0.2, 0.3])
    assert (run.tensorboard_dir / "controller").is_dir()


def test_the_tensorboard_flag_writes_events_of_a_cli_run(tmp_path):
    out = tmp_path / "run"
    args = ["search", "--space", "macro", "--preset", "smoke", "--epochs", "1", "--channels", "4",
            "--batch-size", "128", "--controller-updates", "1", "--controller-samples", "2",
            "--device", "cpu", "--quiet", "--tensorboard", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    scalars = tensorboard_scalars(out / "tensorboard")
    records = RunDir.open(out).read_metrics()
    steps = [(r["step"], r["loss"]) for r in records if r["kind"] == "step"]
    assert steps and [s for s, _ in scalars["step/loss"]] == [s for s, _ in steps]
    assert [v for _, v in scalars["step/loss"]] == pytest.approx([v for _, v in steps])
    assert json.loads((out / "status.json").read_text())["status"] == "finished"
