"""The output contract of the command line: --format json, exit statuses, help, entry points,
completion, safe defaults, --set and the renamed options."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from enastool.runs import GracefulInterrupt, SecondSignal
from enastool_cli.main import COMMANDS, app

# Tiny settings for runs that are about the contract, not the result: a second or two each.
TINY_SEARCH = ["--device", "cpu", "--channels", "4", "--batch-size", "128", "--epochs", "1",
               "--controller-samples", "2", "--controller-updates", "2"]
TINY_FINAL = ["--device", "cpu", "--channels", "4", "--epochs", "1"]
MICRO = "micro 0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1  1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def invoke(*args, input=None, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env, prog_name="enastool")


def one_error_line(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enastool: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture()
def arch_file(tmp_path):
    path = tmp_path / "best.arch"
    path.write_text(MICRO + "\n")
    return path


# ------------------------------------------------------------------------ --format json
def test_search_json_is_one_summary_object_and_stdout_holds_nothing_else(tmp_path):
    out = tmp_path / "run"
    result = invoke("search", "--space", "micro", "--preset", "smoke", "--out", out, *TINY_SEARCH,
                    "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # the whole of stdout is the object
    assert summary["run"] == str(out) and summary["kind"] == "search" and summary["status"] == "finished"
    assert (summary["space"], summary["strategy"], summary["dataset"]) == ("micro", "enas", "digits")
    assert summary["epoch"] == summary["epochs"] == 1 and summary["step"] > 0
    assert summary["controller_step"] == 2 and summary["arch"].startswith("micro ")
    assert summary["next"] == f"enastool derive {out}"
    assert "epochs in" in result.stderr  # the people's line goes to stderr


def test_search_text_leaves_stdout_empty(tmp_path):
    result = invoke("search", "--space", "macro", "--preset", "smoke", "--out", tmp_path / "run", *TINY_SEARCH)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "search macro enas:" in result.stderr


def test_train_final_json_carries_the_test_figures(tmp_path, arch_file):
    out = tmp_path / "final"
    result = invoke("train-final", arch_file, "--preset", "smoke", "--out", out, *TINY_FINAL,
                    "--format", "json", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    done = next(m for m in metrics if m["kind"] == "done")
    assert summary["run"] == str(out) and summary["kind"] == "final" and summary["status"] == "finished"
    assert summary["arch"] == MICRO.replace("  ", " ") and summary["epochs"] == 1
    assert summary["test_accuracy"] == done["test_accuracy"] and 0 <= summary["test_accuracy"] <= 1
    assert summary["best_epoch"] == 1 and result.stderr == ""


def test_validate_json_reports_records_and_errors(tmp_path, arch_file):
    good = invoke("validate", arch_file, "--format", "json")
    assert good.exit_code == 0
    report = json.loads(good.stdout)
    assert report == {"valid": True, "count": 1, "spaces": {"micro": 1}, "errors": [],
                      "records": [{"record": 1, "space": "micro", "arch": MICRO.replace("  ", " ")}]}
    bad_file = tmp_path / "bad.arch"
    bad_file.write_text(MICRO + "\nmicro 0 9\n")
    bad = invoke("validate", bad_file, "--format", "json")
    assert bad.exit_code == 2
    report = json.loads(bad.stdout)
    assert report["valid"] is False and report["count"] == 1 and len(report["errors"]) == 1
    assert bad.stderr.strip() == f"enastool: error: {report['errors'][0]}"  # the same line for people


# ------------------------------------------------------------------------ exit statuses
def test_an_unexpected_error_in_a_run_is_one_line_exit_1_and_a_traceback_in_the_run(tmp_path, monkeypatch):
    from enastool.search.loop import SearchLoop

    def broken(self, resume=False):
        raise ValueError("the search broke\nsecond line")

    monkeypatch.setattr(SearchLoop, "search", broken)
    out = tmp_path / "run"
    line = one_error_line(invoke("search", "--space", "micro", "--preset", "smoke", "--out", out, *TINY_SEARCH),
                          code=1)
    log = out / "error.log"
    assert line == (f"enastool: error: unexpected ValueError: the search broke (a bug in enastool or its "
                    f"environment; please report it); traceback in {log}; it has no checkpoint yet and "
                    f"starts over; continue with: enastool search --resume {out}")
    text = log.read_text()
    assert "Traceback" in text and "ValueError: the search broke" in text and "def broken" not in line
    # ENASTOOL_TRACEBACK=1: the exception itself, for a debugger
    again = invoke("search", "--space", "micro", "--preset", "smoke", "--out", tmp_path / "other", *TINY_SEARCH,
                   env={"ENASTOOL_TRACEBACK": "1"})
    assert isinstance(again.exception, ValueError)


def test_an_unexpected_error_outside_a_run_names_a_temporary_traceback_file(monkeypatch, arch_file):
    import enastool_cli.encoding_cmds as commands

    monkeypatch.setitem(commands.CONVERTERS, "darts", lambda arch: 1 / 0)
    line = one_error_line(invoke("convert", arch_file, "--to", "darts"), code=1)
    assert line.startswith("enastool: error: unexpected ZeroDivisionError: division by zero")
    log = line.rsplit("traceback in ", 1)[1]
    assert "ZeroDivisionError" in open(log).read()
    os.unlink(log)


def test_a_second_signal_stops_at_once_with_its_status_and_the_resume_hint(tmp_path, monkeypatch):
    from enastool.search.loop import SearchLoop

    def second_signal(self, resume=False):
        raise SecondSignal(signal.SIGTERM)

    monkeypatch.setattr(SearchLoop, "search", second_signal)
    out = tmp_path / "run"
    line = one_error_line(invoke("search", "--space", "micro", "--preset", "smoke", "--out", out, *TINY_SEARCH),
                          code=143)
    assert line == ("enastool: interrupted again: stopped at once without saving; it has no checkpoint yet "
                    f"and starts over; continue with: enastool search --resume {out}")


def test_ctrl_c_while_loading_a_new_run_leaves_nothing(tmp_path, monkeypatch):
    from enastool.search.loop import SearchLoop

    def interrupted_while_loading(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(SearchLoop, "__init__", interrupted_while_loading)
    out = tmp_path / "run"
    line = one_error_line(invoke("search", "--space", "micro", "--preset", "smoke", "--out", out), code=130)
    assert line == f"enastool: interrupted; nothing was written to {out}: run the command again"
    assert not out.exists()


def test_graceful_interrupt_raises_the_second_signal_with_its_number():
    interrupt = GracefulInterrupt()
    interrupt._handle(signal.SIGINT, None)
    assert interrupt.interrupted and interrupt.exit_code == 130
    with pytest.raises(SecondSignal) as raised:
        interrupt._handle(signal.SIGTERM, None)
    assert isinstance(raised.value, KeyboardInterrupt) and raised.value.exit_code == 143


# ------------------------------------------------------------------------ help, entry points
@pytest.mark.parametrize("command", [*COMMANDS, "data download"])
def test_every_command_help_has_examples_and_the_exit_statuses(command):
    result = invoke(*command.split(), "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "Examples:" in result.stdout and "enastool " in result.stdout.split("Examples:")[1]
    if command != "data":  # a group: its subcommand says how it exits
        assert "Exit status: 0 " in text and "2 bad input or usage" in text


def test_help_texts_agree_with_their_choices():
    final = " ".join(invoke("train-final", "--help").stdout.split())
    assert "--compile [auto|on|off] torch.compile the network: auto (on CUDA), on or off" in final
    assert "--drop-path-keep FLOAT micro: drop-path keep probability" in final
    assert "--dropout-keep FLOAT keep probability of the dropout" in final
    assert "--drop-path " not in final and "--keep-prob" not in final  # the old names are hidden
    search = " ".join(invoke("search", "--help").stdout.split())
    assert "--space [macro|micro|rnn] search space: macro, micro or rnn" in search
    assert "float32 elsewhere" in search  # what --dtype auto means off CUDA
    sample = " ".join(invoke("sample", "--help").stdout.split())
    assert "--num-blocks, --blocks B" in sample  # search's name, and the old one
    validate = invoke("validate", "--help").stdout
    assert "Usage: enastool validate [OPTIONS] [SOURCE]" in validate  # SOURCE has a default


def test_python_dash_m_enastool_runs_the_command_line(arch_file):
    done = subprocess.run([sys.executable, "-m", "enastool", "validate", str(arch_file)],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "1 record valid (micro)\n")


def test_shell_completion_completes_commands_options_and_choices():
    def complete(words: str) -> list[str]:
        env = {"_ENASTOOL_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
        result = invoke(env=env)
        assert result.exit_code == 0, result.output
        return [line.split(",", 1)[1] for line in result.stdout.splitlines()]

    assert complete("enastool tr") == ["train-final"]
    assert "--preset" in complete("enastool search --pre")
    assert complete("enastool search --preset ") == ["paper", "smoke"]


# ------------------------------------------------------------------------ safe defaults
def test_search_without_a_preset_runs_the_smoke_preset_on_the_embedded_digits(tmp_path):
    out = tmp_path / "run"
    result = invoke("search", "--space", "micro", "--out", out, *TINY_SEARCH)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["dataset"], config["controller_lr"], config["augment_pad"]) == ("digits", 0.03, 0)  # smoke
    assert result.stderr.splitlines()[0] == (
        "search micro enas: preset smoke, the default on the embedded digits data set (--data-dir DIR for "
        "CIFAR-10 with the paper preset, or --preset to choose)")


CHECK_BEFORE_TORCH = """
import sys
from enastool_cli.main import app
try:
    app(sys.argv[1:], prog_name="enastool")
except SystemExit as stop:
    print(stop.code, "torch" in sys.modules)
"""


@pytest.mark.parametrize("args, fragment", [
    (["--space", "micro", "--preset", "paper"],
     "preset 'paper': augment_pad = 4 shifts the 8x8 images of digits by half their size or more; lower it "
     "(the paper presets are for 32x32 CIFAR-10: use --preset smoke on digits, or --data-dir DIR for CIFAR-10)"),
    (["--space", "micro", "--set", "cutout=8"], "--set cutout=8: cutout = 8 covers the whole 8x8 image of digits"),
    (["--space", "micro", "--set", "controler_lr=1e-3"],
     "--set controler_lr=1e-3: unknown key 'controler_lr'; did you mean 'controller_lr'?"),
])
def test_settings_that_cannot_work_fail_at_once_before_torch_loads(tmp_path, args, fragment):
    done = subprocess.run([sys.executable, "-c", CHECK_BEFORE_TORCH, "search", *args, "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert done.stdout == "2 False\n"  # exit status 2, and torch never imported
    assert done.stderr.startswith(f"enastool: error: {fragment}")
    assert len(done.stderr.splitlines()) == 1 and not (tmp_path / "r").exists()


def test_a_used_out_fails_before_torch_loads(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "file").write_text("x")
    done = subprocess.run([sys.executable, "-c", CHECK_BEFORE_TORCH, "search", "--space", "micro", "--out", str(used)],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert done.stdout == "2 False\n" and "exists and is not empty" in done.stderr


# ------------------------------------------------------------------------ --set and renamed options
def test_set_reaches_every_setting_typed_and_checked(tmp_path, arch_file):
    out = tmp_path / "final"
    result = invoke("train-final", arch_file, "--preset", "smoke", "--out", out, *TINY_FINAL, "--quiet",
                    "--set", "lr_t0=3", "--set", "nesterov=false", "--set", "l2=0", "--set", "compile=off",
                    "--drop-path-keep", "0.7", "--dropout-keep", "0.9")
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["lr_t0"], config["nesterov"], config["l2"], config["compile"]) == (3, False, 0.0, False)
    assert (config["drop_path_keep"], config["keep_prob"]) == (0.7, 0.9)


@pytest.mark.parametrize("args, fragment", [
    (["--set", "epochs=0"], "--set epochs=0: epochs = 0 must be in [1, 100,000]"),
    (["--set", "epochs=2.5"], "--set epochs=2.5: epochs = 2.5 has type float, expected an integer"),
    (["--set", "epochs"], "--set epochs: expected KEY=VALUE, e.g. --set controller_lr=1e-3"),
    (["--set", "epochs=2", "--epochs", "3"], "--set epochs=2 and --epochs both set epochs; give one of them"),
])
def test_bad_set_values_are_one_line_naming_the_key(tmp_path, args, fragment):
    line = one_error_line(invoke("search", "--space", "micro", "--out", tmp_path / "r", *args))
    assert line == f"enastool: error: {fragment}"


def test_set_and_the_option_of_the_same_setting_are_refused_by_the_option_name(tmp_path, arch_file):
    line = one_error_line(invoke("train-final", arch_file, "--out", tmp_path / "f", "--dropout-keep", "0.9",
                                 "--set", "keep_prob=0.8"))
    assert line == "enastool: error: --set keep_prob=0.8 and --dropout-keep both set keep_prob; give one of them"


def test_set_none_unsets_a_setting_a_config_file_set(tmp_path):
    config_file = tmp_path / "c.toml"
    config_file.write_text("val_size = 300\n")
    out = tmp_path / "run"
    result = invoke("search", "--space", "macro", "--preset", "smoke", "--config", config_file, "--out", out,
                    *TINY_SEARCH, "--set", "val_size=none", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["val_size"] is None
    assert json.loads((out / "run.json").read_text())["command"][-2:] == ["--set", "val_size=none"]


@pytest.mark.parametrize("old, new", [("--drop-path", "--drop-path-keep"), ("--keep-prob", "--dropout-keep")])
def test_the_old_keep_probability_names_are_refused_with_the_new_one(tmp_path, arch_file, old, new):
    line = one_error_line(invoke("train-final", arch_file, old, "0.2", "--out", tmp_path / "f"))
    assert line.startswith(f"enastool: error: {old} is now {new}: it takes ") and "1-r" in line


# ------------------------------------------------------------------------ stdin
def test_reading_stdin_from_a_terminal_says_it_is_waiting(monkeypatch):
    import enastool_cli.common as common

    monkeypatch.setattr(common, "stdin_is_terminal", lambda: True)
    result = invoke("validate", input=MICRO + "\n")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == ["reading architectures from stdin (Ctrl-D to end)...",
                                          "1 record valid (micro)"]
    monkeypatch.undo()
    piped = invoke("validate", input=MICRO + "\n")  # from a pipe: nothing to say
    assert piped.stderr.splitlines() == ["1 record valid (micro)"]
