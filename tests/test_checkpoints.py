"""Broken run directories and checkpoints: every reader (search --resume, train-final --resume,
derive, evaluate) refuses them with one line naming the file and the mismatch, and loses nothing."""

from __future__ import annotations

import errno
import json
import re
import shutil
import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from enastool.checkpoints import check_checkpoint
from enastool.config import resolve_final_config, resolve_search_config
from enastool.encoding import MicroArch
from enastool.errors import EnasError
from enastool.runs import RunDir
from enastool.search.loop import search
from enastool.train.trainer import train_final
from enastool_cli.main import app

SEARCH = dict(device="cpu", dtype="float32", channels_last=False, channels=4, batch_size=128, epochs=1,
              controller_samples=2, controller_updates=2, log_every=3)
FINAL = dict(device="cpu", compile=False, channels_last=False, dtype="float32", channels=4,
             batch_size=128, epochs=1, log_every=5)
MICRO = MicroArch.sample(2, num_blocks=2)
# The commands that read each kind of run; every one of them must refuse a broken run.
READERS = {
    "search": [["derive", "{run}", "--samples", "1", "--batches", "1", "--quiet"], ["search", "--resume", "{run}", "--quiet"]],
    "final": [["evaluate", "{run}"], ["train-final", "--resume", "{run}", "--quiet"]],
}
RESUMES = {kind: [commands[1]] for kind, commands in READERS.items()}  # the readers of metrics.jsonl


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enastool: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Finished tiny runs: macro and micro enas searches, a macro search 8 channels wide, a final run."""
    root = tmp_path_factory.mktemp("runs")
    for name, space, changes in (("search", "macro", {}), ("micro", "micro", {}), ("wide", "macro", {"channels": 8})):
        config = resolve_search_config("smoke", space, overrides={**SEARCH, **changes})
        search(config, RunDir.create(root / name, config))
    config = resolve_final_config("smoke", MICRO.space, overrides=FINAL, arch=MICRO)
    train_final(MICRO, config, RunDir.create(root / "final", config))
    return root


def edit_checkpoint(path: Path, edit) -> None:
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def reshape_first_weight(state: dict) -> None:
    weights = state["supernet"] if "supernet" in state else state["model"]
    name = next(key for key, value in weights.items() if value.dim() > 1)
    weights[name] = weights[name].reshape(-1)


# name -> (run kind, corruption of the run folder, what the line must say, readers)
CORRUPTIONS = {
    "final checkpoint in a search run": (
        "search", lambda run, runs: shutil.copy(runs / "final" / "last.pt", run / "last.pt"),
        "last.pt: a final checkpoint, but this is a search run", READERS),
    "search checkpoint in a final run": (
        "final", lambda run, runs: shutil.copy(runs / "search" / "last.pt", run / "last.pt"),
        "last.pt: a search checkpoint, but this is a final run", READERS),
    "checkpoint of another space": (
        "search", lambda run, runs: shutil.copy(runs / "micro" / "last.pt", run / "last.pt"),
        "last.pt: space is 'micro', but the run's is 'macro'", READERS),
    "checkpoint of other channels": (
        "search", lambda run, runs: shutil.copy(runs / "wide" / "last.pt", run / "last.pt"),
        "expected [4, ", READERS),
    "reshaped weight": (
        "search", lambda run, runs: edit_checkpoint(run / "last.pt", reshape_first_weight),
        "last.pt: supernet[", READERS),
    "reshaped final weight": (
        "final", lambda run, runs: edit_checkpoint(run / "last.pt", reshape_first_weight),
        "last.pt: model[", READERS),
    "no progress": (
        "search", lambda run, runs: edit_checkpoint(run / "last.pt", lambda s: s.pop("progress")),
        "last.pt: the checkpoint lacks 'progress'", RESUMES),
    "no rng": (
        "final", lambda run, runs: edit_checkpoint(run / "last.pt", lambda s: s.pop("rng")),
        "last.pt: the checkpoint lacks 'rng'", RESUMES),
    "no arch": (
        "final", lambda run, runs: edit_checkpoint(run / "last.pt", lambda s: s.pop("arch")),
        "last.pt: ", READERS),
    "unknown version": (
        "final", lambda run, runs: edit_checkpoint(run / "last.pt", lambda s: s.update(version=99)),
        "last.pt: checkpoint format 99, but this enastool reads format 2", READERS),
    "binary metrics": (
        "search", lambda run, runs: (run / "metrics.jsonl").write_bytes(b"\x80\x04\x95\xff\n\x00\x01\n"),
        "metrics.jsonl: line 1 is not a JSON object", RESUMES),
    "last.pt is a folder": (
        "final", lambda run, runs: ((run / "last.pt").unlink(), (run / "last.pt").mkdir()),
        "last.pt is not a file (a folder or a broken link)", READERS),
    "config.json is {}": (
        "search", lambda run, runs: (run / "config.json").write_text("{}"),
        "config.json: missing space, strategy, dataset, data_dir and", READERS),
    "edited config.json": (
        "search", lambda run, runs: (run / "config.json").write_text(
            (run / "config.json").read_text().replace('"channels": 4', '"channels": 8')),
        "config.json: the configuration differs from the one this run started with", READERS),
    "edited arch.txt": (
        "final", lambda run, runs: (run / "arch.txt").write_text(
            (run / "arch.txt").read_text().replace("micro 0", "micro 1", 1)),
        "arch.txt: edited or replaced since the run started", READERS),
    "replaced arch.txt": (
        "final", lambda run, runs: (run / "arch.txt").write_text(f"micro {MicroArch.sample(5, num_blocks=2).format()}\n"),
        "arch.txt: edited or replaced since the run started", READERS),
    "deleted arch.txt": (
        "final", lambda run, runs: (run / "arch.txt").unlink(),
        "arch.txt: deleted since the run started", READERS),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_every_reader_refuses_a_broken_run_in_one_line_and_changes_nothing(tmp_path, runs, name):
    kind, corrupt, fragment, readers = CORRUPTIONS[name]
    run = tmp_path / "run"
    shutil.copytree(runs / kind, run)
    corrupt(run, runs)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for command in readers[kind]:
        line = one_error_line(invoke(*(part.format(run=run) for part in command)))
        assert str(run) in line and fragment in line, (command, line)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing lost


def test_the_intact_runs_are_read_by_every_reader(tmp_path, runs):
    # The other half of the test above: the same commands accept the runs unbroken.
    for kind in READERS:
        run = tmp_path / kind
        shutil.copytree(runs / kind, run)
        for command in READERS[kind]:
            result = invoke(*(part.format(run=run) for part in command))
            assert result.exit_code == 0, (command, result.output)


def test_resume_with_another_architecture_as_source_is_refused(tmp_path, runs):
    run = tmp_path / "run"
    shutil.copytree(runs / "final", run)
    other = tmp_path / "other.arch"
    other.write_text(f"micro {MicroArch.sample(5, num_blocks=2).format()}\n")
    line = one_error_line(invoke("train-final", other, "--resume", run, "--quiet"))
    assert "another architecture than the run's" in line


# ------------------------------------------------------------------------ the validator itself
def small_state():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 1, 5, 5)).sum().backward()
    optimizer.step()
    state = {"kind": "final", "version": 2, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "progress": {"epoch": 1, "step": 3}, "cuda": [torch.zeros(16, dtype=torch.uint8)], "baseline": None}
    return model, optimizer, state


def check(state, template, **kwargs):
    check_checkpoint(state, "c.pt", kind="final", version=2, template=template, **kwargs)


def test_the_validator_checks_kind_version_and_expected_values_first():
    model, optimizer, state = small_state()
    template = {**state, "optimizer": optimizer}
    check(state, template)
    for change, message in [
        ({"kind": "search"}, "c.pt: a search checkpoint, but this is a final run"),
        ({"kind": None}, "c.pt: not an enastool checkpoint (no run kind in it), but this is a final run"),
        ({"version": True}, "c.pt: checkpoint format True, but this enastool reads format 2"),
        ({"version": "2"}, "c.pt: checkpoint format '2', but this enastool reads format 2"),
    ]:
        with pytest.raises(EnasError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
            check({**state, **change}, template)
    with pytest.raises(EnasError, match=r"c.pt: arch is 'a', but the run's is 'b'; fix it"):
        check({**state, "arch": "a"}, template, expected={"arch": ("b", "fix it")})


@pytest.mark.parametrize("change, message", [
    (lambda s: s["model"].pop("1.running_mean"), r"model lacks '1.running_mean'"),
    (lambda s: s["model"].update(extra=torch.zeros(1)), r"model has 'extra', which the network built from"),
    (lambda s: s["model"].update({"0.weight": torch.zeros(3, 1, 3, 3)}), r"model\['0.weight'\] has shape \[3, 1, 3, 3\], expected \[2, 1, 3, 3\]"),
    (lambda s: s["model"].update({"0.weight": torch.zeros(2, 1, 3, 3, dtype=torch.float64)}), r"model\['0.weight'\] holds torch.float64, expected torch.float32"),
    (lambda s: s["progress"].update(step=-1), r"progress.step is -1 \(an int\), expected a count"),
    (lambda s: s["progress"].update(step=True), r"progress.step is True \(a bool\), expected a count"),
    (lambda s: s.update(baseline=[1.0]), r"baseline is \[1.0\] \(a list\), expected a number or nothing"),
    (lambda s: s.update(cuda=[1]), r"cuda\[0\] is 1 \(an int\), expected a tensor"),
    (lambda s: s["optimizer"]["state"][0].update(momentum_buffer=torch.zeros(5)),
     r"optimizer.state\[0\].momentum_buffer has shape \[5\], but its parameter has \[2, 1, 3, 3\]"),
    (lambda s: s["optimizer"]["param_groups"][0]["params"].pop(), r"optimizer.param_groups\[0\] has 3 parameters"),
    (lambda s: s["optimizer"]["param_groups"][0].update(momentum="x"), r"optimizer.param_groups\[0\].momentum is 'x'"),
    (lambda s: s["optimizer"]["state"].update({7: {}}), r"optimizer.state\[7\] belongs to no parameter"),
    (lambda s: s["optimizer"]["state"][0].update(note="x"), r"optimizer.state\[0\].note is 'x' \(a str\), expected numbers"),
])
def test_the_validator_names_the_entry_that_does_not_fit(change, message):
    model, optimizer, state = small_state()
    template = {**small_state()[2], "optimizer": optimizer}
    change(state)
    with pytest.raises(EnasError, match=r"^c.pt: " + message):
        check(state, template)


def test_generator_states_of_another_gpu_count_still_fit():
    _, optimizer, state = small_state()
    template = {**state, "optimizer": optimizer, "cuda": []}  # this machine: no GPU
    check({**state, "cuda": [torch.zeros(16, dtype=torch.uint8)] * 2}, template)
    check({**state, "cuda": []}, {**template, "cuda": [torch.zeros(16, dtype=torch.uint8)]})


# ------------------------------------------------------------------------ full disk
def test_a_full_disk_during_a_checkpoint_is_one_line_and_the_run_resumes(tmp_path, monkeypatch):
    arch = tmp_path / "arch.txt"
    arch.write_text(f"micro {MICRO.format()}\n")
    out = tmp_path / "run"
    real_save = torch.save

    def disk_fills_in_epoch_2(obj, handle):
        if obj.get("epoch") == 2:
            handle.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, handle)

    monkeypatch.setattr(torch, "save", disk_fills_in_epoch_2)
    options = ["--preset", "smoke", "--device", "cpu", "--channels", "4", "--batch-size", "128", "--epochs", "2",
               "--dtype", "float32", "--compile", "off", "--quiet"]
    line = one_error_line(invoke("train-final", arch, *options, "--out", out))
    # Epoch 2 is the first evaluated (smoke: every 5th and the last), so best.pt comes first.
    assert re.fullmatch(
        rf"enastool: error: {re.escape(str(out / 'best.pt'))}: cannot write \(No space left on device\); "
        r"[0-9.]+ (B|KiB|MiB|GiB|TiB) free on its disk; the previous last.pt is intact", line)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert RunDir.open(out).load_checkpoint("last.pt")["epoch"] == 1  # the previous one, whole
    monkeypatch.undo()
    assert invoke("train-final", "--resume", out, "--quiet").exit_code == 0
    assert RunDir.open(out).load_checkpoint("last.pt")["epoch"] == 2


# ------------------------------------------------------------------------ interrupted under --quiet
def test_an_interrupted_quiet_train_final_still_says_how_to_resume(tmp_path, monkeypatch):
    from enastool_cli import train_cmds

    class StopsSoon(train_cmds.LaunchedInterrupt):
        """A Ctrl-C that arrives after the fourth step."""

        polls = 0

        @property
        def interrupted(self):
            StopsSoon.polls += 1
            if StopsSoon.polls == 4:
                self.signal_number = signal.SIGINT
            return self.signal_number is not None

    monkeypatch.setattr(train_cmds, "LaunchedInterrupt", StopsSoon)
    arch = tmp_path / "arch.txt"
    arch.write_text(f"micro {MICRO.format()}\n")
    out = tmp_path / "run"
    result = invoke("train-final", arch, "--preset", "smoke", "--device", "cpu", "--channels", "4",
                    "--batch-size", "16", "--quiet", "--out", out)
    assert result.exit_code == 130
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"train-final: interrupted at epoch 0, step 4; last.pt saved. "
        f"Continue with: enastool train-final --resume {out}"
    )
    assert json.loads((out / "run.json").read_text())["kind"] == "final"
