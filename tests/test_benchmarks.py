"""The benchmark scripts run end to end (at toy sizes), so that they cannot rot unnoticed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def script_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_part_and_projects_the_paper_runs(tmp_path):
    raw = tmp_path / "check.json"
    out = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), "--dry-run", "--json", str(raw)],
                         capture_output=True, text=True, env=script_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = out.stdout
    for row in ("| macro supernet |", "| micro supernet |", "| macro final |", "| micro final |",
                "| rnn supernet |", "| rnn final |"):
        assert row in report
    assert "paper micro search, 150 epochs:" in report
    assert "paper micro final training, 630 epochs:" in report
    parts = {p["name"]: p for p in json.loads(raw.read_text())}
    assert [p["status"] for name, p in parts.items() if not name.startswith("compiled")] == ["ok"] * 5
    assert all(p["status"] == "skipped (--dry-run)" for n, p in parts.items() if n.startswith("compiled"))
    steps = parts["steps"]["result"]["rows"] + parts["final steps"]["result"]["rows"]
    assert len(steps) == 4 and all(r["images_per_s"] > 0 and r["fwd_gflops"] > 0 for r in steps)
    assert all(r["layout"] == "channels_last" and r["kernels"] == "cpu" for r in steps)
    search = parts["search"]["result"]
    assert search["strategy"] == "enas" and [e["epoch"] for e in search["epochs"]] == [1, 2]
    assert all(e["train_s"] > 0 and e["update_s"] > 0 for e in search["epochs"])
    final = parts["final"]["result"]
    assert final["compile"] is False and all(e["test_s"] > 0 for e in final["epochs"])


def test_enastool_step_times_the_search_steps_on_a_synthetic_cifar10(tmp_path):
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "enastool_step.py"), "--network", "micro-supernet", "--layers", "3",
         "--channels", "4", "--blocks", "2", "--batch", "4", "--steps", "2", "--warmup", "1", "--threads", "1",
         "--peer-work"],
        capture_output=True, text=True, env=script_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["setting"] == "L=3 C=4 B=2 batch=4" and result["steps"] == 2 and len(result["step_ms"]) == 2
    assert result["images_per_s"] > 0 and result["fwd_flops_per_image"] > 0
    assert result["threads"] == 1 and Path(result["enastool_path"]) == ROOT and result["peer_work"] is True
