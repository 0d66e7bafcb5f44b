"""The encoding commands: validate, convert, render, info, sample, as a user runs them."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from enastool import __version__
from enastool.encoding import MacroArch, MicroArch, RecurrentArch
from enastool.encoding.darts import from_darts
from enastool.encoding.nao import parse_nao_text
from enastool.encoding.render import MISSING_DOT
from enastool.encoding.textio import load_archs
from enastool_cli.main import COMMANDS, app

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
INVALID = FIXTURES / "invalid"
RECORDS = str(FIXTURES / "authors_final.records")
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MICRO_FINAL = "micro 0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
RNN_FINAL = "rnn 0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2"  # reference sec. 2 and 8
RNN_FINAL_DARTS = (
    "Genotype(recurrent=[('sigmoid', 0), ('tanh', 1), ('relu', 2), ('sigmoid', 2), ('tanh', 4), "
    "('tanh', 5), ('sigmoid', 3), ('sigmoid', 6)], concat=range(1, 9))"
)


def run(*args, input=None, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env, catch_exceptions=False)


def error_lines(result) -> list[str]:
    return result.stderr.splitlines()


@pytest.fixture(scope="module")
def authors():
    return load_archs(RECORDS)


# ----------------------------------------------------------------- the application
def test_help_lists_every_subcommand_and_version_prints_it():
    result = run("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout
    for name in ("validate", "convert", "render", "info", "sample"):
        assert run(name, "--help").exit_code == 0
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"enastool, version {__version__}"


def test_importing_the_encoding_commands_does_not_import_torch():
    code = (
        "import sys, enastool.encoding, enastool.encoding.render, enastool_cli.main, "
        "enastool_cli.encoding_cmds; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------- validate
def test_validate_accepts_every_valid_fixture_and_says_which_space_it_read():
    for name, said in [
        ("authors_final.records", "2 records valid (1 macro, 1 micro)"),
        ("authors_final.json", "2 records valid (1 macro, 1 micro)"),
        ("macro_final.txt", "1 record valid (macro)"),
        ("micro_final.txt", "1 record valid (micro)"),
        ("micro_final.darts", "1 record valid (micro)"),
        ("micro_final.nao", "1 record valid (micro)"),  # a .nao file is read as NAO tokens
        ("rnn_final.txt", "1 record valid (rnn)"),  # 16 bare integers: micro's length, valid only as rnn
        ("rnn_final.darts", "1 record valid (rnn)"),
        ("rnn_final.json", "1 record valid (rnn)"),
        ("rnn_darts_v2.darts", "1 record valid (rnn)"),
    ]:
        result = run("validate", FIXTURES / name)
        assert (result.exit_code, result.stdout) == (0, ""), name
        assert result.stderr == said + "\n", name


# file -> the exact error line of `enastool validate` (after "enastool: error: <path>: ").
INVALID_LINES = {
    "ambiguous_space.txt": "record 1: found 120 integers, which more than one space accepts (macro and micro "
    "and rnn); pass --space macro or --space micro or --space rnn",
    "bad_json.json": "invalid JSON: Expecting ',' delimiter at line 2 column 1",
    "bare_valid_nowhere.txt": "record 1: found 16 integers, valid in no space that accepts that many "
    "(micro: token 9: reduction cell node 2 index_1: found 4, expected an index 0..1; "
    "rnn: token 15: node 8 prev_index: found 9, expected 0..7)",
    "binary_garbage.bin": "found binary data (NUL byte at offset 12), expected text",
    "bit_out_of_range.txt": "record 1: token 5: layer 2 skip bit 0: found 2, expected 0 or 1",
    "darts_concat.darts": "record 1: DARTS normal_concat: found [2, 3], expected the loose ends [3] "
    "(ENAS concatenates exactly the nodes no block uses)",
    "darts_rnn_concat.darts": "record 1: DARTS concat: found [2, 5, 6, 9, 10, 11], expected range(1, 12), "
    "every node 1..11 (ENAS averages all nodes after node 0; a mean of other nodes is another network)",
    "darts_rnn_none.darts": "record 1: DARTS recurrent pair 3 (node 3): activation 'none' has no ENAS "
    "equivalent (an ENAS node always applies an activation to the node it reads), expected one of "
    "tanh, relu, sigmoid, identity",
    "empty.txt": "found no architecture (the input is empty or only comments)",
    "float_number.txt": "record 1: token 2: found '1.0', expected an integer",
    "index_out_of_range.records": "record 1: token 13: normal cell node 5 index_1: found 9, expected an index 0..4",
    "long_number.txt": "record 1: token 2: found a 20-digit number, expected at most 12 digits",
    "nao_op_out_of_range.nao": "record 1: token 4: normal cell node 2 op_2: found 12, expected an op token 7..11",
    "negative_number.txt": "record 1: token 3: found -1, expected a non-negative integer",
    "non_integer.records": "record 2: token 7: found 'x', expected an integer",
    "op_out_of_range.records": "record 1: token 2: normal cell node 2 op_1: found 5, "
    "expected a micro op id 0..4",
    "rnn_legacy_format.records": "record 1: found 17 integers, expected an even count (2 per node: "
    "prev_index activation); an odd count looks like the older 2N+1-integer format of the first ENAS "
    "repository (melodyguan/enas), whose activation order differs (tanh, relu, identity, sigmoid); "
    "enastool reads the corrected format of google-research enas_lm (activation 0 tanh, 1 relu, "
    "2 sigmoid, 3 identity)",
    "truncated_record.records": "record 2: found no integers after 'micro', expected a micro encoding "
    "(truncated record?)",
    "unknown_darts_op.darts": "record 1: DARTS normal node 2 pair 2: op 'dil_conv_3x3' has no ENAS equivalent, "
    "expected one of sep_conv_3x3, sep_conv_5x5, avg_pool_3x3, max_pool_3x3, skip_connect",
    "unknown_keyword.records": "record 2: found 'mcro', expected a space keyword: macro or micro or rnn "
    "(did you mean 'micro'?)",
    "wrong_length.records": "record 1: found 39 integers, expected a positive multiple of 8 "
    "(8 per block: 4 in the normal cell, 4 in the reduction cell)",
}


def test_every_invalid_fixture_has_its_expected_line():
    assert set(INVALID_LINES) == {p.name for p in INVALID.iterdir()}


@pytest.mark.parametrize("name", sorted(INVALID_LINES))
@pytest.mark.parametrize("command", [["validate"], ["convert", "--to", "json"], ["info"]])
def test_invalid_fixture_gives_one_located_line_and_exit_2(name, command):
    result = run(*command, INVALID / name)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert error_lines(result) == [f"enastool: error: {INVALID / name}: {INVALID_LINES[name]}"]


def test_validate_reports_every_bad_record_of_stdin():
    text = "macro 0 1 0\nmicro 0 5 1 4 1 2 0 3\nmcro 0\nmacro 0 1 x\n"
    result = run("validate", "-", input=text)
    assert result.exit_code == 2
    assert error_lines(result) == [
        "enastool: error: <stdin>: record 2: token 2: normal cell node 2 op_1: found 5, expected a micro op id 0..4",
        "enastool: error: <stdin>: record 3: found 'mcro', expected a space keyword: macro or micro or rnn "
        "(did you mean 'micro'?)",
        "enastool: error: <stdin>: record 4: token 3: found 'x', expected an integer",
    ]


def test_validate_reads_stdin_by_default_and_honours_space():
    zeros = " ".join(["0"] * 120)
    assert run("validate", input=zeros).exit_code == 2
    result = run("validate", "--space", "micro", input=zeros)
    assert (result.exit_code, result.stderr) == (0, "1 record valid (micro)\n")


def test_nao_input_reports_every_bad_line():
    good = (FIXTURES / "micro_final.nao").read_text().strip()
    text = f"{good}\n1 9 1 12\n\n{good} x\n"
    result = run("validate", "--from", "nao", input=text)
    assert result.exit_code == 2
    assert error_lines(result) == [
        "enastool: error: <stdin>: record 2: found 4 NAO tokens, expected a positive multiple of 8 up to 40 "
        "(4 per block and cell, at most 5 blocks)",
        "enastool: error: <stdin>: record 3: token 41: found 'x', expected an integer",
    ]
    result = run("validate", "--from", "nao", "--space", "macro", input=good)
    assert error_lines(result) == ["enastool: error: --from nao reads micro architectures; --space macro does not apply"]


# ----------------------------------------------------------------- convert
def test_convert_text_json_roundtrip_through_pipes(authors):
    text = run("convert", RECORDS, "--to", "text")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert len(lines) == 2 and lines[1] == MICRO_FINAL
    assert lines[0].startswith("macro 0 3 0 0 1 0 2 0 0 1 ") and len(lines[0].split()) == 301
    as_json = run("convert", "-", "--to", "json", input=text.stdout)
    data = json.loads(as_json.stdout)
    assert [d["space"] for d in data] == ["macro", "micro"]
    assert len(data[0]["layers"]) == 24 and data[0]["layers"][2] == {"op": "conv3x3", "skips": [0]}
    back = run("convert", "-", "--to", "text", input=as_json.stdout)
    assert back.stdout == text.stdout


def test_convert_to_darts_and_nao_and_back(authors):
    micro = authors[1]
    darts = run("convert", FIXTURES / "micro_final.txt", "--to", "darts")
    assert darts.stdout == (FIXTURES / "micro_final.darts").read_text().strip() + "\n"
    assert from_darts(darts.stdout) == micro
    nao = run("convert", FIXTURES / "micro_final.txt", "--to", "nao")
    assert nao.stdout == (FIXTURES / "micro_final.nao").read_text()
    assert parse_nao_text(nao.stdout) == [micro]
    back = run("convert", "-", "--from", "nao", "--to", "text", input=nao.stdout)
    assert back.stdout == MICRO_FINAL + "\n"


def test_convert_refuses_macro_to_darts_and_nao_by_record_and_writes_nothing():
    for fmt, reason in [
        ("darts", "macro architectures have no DARTS genotype form (DARTS describes cells); "
                  "convert a micro or rnn architecture"),
        ("nao", "macro architectures have no NAO form"),
    ]:
        result = run("convert", RECORDS, "--to", fmt)
        assert result.exit_code == 2 and result.stdout == ""
        assert error_lines(result) == [f"enastool: error: {RECORDS}: record 1: {reason}"]


def test_convert_to_dot_gives_one_digraph_per_record(authors):
    result = run("convert", RECORDS, "--to", "dot")
    assert result.exit_code == 0
    assert result.stdout.count("digraph ") == 2
    assert result.stdout.count("style=\"dashed\"") == 98
    assert 'subgraph "cluster_reduce"' in result.stdout


# ----------------------------------------------------------------- render
@needs_dot
def test_render_one_record_per_file_named_by_record_number(tmp_path):
    out = tmp_path / "arch.png"
    result = run("render", RECORDS, "-o", out)
    assert result.exit_code == 0 and result.stdout == ""
    written = [tmp_path / "arch-1.png", tmp_path / "arch-2.png"]
    assert error_lines(result) == [f"wrote {p}" for p in written]
    assert sorted(tmp_path.iterdir()) == written
    for path in written:
        assert path.read_bytes().startswith(PNG_MAGIC)


def test_render_index_picks_one_record_into_out(tmp_path):
    out = tmp_path / "cell.dot"
    result = run("render", RECORDS, "-o", out, "--index", 2)
    assert result.exit_code == 0 and error_lines(result) == [f"wrote {out}"]
    assert list(tmp_path.iterdir()) == [out]
    text = out.read_text()
    assert text.startswith('digraph "micro"') and "cluster_normal" in text
    result = run("render", RECORDS, "-o", out, "--index", 3)
    assert result.exit_code == 2
    assert error_lines(result) == [f"enastool: error: --index 3: {RECORDS} has 2 records, expected 1..2"]


def test_render_single_record_goes_to_out_itself(tmp_path):
    out = tmp_path / "macro.dot"
    result = run("render", FIXTURES / "macro_final.txt", "-o", out)
    assert result.exit_code == 0
    assert out.read_text().count("layer23") >= 1 and not (tmp_path / "macro-1.dot").exists()


@needs_dot
@pytest.mark.parametrize(("suffix", "magic"), [("svg", b"<svg"), ("pdf", b"%PDF")])
def test_render_svg_and_pdf(tmp_path, suffix, magic):
    out = tmp_path / f"cell.{suffix}"
    assert run("render", FIXTURES / "micro_final.darts", "-o", out).exit_code == 0
    assert magic in out.read_bytes()[:4096]


def test_render_refuses_an_unknown_suffix_before_reading_input(tmp_path):
    result = run("render", "-", "-o", tmp_path / "arch.jpg", input="garbage")
    assert result.exit_code == 2
    assert error_lines(result) == [
        f"enastool: error: {tmp_path / 'arch.jpg'}: found '.jpg', expected an output file ending in "
        ".png, .svg, .pdf, .dot"
    ]


def test_render_without_graphviz_names_the_package_and_dot_still_works(tmp_path):
    env = {"PATH": str(tmp_path / "empty-bin")}  # no dot on this PATH
    result = run("render", RECORDS, "-o", tmp_path / "a.png", "--index", 1, env=env)
    assert result.exit_code == 2
    assert error_lines(result) == [f"enastool: error: {MISSING_DOT}"]
    assert not (tmp_path / "a.png").exists()
    result = run("render", RECORDS, "-o", tmp_path / "a.dot", env=env)
    assert result.exit_code == 0
    assert (tmp_path / "a-1.dot").exists() and (tmp_path / "a-2.dot").exists()


@needs_dot
def test_sample_piped_into_render_in_real_processes(tmp_path):
    enastool = shutil.which("enastool")
    if enastool is None:
        pytest.skip("the enastool console script is not installed")
    out = tmp_path / "x.png"
    result = subprocess.run(
        "enastool sample --space micro -n 1 --seed 3 | enastool render - -o x.png",
        shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": f"{Path(enastool).parent}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "wrote x.png" and result.stdout == ""
    data = out.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)


# ----------------------------------------------------------------- info
def test_info_json_summarises_the_authors_architectures():
    result = run("info", RECORDS, "--format", "json")
    assert result.exit_code == 0
    macro, micro = json.loads(result.stdout)
    assert macro["record"] == 1 and macro["space"] == "macro"
    assert (macro["layers"], macro["skips"], macro["possible_skips"], macro["depth"]) == (24, 98, 276, 24)
    assert macro["ops"] == {"conv3x3": 8, "sep3x3": 2, "conv5x5": 9, "sep5x5": 5, "avgpool3x3": 0, "maxpool3x3": 0}
    assert micro["record"] == 2 and micro["blocks"] == 5
    assert micro["normal_loose_ends"] == [2, 3, 4, 5, 6]
    assert micro["reduce_loose_ends"] == [2, 4, 5, 6]
    assert "params" not in macro and "params" not in micro


def test_info_table_goes_to_stdout():
    result = run("info", RECORDS)
    assert result.exit_code == 0 and result.stderr == ""
    assert "98/276 (35.5%)" in result.stdout
    assert "normal 2 3 4 5 6" in result.stdout and "reduce 2 4 5 6" in result.stdout
    assert "params" not in result.stdout


def test_info_without_counts_does_not_import_torch():
    code = (
        "import sys; from enastool_cli.main import main; sys.argv = ['enastool', 'info', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code, RECORDS], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "False" and "98/276" in out.stdout


def test_info_counts_on_digits_with_a_small_network():
    sample = run("sample", "--space", "macro", "--layers", 3, "--seed", 1).stdout
    both = sample + MICRO_FINAL
    result = run("info", "-", "--format", "json", "--channels", 4, "--dataset", "digits", input=both)
    assert result.exit_code == 0, result.stderr
    macro, micro = json.loads(result.stdout)
    for row in (macro, micro):
        assert {"params", "params_aux", "flops", "mult_adds"} <= set(row)
        assert all(isinstance(row[k], int) and row[k] > 0 for k in ("params", "params_aux", "flops"))
        assert row["flops"] == 2 * row["mult_adds"]  # papers quote mult-adds; a FLOP is half of one
    assert macro["params_aux"] == macro["params"]  # the macro network has no auxiliary head
    assert micro["params_aux"] > micro["params"]
    # Counting is from the real module: more channels, more parameters and FLOPs.
    wider = run("info", "-", "--format", "json", "--channels", 8, "--dataset", "digits", input=sample)
    wider = json.loads(wider.stdout)[0]
    assert wider["params"] > macro["params"] and wider["flops"] > macro["flops"]
    table = run("info", "-", "--counts", "--channels", 4, "--dataset", "digits", input=sample)
    assert "params+aux" in table.stdout and "FLOPs (2/mult-add)" in table.stdout
    assert "mult-adds" in table.stdout


def test_info_counts_errors_are_located_one_line_each():
    records = "micro 0 0 1 4 1 2 0 3\nmacro " + (FIXTURES / "macro_final.txt").read_text()
    result = run("info", "-", "--layers", 5, "--channels", 2, "--dataset", "digits", "--format", "json", input=records)
    assert result.exit_code == 2 and result.stdout == ""
    assert error_lines(result) == [
        "enastool: error: <stdin>: record 2: --layers 5 does not match the macro architecture's 24 layers; "
        "pass --layers 24 or leave it out"
    ]


# ----------------------------------------------------------------- sample
def test_sample_is_seeded_valid_and_sized():
    first = run("sample", "--space", "macro", "-n", 3, "--seed", 7, "--layers", 5)
    assert first.exit_code == 0
    again = run("sample", "--space", "macro", "-n", 3, "--seed", 7, "--layers", 5)
    assert first.stdout == again.stdout
    archs = load_archs("-", stdin=_bytes_stream(first.stdout))
    assert len(archs) == 3 and all(isinstance(a, MacroArch) and a.num_layers == 5 for a in archs)
    micro = run("sample", "--space", "micro", "-n", 2, "--seed", 7, "--blocks", 3)
    archs = load_archs("-", stdin=_bytes_stream(micro.stdout))
    assert [type(a) for a in archs] == [MicroArch, MicroArch] and archs[0].num_blocks == 3
    assert run("sample", "--space", "macro").stdout.count(" ") == 12 * 13 // 2  # default 12 layers
    validate = run("validate", input=first.stdout + micro.stdout)
    assert (validate.exit_code, validate.stderr) == (0, "5 records valid (3 macro, 2 micro)\n")


def test_sample_refuses_the_other_space_size_option():
    result = run("sample", "--space", "micro", "--layers", 4)
    assert result.exit_code == 2
    assert error_lines(result) == ["enastool: error: --layers does not apply to --space micro; use --num-blocks"]


def _bytes_stream(text: str):
    import io

    return io.BytesIO(text.encode())


# ----------------------------------------------------------------- rnn
def test_rnn_cell_goes_through_validate_convert_and_back():
    bare = RNN_FINAL.split(" ", 1)[1]
    validate = run("validate", input=bare)
    assert (validate.exit_code, validate.stderr) == (0, "1 record valid (rnn)\n")
    darts = run("convert", "-", "--to", "darts", input=bare)
    assert (darts.exit_code, darts.stdout) == (0, RNN_FINAL_DARTS + "\n")
    assert darts.stdout == (FIXTURES / "rnn_final.darts").read_text()
    as_json = run("convert", "-", "--to", "json", input=darts.stdout)
    data = json.loads(as_json.stdout)
    assert data == json.loads((FIXTURES / "rnn_final.json").read_text())
    assert data[0]["nodes"][:3] == [
        {"prev": 0, "activation": "sigmoid"}, {"prev": 1, "activation": "tanh"}, {"prev": 2, "activation": "relu"},
    ]
    back = run("convert", "-", "--to", "text", input=as_json.stdout)
    assert back.stdout == RNN_FINAL + "\n"


def test_convert_reads_dartss_own_recurrent_cell_exactly():
    result = run("convert", FIXTURES / "rnn_darts_v2.darts", "--to", "text")
    assert (result.exit_code, result.stdout) == (0, "rnn 0 2 1 1 1 1 1 3 2 0 5 2 3 0 5 1\n")


def test_convert_rnn_to_dot_and_a_mixed_stream_to_darts():
    dot = run("convert", "-", "--to", "dot", input=RNN_FINAL)
    assert dot.exit_code == 0 and dot.stdout.startswith('digraph "rnn"')
    assert dot.stdout.count('-> "output"') == 8
    both = run("convert", "-", "--to", "darts", input=f"{MICRO_FINAL}\n{RNN_FINAL}\n")
    assert both.stdout.splitlines() == [(FIXTURES / "micro_final.darts").read_text().strip(), RNN_FINAL_DARTS]
    # ...and read back as one stream of genotypes, each in its own space.
    again = run("convert", "-", "--to", "text", input=both.stdout)
    assert again.stdout == f"{MICRO_FINAL}\n{RNN_FINAL}\n"


def test_convert_rnn_to_nao_is_refused_by_record_and_writes_nothing():
    result = run("convert", "-", "--to", "nao", input=f"{MICRO_FINAL}\n{RNN_FINAL}\n")
    assert (result.exit_code, result.stdout) == (2, "")
    assert error_lines(result) == ["enastool: error: <stdin>: record 2: rnn architectures have no NAO form"]


@pytest.mark.parametrize(
    ("args", "text", "line"),
    [
        # the first repository's 2N+1 format, as a record and bare
        ((), "rnn 0 2 1", "<stdin>: record 1: found 3 integers, expected an even count (2 per node: "
         "prev_index activation); an odd count looks like the older 2N+1-integer format"),
        ((), " ".join(["0"] * 17), "<stdin>: record 1: found 17 integers, which no space accepts ("),
        ((), "rnn 0 2 1 4", "<stdin>: record 1: token 4: node 2 activation: found 4, expected an activation "
         "id 0..3 (0 tanh, 1 relu, 2 sigmoid, 3 identity)"),
        ((), "rnn 0 0 2 0", "<stdin>: record 1: token 3: node 2 prev_index: found 2, expected 0..1"),
        ((), "Genotype(recurrent=[('tanh', 0), ('none', 1)], concat=range(1, 3))",
         "<stdin>: record 1: DARTS recurrent pair 2 (node 2): activation 'none' has no ENAS equivalent"),
        ((), "Genotype(recurrent=[('tanh', 0), ('gelu', 1)], concat=range(1, 3))",
         "<stdin>: record 1: DARTS recurrent pair 2 (node 2): activation 'gelu' has no ENAS equivalent, "
         "expected one of tanh, relu, sigmoid, identity"),
        ((), "Genotype(recurrent=[('tanh', 0), ('relu', 0)], concat=range(1, 2))",
         "<stdin>: record 1: DARTS concat: found [1], expected range(1, 3), every node 1..2"),
        ((), "Genotype(recurrent=[('tanh', 0), ('relu', 2)], concat=range(1, 3))",
         "<stdin>: record 1: DARTS recurrent pair 2 (node 2): found input 2, expected 0..1"),
        (("--space", "micro"), "Genotype(recurrent=[('tanh', 0)], concat=range(1, 2))",
         "<stdin>: record 1: found a DARTS rnn genotype, but --space micro was asked for"),
        (("--space", "macro"), RNN_FINAL, "<stdin>: record 1: found a rnn record, but --space macro was asked for"),
        ((), '{"space": "rnn", "nodes": [{"prev": 0, "activation": "gelu"}]}',
         "<stdin>: record 1: JSON node 1: unknown op 'gelu', expected one of tanh, relu, sigmoid, identity"),
        ((), "0 1 0 2 1 0", "<stdin>: record 1: found 6 integers, which more than one space accepts "
         "(macro and rnn); pass --space macro or --space rnn"),
    ],
)
@pytest.mark.parametrize("command", [["validate"], ["convert", "--to", "darts"], ["render", "-o", "x.dot"], ["info"]])
def test_every_bad_rnn_input_is_one_line_and_exit_2(tmp_path, command, args, text, line):
    command = [str(tmp_path / c) if c == "x.dot" else c for c in command]
    result = run(*command, "-", *args, input=text)
    assert (result.exit_code, result.stdout) == (2, "")
    assert len(error_lines(result)) == 1 and "Traceback" not in result.stderr
    assert error_lines(result)[0].startswith(f"enastool: error: {line}")
    assert list(tmp_path.iterdir()) == []


def test_a_bare_encoding_valid_in_two_spaces_is_read_with_space():
    result = run("convert", "-", "--to", "text", "--space", "rnn", input="0 1 0 2 1 0")
    assert result.stdout == "rnn 0 1 0 2 1 0\n"


def test_render_rnn_writes_the_cell(tmp_path):
    out = tmp_path / "cell.dot"
    result = run("render", FIXTURES / "rnn_final.txt", "-o", out)
    assert result.exit_code == 0 and error_lines(result) == [f"wrote {out}"]
    text = out.read_text()
    assert text.startswith('digraph "rnn"') and 'label="rnn: 8 nodes after node 0, output the mean of nodes 1..8"' in text


@needs_dot
def test_render_rnn_png(tmp_path):
    out = tmp_path / "cell.png"
    assert run("render", FIXTURES / "rnn_final.darts", "-o", out).exit_code == 0
    data = out.read_bytes()
    height = int.from_bytes(data[20:24], "big")
    assert data.startswith(PNG_MAGIC) and height > 300  # ten ranks from the inputs to h_t


def test_info_rnn_json_and_table():
    result = run("info", "-", "--format", "json", input=f"{RNN_FINAL}\n{MICRO_FINAL}\n")
    assert result.exit_code == 0
    rnn, micro = json.loads(result.stdout)
    assert rnn == {
        "record": 1, "space": "rnn", "nodes": 8,
        "ops": {"tanh": 3, "relu": 1, "sigmoid": 4, "identity": 0},
        "loose_ends": [7, 8], "depth": 6,
    }
    assert micro["blocks"] == 5
    table = run("info", "-", input=f"{RNN_FINAL}\n{MICRO_FINAL}\n")
    assert table.exit_code == 0 and table.stderr == ""
    row = next(line for line in table.stdout.splitlines() if " rnn " in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells == ["1", "rnn", "8 nodes", "tanh 3, relu 1, sigmoid 4", "-", "7 8", "6"]


def test_sample_rnn_is_seeded_sized_and_valid():
    first = run("sample", "--space", "rnn", "-n", 4, "--seed", 5, "--nodes", 3)
    assert first.exit_code == 0
    assert first.stdout == run("sample", "--space", "rnn", "-n", 4, "--seed", 5, "--nodes", 3).stdout
    archs = load_archs("-", stdin=_bytes_stream(first.stdout))
    assert len(archs) == 4 and all(isinstance(a, RecurrentArch) and a.num_nodes == 3 for a in archs)
    default = run("sample", "--space", "rnn", "--seed", 1).stdout.split()
    assert default[0] == "rnn" and len(default) == 1 + 2 * 8  # the published size
    validate = run("validate", input=first.stdout)
    assert (validate.exit_code, validate.stderr) == (0, "4 records valid (rnn)\n")
    result = run("sample", "--space", "rnn", "--blocks", 2)  # search's name is --num-blocks
    assert error_lines(result) == ["enastool: error: --num-blocks does not apply to --space rnn; use --num-nodes"]
    result = run("sample", "--space", "rnn", "--nodes", 65)
    assert result.exit_code == 2 and error_lines(result) == [
        "enastool: error: Invalid value for '--num-nodes' / '--nodes': 65 is not in the range 1<=x<=64; "
        "see 'enastool sample --help'"
    ]


# ----------------------------------------------------------------- hostile input, one line
def test_info_counts_are_measured_on_the_meta_device_and_equal_the_real_network(monkeypatch):
    # Shapes without storage: nothing is allocated however wide, the counts are the same.
    from types import SimpleNamespace

    from enastool.nn import counting

    real = counting.network_counts(load_archs(RECORDS)[1], None, 8, SimpleNamespace(channels=1, size=8, num_classes=10))
    devices = []
    real_count_flops = counting.count_flops
    monkeypatch.setattr(counting, "count_flops",
                        lambda module, shape: devices.append(next(module.parameters()).device.type)
                        or real_count_flops(module, shape))
    result = run("info", RECORDS, "--format", "json", "--channels", 8, "--dataset", "digits")
    assert result.exit_code == 0, result.stderr
    micro = json.loads(result.stdout)[1]
    assert {k: micro[k] for k in real} == real and devices == ["meta", "meta"]


@pytest.mark.parametrize("args, message", [
    (["info", RECORDS, "--channels", 100000],
     "Invalid value for '--channels': 100000 is not in the range 1<=x<=1024; see 'enastool info --help'"),
    (["sample", "--space", "macro", "--layers", 65],
     "Invalid value for '--layers': 65 is not in the range 1<=x<=64; see 'enastool sample --help'"),
    (["sample", "--space", "macro", "--seed", 99999999999999999999999],
     "Invalid value for '--seed': 99999999999999999999999 is not in the range 0<=x<=4294967295; "
     "see 'enastool sample --help'"),
    (["validate", "--bogus"], "No such option '--bogus'; see 'enastool validate --help'"),
    (["nosuch"], "No such command 'nosuch'; see 'enastool --help'"),
])
def test_bad_options_are_one_line_naming_the_help_to_read(args, message):
    result = run(*args)
    assert (result.exit_code, result.stdout) == (2, "")
    assert error_lines(result) == [f"enastool: error: {message}"]


def test_a_failed_allocation_is_one_line_with_the_size_asked_for(monkeypatch):
    import torch

    from enastool.nn import counting

    def allocate_too_much(*args):
        return torch.empty(2**50, dtype=torch.uint8, device="cpu")  # 1 PiB: the allocator refuses

    monkeypatch.setattr(counting, "network_counts", allocate_too_much)
    result = run("info", RECORDS, "--counts")
    assert (result.exit_code, result.stdout) == (2, "")
    assert error_lines(result) == [
        "enastool: error: out of memory: the host could not allocate 1024.0 TiB; lower the sizes "
        "(--channels, --layers, --batch-size) or use a device with more memory"
    ]


def test_empty_json_and_a_word_that_is_no_genotype_fail_validate():
    for text in ("[]", "Genotypes("):
        result = run("validate", input=text)
        assert result.exit_code == 2 and len(error_lines(result)) == 1, text
