"""The run directory: config files, metrics, atomic checkpoints, RNG state and signals."""

import errno
import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from enastool.config import FinalConfig, SearchConfig, resolve_final_config, resolve_search_config
from enastool.errors import EnasError
from enastool.runs import (
    GracefulInterrupt,
    RunDir,
    capture_rng_state,
    check_checkpoint_state,
    digest,
    restore_rng_state,
)


@pytest.fixture
def config():
    return resolve_search_config("smoke", "micro", overrides={"seed": 7})


@pytest.fixture
def run(tmp_path, config):
    return RunDir.create(tmp_path / "run", config, command=["enastool", "search"])


def test_create_writes_config_and_run_info(run, config):
    names = sorted(p.name for p in run.path.iterdir())
    assert names == ["config.json", "config.toml", "run.json"]
    info = json.loads((run.path / "run.json").read_text())
    assert info["kind"] == "search" and info["command"] == ["enastool", "search"]
    assert info["format"] == 2 and info["created"].endswith("+00:00")
    assert info["digests"] == {"config.json": digest(config.to_json())}
    assert SearchConfig.read_toml(run.path / "config.toml") == config
    assert SearchConfig.read_json(run.path / "config.json") == config


def test_create_refuses_a_non_empty_directory(tmp_path, config):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(EnasError) as info:
        RunDir.create(target, config)
    assert str(info.value) == (
        f"{target} exists and is not empty; use --resume {target} to continue it "
        "or choose another --out"
    )
    assert (target / "notes.txt").read_text() == "mine"


def test_create_accepts_an_empty_existing_directory(tmp_path, config):
    target = tmp_path / "empty"
    target.mkdir()
    assert RunDir.create(target, config).kind == "search"


def test_open_loads_the_config_and_names_a_missing_file(run, config, tmp_path):
    reopened = RunDir.open(run.path)
    assert reopened.config == config and reopened.kind == "search"
    with pytest.raises(EnasError, match=r"is a search run, expected a final run"):
        RunDir.open(run.path, kind="final")
    (run.path / "config.json").unlink()
    expected = r"config.json is missing: .* is not an enastool run directory"
    with pytest.raises(EnasError, match=expected):
        RunDir.open(run.path)
    with pytest.raises(EnasError, match=r"no such run directory"):
        RunDir.open(tmp_path / "absent")


def test_final_run_round_trips_its_architecture(tmp_path):
    config = resolve_final_config("smoke", "macro", arch="0 3 0 0 1 0")
    run = RunDir.create(tmp_path / "final", config)
    reopened = RunDir.open(run.path)
    assert reopened.kind == "final" and isinstance(reopened.config, FinalConfig)
    assert (reopened.config.arch, reopened.config.layers) == ("0 3 0 0 1 0", 3)


def test_metrics_append_read_and_truncate(run):
    for step in (10, 20, 30, 40):
        run.log({"step": step, "loss": np.float32(1.0 / step), "acc": torch.tensor(0.5)})
    run.log({"event": "derive"})  # records without a step are kept
    records = run.read_metrics()
    assert [r.get("step") for r in records] == [10, 20, 30, 40, None]
    assert records[0]["loss"] == pytest.approx(0.1) and records[0]["acc"] == 0.5
    assert run.truncate_after(20) == 2
    assert [r.get("step") for r in run.read_metrics()] == [10, 20, None]


def test_every_metrics_record_gets_the_wall_clock_time_it_was_written(run):
    started = time.time()
    run.log({"step": 1, "loss": 2.0})
    run.log({"kind": "done", "wall_time": 12.5})  # a record's own time is kept
    first, done = run.read_metrics()
    assert started <= first["wall_time"] <= time.time()
    assert done["wall_time"] == 12.5


def test_torn_last_metric_line_is_dropped(run):
    run.log({"step": 1, "loss": 2.0})
    with run.metrics_path.open("a") as handle:
        handle.write('{"step": 2, "lo')  # crash in the middle of a write
    assert [{k: v for k, v in r.items() if k != "wall_time"} for r in run.read_metrics()] == [
        {"step": 1, "loss": 2.0}]
    run.truncate_after(5)
    run.log({"step": 2, "loss": 1.0})
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


def test_checkpoint_round_trip_with_rng_state_under_weights_only(run):
    torch.manual_seed(0)
    random.seed(1)
    np.random.seed(2)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {
        "step": 12, "epoch": 1.5, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "rng": capture_rng_state(),
    }
    path = run.save_checkpoint("last.pt", state)
    expected = (torch.rand(3), random.random(), np.random.rand(3))

    loaded = torch.load(path, weights_only=True)  # the strict loader accepts it
    assert loaded["step"] == 12
    restored = run.load_checkpoint("last.pt")
    restore_rng_state(restored["rng"])
    again = (torch.rand(3), random.random(), np.random.rand(3))
    assert torch.equal(expected[0], again[0])
    assert expected[1] == again[1]
    assert np.array_equal(expected[2], again[2])
    assert torch.equal(restored["model"]["weight"], model.weight.detach())
    fresh = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    fresh.load_state_dict(restored["optimizer"])


def test_atomic_save_leaves_no_temporary_files(run):
    run.save_checkpoint("last.pt", {"step": 1})
    run.save_checkpoint("last.pt", {"step": 2})
    assert sorted(p.name for p in run.path.iterdir()) == [
        "config.json", "config.toml", "last.pt", "run.json",
    ]
    assert run.load_checkpoint()["step"] == 2


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# Made under umask 027, so 0640 tells open()'s mode apart from tempfile's 0600 and from 0644.
PERMISSIONS_SCRIPT = """
import json, os, sys
os.umask(0o027)
from enastool.config import resolve_search_config
from enastool.runs import RunDir
run = RunDir.create(sys.argv[1], resolve_search_config("smoke", "micro"))
run.save_checkpoint("last.pt", {"step": 1})
run.log({"kind": "step", "step": 1})
with open(os.path.join(sys.argv[1], "plain.txt"), "w") as handle:
    handle.write("made by open()")
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomically_written_files_get_the_permissions_open_gives(run, tmp_path):
    run.save_checkpoint("last.pt", {"step": 1})
    plain = run.path / "plain.txt"
    with open(plain, "w") as handle:
        handle.write("made by open()")
    for name in ("config.json", "config.toml", "run.json", "last.pt"):
        assert mode_of(run.path / name) == mode_of(plain), name

    # under a umask whose result differs from tempfile's 0600, in a fresh interpreter
    # (the umask is read when enastool.runs is imported)
    other = tmp_path / "umask027"
    subprocess.run([sys.executable, "-c", PERMISSIONS_SCRIPT, str(other)], check=True, timeout=120,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    modes = {p.name: mode_of(p) for p in other.iterdir()}
    assert modes == dict.fromkeys(
        ["config.json", "config.toml", "run.json", "last.pt", "metrics.jsonl", "metrics.csv",
         "plain.txt"], 0o640
    )


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_replacement_keeps_the_mode_of_the_file_it_replaces(run):
    run.save_checkpoint("last.pt", {"step": 1})
    os.chmod(run.path / "last.pt", 0o604)
    run.save_checkpoint("last.pt", {"step": 2})
    assert mode_of(run.path / "last.pt") == 0o604 and run.load_checkpoint()["step"] == 2
    run.log({"kind": "step", "step": 1})
    run.log({"kind": "step", "step": 2})
    os.chmod(run.metrics_path, 0o620)
    assert run.truncate_after(1) == 1
    assert mode_of(run.metrics_path) == 0o620


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_failed_save_keeps_the_old_checkpoint(run, monkeypatch, error):
    run.save_checkpoint("last.pt", {"step": 1, "w": torch.ones(2)})
    real_save = torch.save

    def failing_save(obj, handle):
        real_save(obj, handle)  # part of the data reaches the temporary file, then it fails
        raise error

    monkeypatch.setattr(torch, "save", failing_save)
    # A full disk is the user's to fix: one line with the path, the free space, what is kept.
    with pytest.raises(EnasError if isinstance(error, OSError) else type(error)) as caught:
        run.save_checkpoint("last.pt", {"step": 2, "w": torch.zeros(2)})
    if isinstance(error, OSError):
        assert re.fullmatch(
            rf"{re.escape(str(run.path / 'last.pt'))}: cannot write \(No space left on device\); "
            r"[0-9.]+ (B|KiB|MiB|GiB|TiB) free on its disk; the previous last.pt is intact",
            str(caught.value),
        )
    monkeypatch.undo()
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]
    state = run.load_checkpoint("last.pt")
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(2))


def test_missing_or_corrupt_checkpoint_names_the_file(run):
    with pytest.raises(EnasError, match=r"best.pt: checkpoint not found"):
        run.load_checkpoint("best.pt")
    run.save_checkpoint("last.pt", {"step": 3, "w": torch.ones(100)})
    path = run.path / "last.pt"
    path.write_bytes(path.read_bytes()[:50])  # truncated
    with pytest.raises(EnasError, match=r"last.pt: not a readable checkpoint .*delete it"):
        run.load_checkpoint("last.pt")


class Opaque:
    """Pickled by reference: only the unsafe unpickler could rebuild it."""


def test_non_weights_only_checkpoint_is_refused_on_load(run):
    torch.save({"thing": Opaque()}, run.path / "odd.pt")
    with pytest.raises(EnasError, match=r"odd.pt: not a readable checkpoint"):
        run.load_checkpoint("odd.pt")


def test_unsafe_state_is_refused_at_save_time(run):
    with pytest.raises(TypeError, match=r"state\['extra'\]\['when'\] is a set"):
        run.save_checkpoint("last.pt", {"extra": {"when": {1}}})
    with pytest.raises(TypeError, match=r"is a float64"):
        check_checkpoint_state({"x": np.float64(1.0)})
    with pytest.raises(ValueError):
        run.save_checkpoint("../escape.pt", {})


def test_sigterm_sets_the_flag_and_exit_code_and_handlers_are_restored():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with GracefulInterrupt() as guard:
        assert not guard.interrupted and guard.exit_code is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.interrupted
        assert guard.signal_number == signal.SIGTERM
        assert guard.exit_code == 143
    after = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    assert after == before


def test_second_signal_raises_keyboard_interrupt():
    with GracefulInterrupt() as guard:
        os.kill(os.getpid(), signal.SIGINT)
        assert guard.exit_code == 130
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_graceful_interrupt_is_a_no_op_outside_the_main_thread():
    before = signal.getsignal(signal.SIGTERM)
    seen = {}

    def worker():
        with GracefulInterrupt() as guard:
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            seen["interrupted"] = guard.interrupted

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"handler": before, "interrupted": False}


# ------------------------------------------------------------------------ failures and tampering
def test_a_metrics_line_that_cannot_be_written_is_cut_off_and_reported(run, monkeypatch):
    run.log({"step": 1, "loss": 2.0})
    before = run.metrics_path.read_text()
    import enastool.runs as runs_module

    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs_module.os, "write", half_then_full)
    with pytest.raises(EnasError) as caught:
        run.log({"step": 2, "loss": 1.0})
    monkeypatch.undo()
    assert re.fullmatch(
        rf"{re.escape(str(run.metrics_path))}: cannot write \(No space left on device\); "
        r"[0-9.]+ (B|KiB|MiB|GiB|TiB) free on its disk; the records written before are intact",
        str(caught.value),
    )
    assert run.metrics_path.read_text() == before  # no torn half-line
    run.log({"step": 2, "loss": 1.0})
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


def test_a_run_records_the_digest_of_its_files_and_refuses_them_changed(tmp_path):
    config = resolve_final_config("smoke", "macro", arch="0 3 0 0 1 0")
    run = RunDir.create(tmp_path / "final", config)
    run.record_file("arch.txt", "macro 0 3 0 0 1 0\n")
    info = json.loads((run.path / "run.json").read_text())
    assert info["digests"] == {"config.json": digest(config.to_json()), "arch.txt": digest("macro 0 3 0 0 1 0\n")}
    # Reformatting config.json changes no setting: still the same run.
    data = json.loads((run.path / "config.json").read_text())
    (run.path / "config.json").write_text(json.dumps(data, indent=None))
    assert RunDir.open(run.path).config == config
    (run.path / "arch.txt").write_text("macro 0 3 0 0 1 1\n")
    with pytest.raises(EnasError, match=r"arch.txt: edited or replaced since the run started"):
        RunDir.open(run.path)
    (run.path / "arch.txt").write_text("macro 0 3 0 0 1 0\n")
    data["epochs"] = 20
    (run.path / "config.json").write_text(json.dumps(data))
    with pytest.raises(EnasError, match=r"config.json: the configuration differs from the one this run started with"):
        RunDir.open(run.path)


def test_a_dangling_symbolic_link_as_a_new_run_is_named(tmp_path, config):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "missing" / "run")
    with pytest.raises(EnasError) as caught:
        RunDir.create(link, config)
    assert str(caught.value) == (
        f"{link} is a symbolic link to {tmp_path / 'missing' / 'run'}, which does not exist; create the "
        "folder it points to, remove the link, or choose another --out"
    )


def test_the_same_state_saves_the_same_bytes_whatever_its_strings_history(run):
    # pickle refers back to a string only if it is the same object: a state restored from a
    # checkpoint (its strings unpickled anew) must still save byte for byte the same file.
    fresh = {"opt": {0: {"momentum_buffer": torch.ones(2)}, 1: {"momentum_buffer": torch.ones(2)}}}
    unpickled = {"opt": {0: {"".join(["momentum", "_buffer"]): torch.ones(2)}, 1: {"momentum_buffer": torch.ones(2)}}}
    run.save_checkpoint("a.pt", fresh)
    run.save_checkpoint("b.pt", unpickled)
    assert (run.path / "a.pt").read_bytes() == (run.path / "b.pt").read_bytes()
