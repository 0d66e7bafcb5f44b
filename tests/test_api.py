"""The Python API (enastool.parse, build_network, load_run) and the networks' output contract."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import enastool
from enastool.data import load_dataset
from enastool.encoding import MicroArch
from enastool.errors import EnasError
from enastool.train.evaluate import evaluate_network, load_final_run, normalize

README = Path(__file__).resolve().parent.parent / "README.md"
MICRO_FINAL = "micro 0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1  1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"


def readme_api_example() -> str:
    """The python block of the README's "Python API" section."""
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section has one python example"
    return blocks[0]


def test_the_readme_example_runs(final_runs, tmp_path, monkeypatch, capsys):
    shutil.copytree(final_runs["micro"], tmp_path / "runs" / "demo" / "final")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_api_example(), str(README), "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert "micro 0 0 1 2" in printed and "digits (1, 8, 8)" in printed


def test_import_and_parse_do_not_import_torch():
    code = ("import sys, enastool; a = enastool.parse('0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2'); "
            "print(a.space, 'torch' in sys.modules, sorted(n for n in dir(enastool) if not n.startswith('_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    space, torch_loaded, names = out.stdout.split(" ", 2)
    assert (space, torch_loaded) == ("rnn", "False")
    for name in ("parse", "build_network", "load_run", "TrainedRun", "EnasError"):
        assert repr(name) in names


def test_parse_reads_every_text_form_and_refuses_bad_input():
    arch = enastool.parse(MICRO_FINAL)
    assert isinstance(arch, MicroArch) and f"micro {arch.format()}" == " ".join(MICRO_FINAL.split())
    assert enastool.parse(MICRO_FINAL.split(" ", 1)[1]) == arch  # bare encoding: space inferred
    from enastool.encoding.textio import to_json

    assert enastool.parse(to_json([arch])) == arch
    with pytest.raises(EnasError, match="record 1"):
        enastool.parse("micro 9 9")
    with pytest.raises(EnasError, match="exactly one"):
        enastool.parse(MICRO_FINAL + "\n" + MICRO_FINAL)
    with pytest.raises(enastool.EnasError, match="expected a string"):
        enastool.parse(b"micro 0")


def test_build_network_takes_the_space_defaults_and_overrides():
    default = enastool.build_network(MICRO_FINAL)
    assert len(default.cells) == 15 + 2 and default.aux_head is not None  # the authors' network
    small = enastool.build_network(MICRO_FINAL, layers=3, channels=8, in_channels=1, num_classes=4,
                                   aux_head=False)
    assert len(small.cells) == 3 + 2 and small.aux_head is None
    assert small.eval()(torch.randn(2, 1, 8, 8)).shape == (2, 4)


@pytest.mark.parametrize("space", ["macro", "micro"])
def test_eval_mode_returns_a_plain_logits_tensor_training_a_tuple_only_with_an_aux_head(final_runs, space):
    run = enastool.load_run(final_runs[space])
    x = torch.randn(3, *run.input_shape)
    assert not run.network.training
    assert isinstance(run.network(x), torch.Tensor)
    output = run.network.train()(x)
    if space == "micro":  # trained with aux_weight 0.4: the head exists
        logits, aux = output
        assert logits.shape == aux.shape == (3, 10)
    else:
        assert isinstance(output, torch.Tensor) and output.shape == (3, 10)
    run.network.eval()


def test_load_run_returns_network_architecture_and_normalisation(final_runs):
    run = enastool.load_run(final_runs["micro"])
    assert run.checkpoint == "last.pt" and run.epoch == 2
    assert f"{run.arch.space} {run.arch.format()}" == (final_runs["micro"] / "arch.txt").read_text().strip()
    info = load_dataset("digits", purpose="final").info
    assert run.mean == pytest.approx(info.mean) and run.std == pytest.approx(info.std)
    assert (run.dataset, run.input_shape, run.num_classes) == ("digits", (1, 8, 8), 10)
    # the same network evaluate builds, with the same weights
    model, arch, _ = load_final_run(final_runs["micro"])
    for (name, a), b in zip(model.state_dict().items(), run.network.state_dict().values()):
        assert torch.equal(a, b), name
    assert arch == run.arch


def test_predict_normalises_as_training_did_and_matches_the_test_accuracy(final_runs):
    run = enastool.load_run(final_runs["micro"])
    test = load_dataset("digits", purpose="final").test
    logits = run.predict(test.images)
    expected = run.network(normalize(test.images, run.mean, run.std))
    torch.testing.assert_close(logits, expected.detach())
    recorded = [r for r in _records(final_runs["micro"]) if r["kind"] == "epoch"][-1]["test_accuracy"]
    assert (logits.argmax(1) == test.labels).float().mean().item() == pytest.approx(recorded)
    scored = evaluate_network(run.network, test.images, test.labels, 64, "cpu", mean=run.mean, std=run.std)
    assert scored["accuracy"] == pytest.approx(recorded)
    with pytest.raises(EnasError, match="expected N x 1 x 8 x 8"):
        run.predict(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_load_run_refuses_search_runs_and_missing_folders(tmp_path, search_run):
    with pytest.raises(EnasError, match="no such run directory"):
        enastool.load_run(tmp_path / "absent")
    with pytest.raises(EnasError, match="is a search run, expected a final run"):
        enastool.load_run(search_run)


def test_a_checkpoint_without_its_normalisation_reads_it_from_the_data_set(final_runs, tmp_path):
    """Checkpoints written before the data record existed still load (digits is at hand)."""
    from enastool.runs import RunDir

    copy = tmp_path / "old"
    shutil.copytree(final_runs["macro"], copy)
    run = RunDir.open(copy)
    for name in ("last.pt", "best.pt"):
        state = run.load_checkpoint(name)
        del state["data"]
        run.save_checkpoint(name, state)
    old = enastool.load_run(copy)
    new = enastool.load_run(final_runs["macro"])
    assert old.mean == pytest.approx(new.mean) and old.input_shape == new.input_shape


def _records(path):
    from enastool.runs import RunDir

    return RunDir.open(path).read_metrics()
