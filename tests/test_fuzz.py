"""Generated bad input to every parser and loader, through the command line (in-process).

Architecture text of every format, NAO lines, option values, TOML configs, CIFAR-10 batch files
and run directories (run.json, config.json, metrics.jsonl, arch.txt, last.pt down to single
tensors) are generated or mutated by hypothesis and handed to the commands that read them. Each
example must end with

- exit status 2, nothing on stdout, and only ``enastool: error: ...`` lines on stderr: exactly
  one where the input is one record or one file, one per bad record otherwise; or
- exit status 0, where the generator happened to make something valid;

never a traceback or an "out of memory" (every input is small), and within ``DEADLINE``: what a command does is bounded by the size of its
input, so an example that takes longer is a hang in the making (a DARTS ``range(0, 10**12)`` once
allocated without end, a 20,000-layer JSON took minutes). The deadline is a hang detector set
far above the milliseconds an example takes, not a speed measurement.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enastool.config import SearchConfig, resolve_final_config, resolve_search_config
from enastool.data import cifar10
from enastool.encoding import MacroArch, MicroArch
from enastool.encoding.darts import to_darts
from enastool.encoding.nao import format_nao
from enastool.runs import RunDir
from enastool.search.loop import search
from enastool.train.trainer import train_final
from enastool_cli.main import app

PREFIX = "enastool: error: "
DEADLINE = timedelta(seconds=10)
# module fixtures are shared by the examples on purpose; each example makes its own temp folder
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]


def fuzz(examples: int, deadline: timedelta = DEADLINE):
    return settings(max_examples=examples, deadline=deadline, suppress_health_check=HEALTH)
MACRO = MacroArch.sample(1, num_layers=4)
MICRO = MicroArch.sample(2, num_blocks=2)
RECORDS = f"macro {MACRO.format()}\nmicro {MICRO.format()}\n"
NOWHERE = "/nonexistent/enastool-fuzz"  # a data directory that cannot exist
# Every example that gets past the option it fuzzes stops here, at the data, before any work.
STOP_AT_DATA = ["--preset", "smoke", "--dataset", "cifar10", "--data-dir", NOWHERE]


def invoke(args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def assert_clean(result, single: bool = True) -> None:
    """Exit 0, or exit 2 with one error line per bad record (one in all when ``single``)."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: the bug this test is here to find
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert result.stdout == "", result.output
        assert lines and all(line.startswith(PREFIX) for line in lines), result.stderr
        assert not single or len(lines) == 1, result.stderr
        # Every input here is small: running out of memory on one is a bug (the CLI's one-line
        # report of a failed allocation must not hide it).
        assert "out of memory" not in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------
# Architecture text: records, bare encodings, JSON, DARTS genotypes, NAO lines.
# --------------------------------------------------------------------------------------------

WORDS = ["macro", "micro", "mcro", "Genotype", "Genotypes(", "#", "[", "{", "]", "-", "1.5", "0x1", "٣",
         "-0", "9" * 13, "nan", "True", "None", "\x00", "\ufeff"]
token = st.one_of(
    st.integers(-(10**15), 10**15).map(str),
    st.sampled_from(WORDS),
    st.text(st.characters(blacklist_categories=["Zs", "Cc", "Cs"]), min_size=1, max_size=6),  # Cs: no lone surrogates
)
# The commands that read architectures, and whether they take a file name for their output.
READERS = [["validate"], ["convert", "--to", "json"], ["convert", "--to", "darts"], ["info", "--format", "json"],
           ["render", "-o", "{tmp}/out.dot"]]


@st.composite
def mutated_text(draw) -> str:
    tokens = RECORDS.split()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(tokens)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "repeat"]))
        if action == "replace" and at < len(tokens):
            tokens[at] = draw(token)
        elif action == "insert":
            tokens.insert(at, draw(token))
        elif action == "delete" and at < len(tokens):
            del tokens[at]
        elif action == "repeat":  # long records: past the size limits
            tokens[at:at] = tokens[at : at + 8] * draw(st.integers(1, 10) | st.sampled_from([300, 2000]))
    separators = draw(st.lists(st.sampled_from([" ", "\n", "\t", "  # note\n"]), min_size=1, max_size=3))
    return "".join(t + separators[i % len(separators)] for i, t in enumerate(tokens))


def run_reader(command, text) -> object:
    with tempfile.TemporaryDirectory() as tmp:
        return invoke([part.format(tmp=tmp) for part in command] + ["-"], input=text)


@fuzz(150)
@given(st.sampled_from(READERS), st.one_of(mutated_text(), st.text(max_size=300), st.binary(max_size=300)))
def test_text_of_any_shape_is_one_line_per_bad_record(command, text):
    assert_clean(run_reader(command, text), single=False)


JSON_KEYS = ["space", "layers", "op", "skips", "normal", "reduce", "inputs", "ops", "score"]
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
    | st.sampled_from(["macro", "micro", "conv3x3", "sep5x5", "identity", "maxpool3x3"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(JSON_KEYS) | st.text(max_size=4), inner, max_size=5),
    max_leaves=25,
)


@st.composite
def json_record(draw) -> dict:
    """A JSON architecture object: a real one with parts replaced, or a generated one."""
    if draw(st.booleans()):
        return {"space": draw(st.sampled_from(["macro", "micro", "rnn"])), **draw(st.dictionaries(st.sampled_from(JSON_KEYS), json_value, max_size=4))}
    record = draw(st.sampled_from([MACRO, MICRO])).to_dict()
    key = draw(st.sampled_from(sorted(record)))
    if draw(st.booleans()) and isinstance(record[key], list) and record[key]:
        items = record[key]
        index = draw(st.integers(0, len(items) - 1))
        items[index] = draw(json_value) if draw(st.booleans()) else {**items[index], draw(st.sampled_from(JSON_KEYS)): draw(json_value)}
        if draw(st.booleans()):  # absurd sizes: thousands of layers or blocks
            record[key] = items * draw(st.integers(1, 10) | st.sampled_from([100, 1000, 5000]))
    else:
        record[key] = draw(json_value)
    return record


@fuzz(100)
@given(st.sampled_from(READERS), json_record())
def test_a_json_record_of_any_shape_is_at_most_one_line(command, record):
    assert_clean(run_reader(command, json.dumps(record)))


literal = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**15), 10**15) | st.text(max_size=6)
    | st.sampled_from(["sep_conv_3x3", "skip_connect", "max_pool_3x3", "dil_conv_3x3"]),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner),
    max_leaves=12,
).map(repr)
# Integers with the extremes drawn as often as the ordinary values: the bugs live there.
EXTREME = st.sampled_from([0, 1, 2, 5, -1, 10**6, 10**12, -(10**12), 2**63, 2**64 + 1])
BOUND = st.integers(-10, 10) | EXTREME
FIELD_VALUES = st.one_of(
    literal,
    st.builds(lambda a, b: f"range({a}, {b})", BOUND | st.just("True"), BOUND),
    st.builds(lambda a: f"range({a})", BOUND),
    st.sampled_from(["[x for x in y]", "f()", "2**99999", "[" * 500, "...", "lambda: 0", "*a", "**k"]),
)


@st.composite
def genotype_text(draw) -> str:
    """A DARTS genotype: a real one with fields replaced, repeated or cut, or a generated one."""
    text = to_darts(MICRO)
    names = ["normal", "normal_concat", "reduce", "reduce_concat"]
    shape = draw(st.sampled_from(["generated", "one field replaced", "one field twice"]))
    if shape == "generated":
        fields = draw(st.lists(st.tuples(st.sampled_from([*names, "other"]), FIELD_VALUES), max_size=6))
        text = "Genotype(" + ", ".join(f"{name}={value}" for name, value in fields) + ")"
    elif shape == "one field replaced":  # the rest valid, so the replaced field is what is read
        fields = {}
        for name, cell in zip(("normal", "reduce"), MICRO.cells):
            fields[name] = repr([(op.darts, index) for block in cell.blocks for index, op in block.branches])
            fields[f"{name}_concat"] = repr(list(cell.loose_ends))
        fields[draw(st.sampled_from(names))] = draw(FIELD_VALUES)
        text = "Genotype(" + ", ".join(f"{name}={value}" for name, value in fields.items()) + ")"
    else:
        text = text[:-1] + f", {draw(st.sampled_from(names))}={draw(FIELD_VALUES)})"
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]  # cut anywhere
    return draw(st.sampled_from(["", "DARTS_V2 = ", "X="])) + text


@fuzz(100)
@given(st.sampled_from(READERS), genotype_text())
def test_a_darts_genotype_of_any_shape_is_at_most_one_line(command, text):
    result = run_reader(command, text)
    assert_clean(result, single="Genotype" in text[:20] and text.count("Genotype") == 1)


@fuzz(60)
@given(st.lists(st.one_of(st.lists(st.integers(-3, 15), max_size=60).map(lambda v: " ".join(map(str, v))),
                          st.just(format_nao(MICRO)), st.lists(token, max_size=20).map(" ".join)), max_size=4))
def test_nao_lines_of_any_shape_are_one_line_per_bad_line(lines):
    result = invoke(["validate", "--from", "nao", "-"], input="\n".join(lines))
    assert_clean(result, single=False)


# --------------------------------------------------------------------------------------------
# Options and TOML configs: every value either passes the settings' rules or is one line.
# --------------------------------------------------------------------------------------------

NUMBER_TEXT = st.one_of(
    st.integers(-(2**80), 2**80).map(str), st.floats().map(repr), st.sampled_from(["nan", "inf", "-inf", "1e400", "", "x", "0x10"]),
)
SEARCH_NUMBERS = ["--epochs", "--seed", "--layers", "--channels", "--num-blocks", "--batch-size", "--val-size",
                  "--lr-max", "--lr-min", "--l2", "--grad-clip", "--controller-samples", "--controller-updates",
                  "--log-every", "--checkpoint-every"]
FINAL_NUMBERS = ["--layers", "--channels", "--epochs", "--batch-size", "--cutout", "--aux-weight", "--drop-path-keep",
                 "--dropout-keep", "--lr-max", "--lr-min", "--l2", "--grad-clip", "--eval-every", "--seed"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "arch.txt"
    path.write_text(f"micro {MICRO.format()}\n")
    return path


@fuzz(60)
@given(st.data())
def test_any_number_in_an_option_is_one_line(source, data):
    with tempfile.TemporaryDirectory() as tmp:
        if data.draw(st.booleans()):
            options = data.draw(st.lists(st.tuples(st.sampled_from(SEARCH_NUMBERS), NUMBER_TEXT), min_size=1, max_size=3))
            args = ["search", *STOP_AT_DATA, "--out", f"{tmp}/run"]
        else:
            options = data.draw(st.lists(st.tuples(st.sampled_from(FINAL_NUMBERS), NUMBER_TEXT), min_size=1, max_size=3))
            args = ["train-final", source, *STOP_AT_DATA, "--out", f"{tmp}/run"]
        result = invoke(args + [part for pair in options for part in pair])
        assert_clean(result)
        assert result.exit_code == 2 and not Path(tmp, "run").exists()


SET_TEXT = st.one_of(NUMBER_TEXT, st.sampled_from(["true", "off", "auto", "none", '"x"', "[1]", "{a=1}", "=", "1 2"]),
                    st.text(max_size=8))


@fuzz(40)
@given(st.data())
def test_any_set_assignment_is_one_line(source, data):
    """--set KEY=VALUE with any key (or a near miss) and any text: one line, exit 2, nothing made
    (the examples that set something valid stop at the data, as above)."""
    from enastool.config import FinalConfig, SearchConfig

    final = data.draw(st.booleans())
    cls = FinalConfig if final else SearchConfig
    key = data.draw(st.one_of(st.sampled_from(cls.field_names()), st.text(min_size=0, max_size=6)))
    assignment = f"{key}={data.draw(SET_TEXT)}" if data.draw(st.integers(0, 9)) else key
    with tempfile.TemporaryDirectory() as tmp:
        args = ["train-final", source] if final else ["search"]
        result = invoke([*args, *STOP_AT_DATA, "--out", f"{tmp}/run", "--set", assignment])
        assert_clean(result)
        assert result.exit_code == 2 and not Path(tmp, "run").exists()


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else "-inf" if value == float("-inf") else repr(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for these characters
    return str(value)


toml_scalar = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(), st.text(st.characters(codec="ascii"), max_size=8),
    st.lists(st.integers(-5, 5), max_size=3),
)
toml_key = st.sampled_from(SearchConfig.field_names()) | st.sampled_from(["epochz", "arch", "eval_every", "compile"])


@st.composite
def toml_text(draw) -> str:
    lines = [f"{key} = {toml_value(value)}" for key, value in draw(st.dictionaries(toml_key, toml_scalar, max_size=4)).items()]
    for table in draw(st.lists(st.sampled_from(["search", "final", "other"]), max_size=2, unique=True)):
        lines.append(f"[{table}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in draw(st.dictionaries(toml_key, toml_scalar, max_size=3)).items()]
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 4)) == 0:
        text = text[: draw(st.integers(0, len(text)))] + draw(st.sampled_from(["=", "[", "\x00", "\xff", '"']))
    return text


@fuzz(60)
@given(toml_text(), st.booleans())
def test_any_toml_config_is_one_line(source, text, final):
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "c.toml")
        config.write_text(text, encoding="utf-8")
        head = ["train-final", source] if final else ["search"]
        result = invoke([*head, *STOP_AT_DATA, "--config", config, "--out", f"{tmp}/run"])
        assert_clean(result)
        assert result.exit_code == 2 and not Path(tmp, "run").exists()


# --------------------------------------------------------------------------------------------
# CIFAR-10 batch files.
# --------------------------------------------------------------------------------------------

IMAGES = 4


def good_batch(count: int = IMAGES) -> dict:
    return {b"batch_label": b"fuzz", b"labels": [i % 10 for i in range(count)],
            b"data": np.zeros((count, cifar10.PIXELS_PER_IMAGE), np.uint8)}


arrays = st.builds(
    lambda shape, dtype: np.zeros(shape, dtype),
    st.lists(st.integers(0, 4000), max_size=3).map(tuple),
    st.sampled_from([np.uint8, np.int64, np.float32, np.bool_, object]),
)
batch_value = st.one_of(arrays, st.binary(max_size=7000), st.lists(st.integers(-3, 12) | st.booleans(), max_size=8),
                        st.none(), st.text(max_size=4), st.integers())


@st.composite
def batch_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["structure", "mutated", "raw", "huge length", "memo index"]))
    if kind == "structure":
        batch = good_batch()
        for key in draw(st.lists(st.sampled_from([b"data", b"labels", "data", b"x"]), max_size=2)):
            if draw(st.booleans()):
                batch.pop(key, None)
            else:
                batch[key] = draw(batch_value)
        obj = batch if draw(st.integers(0, 5)) else draw(batch_value)
        return pickle.dumps(obj, protocol=draw(st.integers(0, pickle.HIGHEST_PROTOCOL)))
    if kind == "mutated":
        data = bytearray(pickle.dumps(good_batch(), protocol=2))
        for _ in range(draw(st.integers(1, 5))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind == "huge length":  # a counted opcode claiming far more than the file holds
        opcode = draw(st.sampled_from([b"\x8e", b"\x8d", b"B", b"X"]))
        width = "<Q" if opcode in (b"\x8e", b"\x8d") else "<I"
        length = draw(st.integers(2**20, 2**63 - 1 if width == "<Q" else 2**32 - 1))
        return b"\x80\x04" + opcode + struct.pack(width, length) + draw(st.binary(max_size=20))
    if kind == "memo index":  # a memo slot far beyond the objects stored (CPython grows the memo to it)
        put = draw(st.sampled_from([b"r" + struct.pack("<I", draw(st.integers(2, 2**32 - 1))),
                                    b"q" + bytes([draw(st.integers(2, 255))]),
                                    b"p" + str(draw(st.integers(2, 10**12))).encode() + b"\n"]))
        return b"\x80\x02]" + put + draw(st.binary(max_size=20))
    return draw(st.binary(max_size=500))


@fuzz(40)
@given(batch_bytes())
def test_any_cifar_batch_file_is_one_line_naming_it(data):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "cifar")
        folder.mkdir()
        (folder / cifar10.TRAIN_FILES[0]).write_bytes(data)
        for name in cifar10.TRAIN_FILES[1:]:  # valid, and test_batch absent: every example stops
            (folder / name).write_bytes(pickle.dumps(good_batch(), protocol=2))
        result = invoke(["search", "--preset", "smoke", "--data-dir", folder, "--out", f"{tmp}/run"])
        assert_clean(result)
        assert result.exit_code == 2
        assert cifar10.TRAIN_FILES[0] in result.stderr or cifar10.TEST_FILE in result.stderr


# --------------------------------------------------------------------------------------------
# Run directories.
# --------------------------------------------------------------------------------------------

SEARCH_TINY = dict(device="cpu", dtype="float32", channels_last=False, channels=4, batch_size=128, epochs=1,
                   controller_samples=2, controller_updates=2, log_every=3)
FINAL_TINY = dict(device="cpu", compile=False, channels_last=False, dtype="float32", channels=4,
                  batch_size=128, epochs=1, log_every=5)
RUN_READERS = {
    "search": [["derive", "{run}", "--samples", "1", "--batches", "1", "--quiet"], ["search", "--resume", "{run}", "--quiet"]],
    "final": [["evaluate", "{run}"], ["train-final", "--resume", "{run}", "--quiet"]],
}


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-runs")
    config = resolve_search_config("smoke", "micro", overrides=SEARCH_TINY)
    search(config, RunDir.create(root / "search", config))
    config = resolve_final_config("smoke", "micro", overrides=FINAL_TINY, arch=MICRO)
    train_final(MICRO, config, RunDir.create(root / "final", config))
    return root


def paths_in(value, where=()):
    """Every path to a value inside a nested checkpoint."""
    found = [where] if where else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_in(item, (*where, key))
    elif isinstance(value, (list, tuple)) and len(value) < 20:
        for index, item in enumerate(value):
            found += paths_in(item, (*where, index))
    return found


other_value = st.one_of(
    st.none(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=4), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(0, 3), min_size=1, max_size=3).map(lambda shape: torch.zeros(shape)),
)


@st.composite
def checkpoint_mutation(draw, state: dict):
    paths = paths_in(state)
    path = draw(st.sampled_from(paths))
    action = draw(st.sampled_from(["delete", "replace", "reshape"]))
    replacement = draw(other_value.filter(lambda v: type(v) is not type(_get(state, path))))
    return path, action, replacement


def _get(value, path):
    for key in path:
        value = value[key]
    return value


def mutate_checkpoint(file: Path, path, action, replacement) -> None:
    state = torch.load(file, weights_only=True)
    parent = _get(state, path[:-1])
    key = path[-1]
    if isinstance(parent, tuple):
        return  # immutable: leave this one alone
    if action == "delete" and isinstance(parent, dict):
        del parent[key]
    elif action == "reshape" and isinstance(parent[key], torch.Tensor) and parent[key].numel() > 1:
        parent[key] = parent[key].reshape(-1)[:-1]
    else:
        parent[key] = replacement
    torch.save(state, file)


FILES = {"search": ["run.json", "config.json", "metrics.jsonl", "last.pt"],
         "final": ["run.json", "config.json", "metrics.jsonl", "last.pt", "arch.txt", "best.pt"]}


@fuzz(40, deadline=timedelta(seconds=30))  # some examples resume a run: seconds each
@given(st.data())
def test_any_broken_run_directory_is_one_line(finished_runs, data):
    kind = data.draw(st.sampled_from(sorted(RUN_READERS)))
    # Checkpoints have the most structure to get wrong: half the examples break one.
    name = data.draw(st.sampled_from(FILES[kind] + ["last.pt"] * len(FILES[kind])))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp, "run")
        shutil.copytree(finished_runs / kind, run)
        file = run / name
        if name.endswith(".pt") and data.draw(st.integers(0, 3)):  # 3 in 4: one entry, else the bytes
            state = torch.load(file, weights_only=True)
            mutate_checkpoint(file, *data.draw(checkpoint_mutation(state)))
        elif name.endswith(".json") and data.draw(st.booleans()):
            value = json.loads(file.read_text())
            if isinstance(value, dict) and value and data.draw(st.booleans()):
                value[data.draw(st.sampled_from(sorted(value)))] = data.draw(json_value)
            else:
                value = data.draw(json_value)
            file.write_text(json.dumps(value))
        else:
            original = file.read_bytes()
            cut = data.draw(st.integers(0, len(original)))
            file.write_bytes(original[:cut] + data.draw(st.binary(max_size=64)))
        command = data.draw(st.sampled_from(RUN_READERS[kind]))
        assert_clean(invoke([part.format(run=run) for part in command]))
