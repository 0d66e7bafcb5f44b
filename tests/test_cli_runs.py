"""`enastool runs`, `enastool plot` and render's layout options, as a user runs them."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from enastool.config import resolve_search_config
from enastool.curves import DPI, PANEL_INCHES, PANELS, curves_figure, series_points
from enastool.runs import RunDir
from enastool.search.loop import search
from enastool_cli.main import app
from helpers import Countdown

from conftest import TINY_SEARCH

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def assert_one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enastool: error:") and fragment in lines[0], lines


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory, final_runs, search_run):
    """Under one folder: a finished final and search run, an interrupted search, a broken run,
    a run whose process was killed, and one that is running now."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(final_runs["micro"], root / "final")
    shutil.copytree(search_run, root / "nested" / "search")
    config = resolve_search_config("smoke", "macro", overrides={**TINY_SEARCH, "strategy": "random"})
    stopped = RunDir.create(root / "stopped", config)
    with stopped.tracking():
        assert search(config, stopped, interrupt=Countdown(at=4))["interrupted"]
    broken = root / "broken"
    shutil.copytree(root / "stopped", broken)
    (broken / "config.json").write_text('{"space": "macro"')  # cut short
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    for name, pid in (("killed", int(gone.stdout)), ("busy", None)):
        shutil.copytree(root / "stopped", root / name)
        run = RunDir.open(root / name)
        run.write_status("running")
        if pid is not None:  # as a process that has exited left it
            status = json.loads((root / name / "status.json").read_text())
            (root / name / "status.json").write_text(json.dumps({**status, "pid": pid}))
    (root / ".hidden").mkdir()
    shutil.copytree(root / "stopped", root / ".hidden" / "run")  # hidden folders are skipped
    return root


def test_runs_lists_each_run_with_status_epochs_and_best_figure(runs_folder, final_runs):
    result = invoke("runs", runs_folder, "--format", "json")
    assert result.exit_code == 0 and result.stderr == ""
    rows = {Path(r["run"]).relative_to(runs_folder).as_posix(): r for r in json.loads(result.stdout)}
    assert list(rows) == ["broken", "busy", "final", "killed", "nested/search", "stopped"]
    final = RunDir.open(final_runs["micro"]).read_metrics()
    best = max(r["test_accuracy"] for r in final if r["kind"] == "epoch")
    assert rows["final"] | {"updated": None} == {
        "run": str(runs_folder / "final"), "kind": "final", "space": "micro", "strategy": None,
        "dataset": "digits", "status": "finished", "epoch": 2, "epochs": 2,
        "best": {"name": "test_accuracy", "value": best}, "updated": None,
    }
    search_records = RunDir.open(runs_folder / "nested" / "search").read_metrics()
    assert rows["nested/search"]["best"] == {
        "name": "valid_acc", "value": max(r["valid_acc"] for r in search_records if r["kind"] == "epoch")}
    assert (rows["nested/search"]["status"], rows["nested/search"]["strategy"]) == ("finished", "enas")
    stopped = rows["stopped"]
    assert (stopped["status"], stopped["epoch"], stopped["epochs"], stopped["best"]) == ("interrupted", 0, 2, None)
    assert rows["broken"]["status"] == "broken" and rows["broken"]["kind"] == "search"
    assert "config.json" in rows["broken"]["error"]
    assert rows["killed"]["status"] == "failed" and "stopped without saying why" in rows["killed"]["error"]
    assert rows["busy"]["status"] == "running"  # our own process: alive


def test_runs_table_on_stdout(runs_folder):
    result = invoke("runs", runs_folder)
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "kind", "space", "strategy", "status", "epochs", "best", "updated"]
    cells = {line.split()[0]: line.split() for line in lines[1:]}
    assert cells["final"][1:6] == ["final", "micro", "-", "finished", "2/2"]
    assert cells["final"][6] == "test_accuracy"
    assert cells["stopped"][1:6] == ["search", "macro", "random", "interrupted", "0/2"]
    assert cells["broken"][4] == "broken" and cells["killed"][4] == "failed"
    assert cells["nested/search"][4] == "finished"
    # a run directory itself lists just that run
    one = invoke("runs", runs_folder / "final").stdout.splitlines()
    assert len(one) == 2 and one[1].split()[1] == "final"


def test_runs_reads_no_checkpoint_and_imports_no_torch(runs_folder):
    code = ("import sys; from enastool_cli.main import main; sys.argv = ['enastool', 'runs', sys.argv[1]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'matplotlib' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, str(runs_folder)], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "False False" and "finished" in out.stdout


def test_runs_of_a_missing_folder_is_one_line(tmp_path):
    assert_one_line_error(invoke("runs", tmp_path / "absent"), "no such directory")
    empty = invoke("runs", tmp_path)
    assert empty.exit_code == 0 and empty.stdout == "" and "no run directories" in empty.stderr


# ----------------------------------------------------------------------------- plot
def test_plot_final_run_draws_loss_accuracy_and_learning_rate(final_runs, tmp_path):
    out = tmp_path / "curves.png"
    result = invoke("plot", final_runs["micro"], "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "3 panels: loss, accuracy, learning rate" in result.stderr
    # 3 panels in 2 columns: 2 rows
    assert png_size(out) == (2 * PANEL_INCHES[0] * DPI, 2 * PANEL_INCHES[1] * DPI)
    records = RunDir.open(final_runs["micro"]).read_metrics()
    figure = curves_figure(records)
    lines = {(ax.get_title(), line.get_label()): line for ax in figure.axes for line in ax.get_lines()}
    assert sorted(lines) == [("accuracy", "test"), ("accuracy", "train"), ("learning rate", "lr"),
                             ("loss", "test"), ("loss", "train")]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert list(lines["accuracy", "test"].get_ydata()) == [r["test_accuracy"] for r in epochs]
    assert list(lines["accuracy", "test"].get_xdata()) == [1, 2]
    steps = [r for r in records if r["kind"] == "step"]
    assert list(lines["loss", "train"].get_ydata()) == [r["loss"] for r in steps]


def test_plot_search_run_adds_the_controller(search_run, tmp_path):
    out = tmp_path / "search.png"
    result = invoke("plot", search_run, "-o", out)
    assert result.exit_code == 0, result.output
    assert "5 panels: loss, accuracy, learning rate, controller reward, controller entropy" in result.stderr
    assert png_size(out) == (2 * PANEL_INCHES[0] * DPI, 3 * PANEL_INCHES[1] * DPI)
    records = RunDir.open(search_run).read_metrics()
    figure = curves_figure(records)
    reward = next(ax for ax in figure.axes if ax.get_title() == "controller reward")
    assert [line.get_label() for line in reward.get_lines()] == ["reward", "baseline"]
    updates = [r for r in records if r["kind"] == "controller"]
    assert list(reward.get_lines()[0].get_xdata()) == [r["controller_step"] for r in updates]
    assert len(updates) == 2 * TINY_SEARCH["controller_updates"]
    assert sum(len(ax.get_lines()) for ax in figure.axes) == 7


def test_plot_panels_follow_the_records_of_other_spaces():
    """An rnn run's records (perplexities, no accuracy) fill the perplexity panel instead."""
    records = [
        {"kind": "step", "step": 10, "epoch": 0.5, "loss": 6.0, "ppl": 403.4, "lr": 20.0},
        {"kind": "step", "step": 20, "epoch": 1.0, "loss": 5.5, "ppl": 244.7, "lr": 20.0},
        {"kind": "epoch", "step": 20, "epoch": 1, "valid_ppl": 300.0, "valid_loss": 5.7},
        {"kind": "epoch", "step": 40, "epoch": 2, "valid_ppl": 250.0, "valid_loss": 5.5, "test_ppl": 260.0},
    ]
    figure = curves_figure(records)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["loss", "perplexity", "learning rate"]
    perplexity = figure.axes[1]
    assert [line.get_label() for line in perplexity.get_lines()] == ["train", "valid", "test"]
    assert perplexity.get_yscale() == "log"
    panel = next(p for p in PANELS if p.title == "perplexity")
    assert series_points(records, panel, panel.series[2]) == ([2], [260.0])


def test_plot_bad_input_is_one_line(final_runs, tmp_path):
    assert_one_line_error(invoke("plot", final_runs["micro"], "-o", tmp_path / "c.jpg"), "expected a file ending in .png")
    assert_one_line_error(invoke("plot", tmp_path / "absent", "-o", tmp_path / "c.png"), "no such run directory")
    empty = RunDir.create(tmp_path / "empty", resolve_search_config("smoke", "micro")).path
    assert_one_line_error(invoke("plot", empty, "-o", tmp_path / "c.png"), "no curves to draw")
    assert not (tmp_path / "c.png").exists()


# ----------------------------------------------------------------------------- render options
def test_render_skips_and_rankdir_change_the_dot(tmp_path):
    authors = FIXTURES / "macro_final.txt"
    for option, dashed in (("all", 98), ("none", 0), ("4", 23)):
        out = tmp_path / f"macro-{option}.dot"
        result = invoke("render", authors, "-o", out, "--skips", option)
        assert result.exit_code == 0, result.output
        assert out.read_text().count("style=\"dashed\"") == dashed
    default = tmp_path / "default.dot"
    assert invoke("render", authors, "-o", default).exit_code == 0
    assert default.read_text() == (tmp_path / "macro-all.dot").read_text()  # all is the default
    lr = tmp_path / "lr.dot"
    assert invoke("render", FIXTURES / "micro_final.txt", "-o", lr, "--rankdir", "LR").exit_code == 0
    assert 'rankdir="LR"' in lr.read_text()


def test_render_skips_on_another_space_and_bad_values_are_one_line(tmp_path):
    assert_one_line_error(invoke("render", FIXTURES / "micro_final.txt", "-o", tmp_path / "m.dot", "--skips", "4"),
                          "record 1 is micro: drop --skips")
    assert_one_line_error(invoke("render", FIXTURES / "macro_final.txt", "-o", tmp_path / "m.dot", "--skips", "-1"),
                          "--skips '-1'")
    assert_one_line_error(invoke("render", FIXTURES / "macro_final.txt", "-o", tmp_path / "m.dot", "--rankdir", "XY"),
                          "--rankdir")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["runs", "plot", "export"])
def test_the_new_commands_help_imports_neither_torch_nor_matplotlib(command):
    code = (f"import sys; from enastool_cli.main import main; sys.argv = ['enastool', '{command}', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'matplotlib' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "False False" and "Usage: enastool " + command in out.stdout
