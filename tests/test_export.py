"""`enastool export`: each format loads back and gives the network's logits; bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import enastool
from enastool.errors import EnasError
from enastool.export import METADATA_NAME, export_run
from enastool_cli.main import app

# The exported programs compute what the network computes, op for op, in float32: the only
# differences are summation orders of another runtime (onnxruntime's convolutions).
ATOL = RTOL = 1e-4
BATCHES = (1, 5)  # exported with a batch of 2: any batch size must run


def images(run, batch: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, *run.input_shape), dtype=torch.uint8, generator=generator)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def load_pt2(path):
    extra = {METADATA_NAME: ""}
    program = torch.export.load(str(path), extra_files=extra)
    return program.module(), json.loads(extra[METADATA_NAME]), program


def load_ts(path):
    extra = {METADATA_NAME: ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    return module, json.loads(extra[METADATA_NAME])


def run_onnx(path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_every_format_loads_back_and_matches_the_networks_logits(final_runs, tmp_path):
    """The micro run: dropout, drop path and an auxiliary head, all off in the exported program."""
    path = final_runs["micro"]
    run = enastool.load_run(path)
    written = {}
    for suffix in (".pt2", ".onnx", ".ts"):
        result = invoke("export", path, "-o", tmp_path / f"model{suffix}")
        assert result.exit_code == 0, result.output
        assert result.stdout == "" and f"model{suffix}" in result.stderr
        written[suffix] = tmp_path / f"model{suffix}"

    pt2, pt2_meta, program = load_pt2(written[".pt2"])
    ts, ts_meta = load_ts(written[".ts"])
    for batch in BATCHES:
        x = images(run, batch, seed=batch)
        expected = run.predict(x)
        torch.testing.assert_close(pt2(x), expected, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(ts(x), expected, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(run_onnx(written[".onnx"], x), expected, atol=ATOL, rtol=RTOL)
        assert torch.equal(pt2(x), pt2(x))  # deterministic: nothing random left
    # no dropout, no random op in the graph (drop path would draw random masks)
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert not [t for t in targets if "dropout" in t or "rand" in t or "bernoulli" in t]

    import onnx

    model = onnx.load(str(written[".onnx"]))
    onnx_meta = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_NAME])
    assert {op.op_type for op in model.graph.node}.isdisjoint({"Dropout", "RandomUniformLike", "Bernoulli"})
    for meta, name in ((pt2_meta, "torch.export"), (ts_meta, "TorchScript"), (onnx_meta, "ONNX")):
        assert meta["format"] == name
        assert meta["arch"] == (path / "arch.txt").read_text().strip()
        assert meta["input"]["shape"] == ["N", 1, 8, 8] and meta["input"]["dtype"] == "uint8"
        assert meta["input"]["mean"] == pytest.approx(list(run.mean))
        assert meta["output"]["shape"] == ["N", 10]
        assert (meta["checkpoint"], meta["epoch"]) == ("last.pt", 2)


@pytest.mark.slow
def test_macro_export_and_the_best_checkpoint(final_runs, tmp_path):
    run = enastool.load_run(final_runs["macro"], checkpoint="best")
    metadata = export_run(final_runs["macro"], tmp_path / "best.pt2", checkpoint="best")
    assert metadata["checkpoint"] == "best.pt"
    module, _, _ = load_pt2(tmp_path / "best.pt2")
    x = images(run, 3)
    torch.testing.assert_close(module(x), run.predict(x), atol=ATOL, rtol=RTOL)


def test_bad_input_is_one_line_and_exit_2(final_runs, search_run, tmp_path):
    cases = [
        ((final_runs["micro"], "-o", tmp_path / "model.zip"), "expected a file ending in .pt2"),
        ((final_runs["micro"], "-o", tmp_path / "model"), "found no suffix"),
        ((search_run, "-o", tmp_path / "model.pt2"), "is a search run: export writes the network of a final run"),
        ((tmp_path / "absent", "-o", tmp_path / "model.pt2"), "no such run directory"),
        ((final_runs["micro"], "-o", tmp_path / "no" / "model.pt2"), "no such directory"),
    ]
    for args, fragment in cases:
        result = invoke("export", *args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("enastool: error:") and fragment in lines[0], lines
    assert not list(tmp_path.glob("model*")) and not (tmp_path / "no").exists()


def test_onnx_without_its_extra_names_the_extra(tmp_path):
    """The onnx packages hidden: one line naming the extra, before any run is read."""
    code = (
        "import sys, importlib.util as u; real = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name in ('onnx', 'onnxscript') else real(name, *a)\n"
        "from enastool_cli.main import main; sys.argv = ['enastool', 'export', sys.argv[1], '-o', sys.argv[2]]\n"
        "main()"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "absent"), str(tmp_path / "m.onnx")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == ("enastool: error: ONNX export needs the onnx and onnxscript packages: "
                                  "pip install 'enastool[onnx]'")


def test_the_library_raises_enas_error_before_writing(final_runs, tmp_path):
    with pytest.raises(EnasError, match="expected a file ending in"):
        export_run(final_runs["micro"], tmp_path / "model.h5")
    assert not (tmp_path / "model.h5").exists()
