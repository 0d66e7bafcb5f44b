"""train-final when something goes wrong: nothing half-made is left behind, and a run stopped
before its first checkpoint still resumes."""

import json

from click.testing import CliRunner

from enastool.runs import RunDir
from enastool_cli.main import app

SMALL = ["--preset", "smoke", "--device", "cpu", "--channels", "4", "--epochs", "1"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enastool: error: "), result.stderr
    return lines[0]


def test_a_run_that_cannot_be_built_leaves_no_run_directory(tmp_path, micro_final):
    arch = tmp_path / "arch.txt"
    arch.write_text(str(micro_final) + "\n")
    out = tmp_path / "run"
    line = one_error_line(invoke("train-final", arch, *SMALL, "--layers", "2", "--out", out))
    assert "need at least 3" in line
    assert not out.exists()
    # the corrected command then works on the same --out
    assert invoke("train-final", arch, *SMALL, "--out", out, "--quiet").exit_code == 0


def test_paper_augmentation_on_8x8_digits_is_refused_before_anything_is_written(tmp_path, micro_final):
    arch = tmp_path / "arch.txt"
    arch.write_text(str(micro_final) + "\n")
    out = tmp_path / "run"
    line = one_error_line(invoke("train-final", arch, "--preset", "paper", "--device", "cpu", "--out", out))
    assert "preset 'paper': cutout = 16 covers the whole 8x8 image of digits" in line
    assert "--preset smoke" in line and "--data-dir" in line
    assert not out.exists()


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path, micro_final):
    arch = tmp_path / "arch.txt"
    arch.write_text(str(micro_final) + "\n")
    out = tmp_path / "run"
    assert invoke("train-final", arch, *SMALL, "--out", out, "--quiet").exit_code == 0
    finished = (out / "metrics.jsonl").read_text()
    # As if killed hard before the first checkpoint: no last.pt, a stray metrics line.
    for name in ("last.pt", "best.pt"):
        (out / name).unlink()
    (out / "metrics.jsonl").write_text('{"kind": "step", "step": 3, "loss": 1.0}\n')
    resumed = invoke("train-final", "--resume", out, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert (out / "last.pt").exists()
    records = RunDir.open(out).read_metrics()
    assert [r["kind"] for r in records].count("done") == 1
    assert {"kind": "step", "step": 3, "loss": 1.0} not in records  # the stray line is gone
    first_try = [json.loads(line) for line in finished.splitlines()]
    # The same training from the start: the same records, losses included (timings aside).
    assert [(r["kind"], r.get("step"), r.get("loss")) for r in records] == [
        (r["kind"], r.get("step"), r.get("loss")) for r in first_try
    ]


def test_resuming_a_finished_run_adds_no_second_done_record(tmp_path, micro_final):
    arch = tmp_path / "arch.txt"
    arch.write_text(str(micro_final) + "\n")
    out = tmp_path / "run"
    assert invoke("train-final", arch, *SMALL, "--out", out, "--quiet").exit_code == 0
    before = (out / "metrics.jsonl").read_text()
    assert invoke("train-final", "--resume", out, "--quiet").exit_code == 0
    assert (out / "metrics.jsonl").read_text() == before


def test_bad_numbers_float16_on_a_cpu_and_a_dangling_out_are_one_line(tmp_path, micro_final):
    arch = tmp_path / "arch.txt"
    arch.write_text(str(micro_final) + "\n")
    out = tmp_path / "run"
    cases = [
        (["--seed", "99999999999999999999999", "--out", out], "seed = 99999999999999999999999 must be in [0, 4,294,967,295]"),
        (["--channels", "100000", "--out", out], "channels = 100000 must be in [1, 1,024]"),
        (["--dtype", "float16", "--out", out], "--dtype float16 needs a CUDA device: on cpu float16 is emulated"),
    ]
    for options, fragment in cases:
        line = one_error_line(invoke("train-final", arch, *SMALL, *options))
        assert fragment in line, line
        assert not out.exists()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    line = one_error_line(invoke("train-final", arch, *SMALL, "--out", link))
    assert f"{link} is a symbolic link to {tmp_path / 'gone'}, which does not exist" in line
