"""Text and JSON input/output: recognising formats, locating every error, reading sources."""

import io
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enastool.encoding import MacroArch, MicroArch
from enastool.encoding.textio import (
    MAX_INPUT_BYTES,
    format_record,
    from_json,
    load_archs,
    load_one,
    parse_text,
    read_source,
    to_json,
    write_records,
)
from enastool.errors import EnasError, EncodingError

MACRO3 = MacroArch.from_ints([0, 1, 0, 2, 1, 0])
MICRO1 = MicroArch.from_ints([0, 0, 1, 4, 1, 2, 0, 3])


@st.composite
def archs(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        return MacroArch.sample(seed, num_layers=draw(st.integers(1, 14)))
    return MicroArch.sample(seed, num_blocks=draw(st.integers(1, 6)))


def messages(errors):
    return [str(e) for e in errors]


# ----------------------------------------------------------------- formats
def test_bare_encoding_infers_the_only_space_that_fits():
    records, errors = parse_text("0\n5 0\n4 1 0\n", "a.txt")  # ops 5, 4: no rnn activation
    assert errors == []
    assert [r.arch for r in records] == [MacroArch.from_ints([0, 5, 0, 4, 1, 0])]
    assert (records[0].source, records[0].index) == ("a.txt", 1)
    records, _ = parse_text("0 0 1 4\n1 2 0 3")  # 8 integers: only micro
    assert records[0].arch == MICRO1
    records, _ = parse_text("0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2")  # micro's length, rnn's values
    assert records[0].arch.space == "rnn"


def test_bare_encoding_valid_in_two_spaces_asks_for_space():
    records, errors = parse_text("0\n1 0\n2 1 0\n", "a.txt")  # a macro and an rnn cell
    assert records == []
    assert messages(errors) == [
        "a.txt: record 1: found 6 integers, which more than one space accepts (macro and rnn); "
        "pass --space macro or --space rnn"
    ]
    assert parse_text("0\n1 0\n2 1 0\n", space="macro")[0][0].arch == MACRO3


def test_bare_encoding_of_an_ambiguous_length_asks_for_space():
    text = " ".join(["0"] * 120)
    records, errors = parse_text(text, "-")
    assert records == []
    assert messages(errors) == [
        "<stdin>: record 1: found 120 integers, which more than one space accepts (macro and micro "
        "and rnn); pass --space macro or --space micro or --space rnn"
    ]
    assert parse_text(text, space="micro")[0][0].arch.num_blocks == 15


def test_bare_encoding_no_space_accepts_names_the_count():
    _, errors = parse_text("0 0 0 0 0 0 0", "a.txt")
    (message,) = messages(errors)
    assert message.startswith("a.txt: record 1: found 7 integers, which no space accepts")
    assert "macro:" in message and "micro:" in message


def test_records_may_span_lines_and_carry_comments():
    text = "# two records\nmacro 0\n 1 0   # layer 1\n2 1 0\nmicro 0 0 1 4 1 2 0 3  macro 0\n"
    records, errors = parse_text(text)
    assert errors == []
    assert [r.arch for r in records] == [MACRO3, MICRO1, MacroArch.from_ints([0])]
    assert [r.index for r in records] == [1, 2, 3]


def test_every_bad_record_is_reported_and_the_rest_still_parse():
    text = "\n".join(
        [
            "macro 0 1 0",  # 1 ok
            "mcro 0 1 0",  # 2 unknown keyword
            "micro",  # 3 truncated
            "macro 0 1 x",  # 4 non-integer at token 3
            "macro 0 -1 0",  # 5 negative
            "macro 0 1.5 0",  # 6 float
            "micro 0 0 1 4 1 2 0 3 0",  # 7 wrong length
            "micro 0 5 1 4 1 2 0 3",  # 8 op out of range
            "micro 0 0 1 4 1 2 2 3",  # 9 index out of range
            "macro 0 1 3",  # 10 skip bit out of range
            "micro 0 0 1 4 1 2 0 3",  # 11 ok
        ]
    )
    records, errors = parse_text(text, "arch.txt")
    assert [r.index for r in records] == [1, 11]
    assert messages(errors) == [
        "arch.txt: record 2: found 'mcro', expected a space keyword: macro or micro or rnn (did you mean 'micro'?)",
        "arch.txt: record 3: found no integers after 'micro', expected a micro encoding (truncated record?)",
        "arch.txt: record 4: token 3: found 'x', expected an integer",
        "arch.txt: record 5: token 2: found -1, expected a non-negative integer",
        "arch.txt: record 6: token 2: found '1.5', expected an integer",
        "arch.txt: record 7: found 9 integers, expected a positive multiple of 8 "
        "(8 per block: 4 in the normal cell, 4 in the reduction cell)",
        "arch.txt: record 8: token 2: normal cell node 2 op_1: found 5, expected a micro op id 0..4",
        "arch.txt: record 9: token 7: reduction cell node 2 index_2: found 2, expected an index 0..1",
        "arch.txt: record 10: token 3: layer 1 skip bit 0: found 3, expected 0 or 1",
    ]


def test_a_word_inside_a_bare_encoding_is_a_bad_token_not_a_record():
    _, errors = parse_text("0 1 0\nx 0 0", "-")
    assert messages(errors) == ["<stdin>: record 1: token 4: found 'x', expected an integer"]


def test_long_numbers_are_refused_before_conversion():
    _, errors = parse_text("macro 0 " + "9" * 5000, "-")
    assert messages(errors) == ["<stdin>: record 1: token 2: found a 5000-digit number, expected at most 12 digits"]


def test_space_argument_must_match_record_keywords():
    _, errors = parse_text("macro 0 1 0", "-", space="micro")
    assert messages(errors) == ["<stdin>: record 1: found a macro record, but --space micro was asked for"]
    with pytest.raises(EnasError, match="unknown space 'nano'"):
        parse_text("0", space="nano")


def test_empty_and_comment_only_input_is_one_error():
    for text in ("", "  \n\n", "# nothing here\n"):
        records, errors = parse_text(text, "e.txt")
        assert records == []
        assert messages(errors) == ["e.txt: found no architecture (the input is empty or only comments)"]


# ----------------------------------------------------------------- JSON
def test_json_object_list_and_lines_ignore_extra_keys():
    macro, micro = MACRO3.to_dict(), MICRO1.to_dict()
    one = json.dumps({**micro, "score": 0.93})
    as_list = json.dumps([macro, {**micro, "score": 0.5}])
    as_lines = json.dumps(macro) + "\n\n" + json.dumps({**micro, "rank": 1}) + "\n"
    assert [r.arch for r in parse_text(one)[0]] == [MICRO1]
    assert [r.arch for r in parse_text(as_list)[0]] == [MACRO3, MICRO1]
    assert [r.arch for r in parse_text(as_lines)[0]] == [MACRO3, MICRO1]


def test_json_errors_are_one_per_record():
    text = "\n".join(
        [
            json.dumps(MACRO3.to_dict()),
            '{"space": "macro", "layers": [{"op": "conv3x3", "skips": [4]}]}',
            '{"space": "nano"}',
            "{broken",
            "[1, 2]",
            '{"space": "micro", "normal": 3, "reduce": []}',
        ]
    )
    records, errors = parse_text(text, "a.jsonl")
    assert [r.index for r in records] == [1]
    assert messages(errors) == [
        "a.jsonl: record 2: JSON layer 0: found skip source 4, layer 0 has no skips",
        "a.jsonl: record 3: JSON record: found space 'nano', expected one of macro, micro, rnn",
        "a.jsonl: record 4: invalid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        "a.jsonl: record 5: found a JSON list, expected an architecture object",
        "a.jsonl: record 6: JSON normal cell: expected a list of blocks",
    ]


def test_json_list_of_non_objects_and_bad_json_list():
    _, errors = parse_text("[1, 2", "x.json")
    assert messages(errors) == ["x.json: invalid JSON: Expecting ',' delimiter at line 1 column 6"]
    _, errors = parse_text("[0]", "x.json")
    assert messages(errors) == ["x.json: record 1: found a JSON int, expected an architecture object"]


@settings(deadline=None, max_examples=100)
@given(st.lists(archs(), min_size=1, max_size=4), st.booleans())
def test_json_round_trip(values, lines):
    assert from_json(to_json(values, lines=lines)) == values


# ----------------------------------------------------------------- text round trip
@settings(deadline=None, max_examples=100)
@given(st.lists(archs(), min_size=1, max_size=4))
def test_records_round_trip(values):
    stream = io.StringIO()
    write_records(values, stream)
    text = stream.getvalue()
    assert text.count("\n") == len(values)
    records, errors = parse_text(text)
    assert errors == [] and [r.arch for r in records] == values
    assert [format_record(a) for a in values] == text.splitlines()


@settings(deadline=None, max_examples=100)
@given(archs())
def test_bare_multiline_round_trip(arch):
    # The authors' layout (one layer or cell per line) with the space named.
    records, errors = parse_text(arch.format_lines(), space=arch.space)
    assert errors == [] and records[0].arch == arch
    assert parse_text(arch.format(), space=arch.space)[0][0].arch.format() == arch.format()


# ----------------------------------------------------------------- sources
def test_read_source_file_problems_are_one_located_error(tmp_path):
    missing = tmp_path / "nope.txt"
    assert messages(read_source(missing)[1]) == [f"{missing}: no such file; pass an existing file, or - to read stdin"]
    assert messages(read_source(tmp_path)[1]) == [f"{tmp_path}: is a directory, expected a file of architectures"]
    bad_utf8 = tmp_path / "latin1.txt"
    bad_utf8.write_bytes(b"macro 0 1 0 # caf\xe9\n")
    assert messages(read_source(bad_utf8)[1]) == [
        f"{bad_utf8}: found bytes that are not UTF-8 (0xe9 at offset 17), expected text"
    ]
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as f:
        f.truncate(MAX_INPUT_BYTES + 1)  # sparse: costs no disk
    assert messages(read_source(huge)[1]) == [f"{huge}: input larger than 16 MiB, expected a file of architectures"]


def test_read_source_stdin_accepts_text_and_binary_streams():
    text = "macro 0 1 0\n"
    assert read_source("-", stdin=io.StringIO(text))[0][0].arch == MacroArch.from_ints([0, 1, 0])
    wrapped = io.TextIOWrapper(io.BytesIO(b"\xff\xfe0 1 0"), encoding="utf-8")
    records, errors = read_source("-", stdin=wrapped)
    assert records == [] and messages(errors) == ["<stdin>: found bytes that are not UTF-8 (0xff at offset 0), expected text"]
    records, errors = read_source("-", stdin=io.BytesIO(b"0 1 0\n\x00"))
    assert messages(errors) == ["<stdin>: found binary data (NUL byte at offset 6), expected text"]


def test_load_archs_raises_the_first_error_and_load_one_counts(tmp_path):
    path = tmp_path / "two.records"
    path.write_text("macro 0 1 0\nmicro 0 0 1 4 1 2 0 3\n")
    assert load_archs(path) == [MacroArch.from_ints([0, 1, 0]), MICRO1]
    with pytest.raises(EncodingError) as info:
        load_one(path)
    assert str(info.value) == f"{path}: found 2 records, expected exactly one architecture"
    path.write_text("macro 0 1 0\nmacro 0 1 7\nmacro x\n")
    with pytest.raises(EncodingError, match=r"two.records: record 2: token 3: layer 1 skip bit 0: found 7"):
        load_archs(path)


def test_textio_does_not_import_torch():
    code = "import sys, enastool.encoding.textio, enastool.encoding.darts, enastool.encoding.nao; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------- hostile input
# Input with no architecture, sizes past the limits, DARTS text that Python would accept but a
# genotype must not contain: each is one located error, found before any real work.
from enastool.encoding import textio  # noqa: E402
from enastool.encoding.macro import MAX_LAYERS  # noqa: E402
from enastool.encoding.micro import MAX_BLOCKS  # noqa: E402
from enastool.encoding.recurrent import MAX_NODES  # noqa: E402

PAIR = '("skip_connect", 0), ("skip_connect", 1)'  # one node reading both inputs: loose end [2]


def genotype(**fields) -> str:
    fields = {"normal": f"[{PAIR}]", "reduce": f"[{PAIR}]", **fields}
    return "Genotype(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"


def test_input_without_an_architecture_is_an_error_like_an_empty_file():
    for text, message in [
        ("[]", "e: found an empty JSON list, expected architecture objects"),
        ("  [ ]\n", "e: found an empty JSON list, expected architecture objects"),
        ("Genotypes(", "e: record 1: not a DARTS genotype ('(' was never closed), expected Genotype(normal=[...], ...)"),
        ("Genotypes", "e: record 1: not a DARTS genotype, expected Genotype(normal=[...], ...)"),
    ]:
        records, errors = parse_text(text, "e")
        assert records == [] and messages(errors) == [message], text


def test_a_darts_range_is_judged_by_its_bounds_and_never_built():
    # range(0, 999999999999) as a list would need terabytes; its bounds say it is not [2].
    _, errors = parse_text(genotype(normal_concat="range(0, 999999999999)"), "g")
    assert messages(errors) == [
        "g: record 1: DARTS normal_concat: found range(0, 999999999999), expected the loose ends [2] "
        "(ENAS concatenates exactly the nodes no block uses)"
    ]
    assert parse_text(genotype(normal_concat="range(2, 3)", reduce_concat="[2]"))[1] == []  # both are [2]
    _, errors = parse_text(genotype(reduce_concat="[" + "2, " * 100000 + "]"), "g")
    assert messages(errors)[0].startswith("g: record 1: DARTS reduce_concat: found a list of 100000 nodes")


def test_darts_repeated_fields_and_booleans_as_integers_are_refused():
    cases = {
        genotype(normal=f"[{PAIR}], normal=[{PAIR}]"): "DARTS genotype: field 'normal' given twice, expected it once",
        f"Genotype([{PAIR}], normal=[{PAIR}], reduce=[{PAIR}])": "DARTS genotype: field 'normal' given twice, expected it once",
        genotype(normal_concat="range(True, 3)"): "DARTS normal_concat: expected range(start, stop) with integers",
        genotype(normal_concat="[True, 2]"): "DARTS normal_concat: expected a list of node numbers",
        genotype(reduce='[("skip_connect", False), ("skip_connect", 1)]'):
            "DARTS reduce node 2 pair 1: found ('skip_connect', False), expected (op_name, input)",
    }
    for text, message in cases.items():
        assert messages(parse_text(text, "g")[1]) == [f"g: record 1: {message}"], text


def test_sizes_past_the_limits_are_refused_before_any_integer_is_parsed(monkeypatch):
    parsed = []
    monkeypatch.setattr(textio, "parse_integer", lambda token, position: parsed.append(token) or 0)
    largest_macro, largest_micro = MacroArch.length_for(MAX_LAYERS), MicroArch.length_for(MAX_BLOCKS)
    _, errors = parse_text("macro " + "0 " * (largest_macro + 1), "a")
    assert messages(errors) == [
        f"a: record 1: found {largest_macro + 1} integers, expected at most {largest_macro}: "
        f"enastool accepts macro architectures of up to {MAX_LAYERS} layers"
    ]
    _, errors = parse_text("0 " * 1_000_000, "a")  # bare: past every space's limit
    assert messages(errors) == [
        "a: record 1: found 1000000 integers, more than any space accepts ("
        f"macro: expected at most {largest_macro}: enastool accepts macro architectures of up to {MAX_LAYERS} layers; "
        f"micro: expected at most {largest_micro}: enastool accepts micro architectures of up to {MAX_BLOCKS} "
        f"blocks per cell; rnn: expected at most {2 * MAX_NODES}: enastool accepts rnn cells of up to "
        f"{MAX_NODES} nodes)"
    ]
    assert parsed == []


def test_json_and_darts_sizes_past_the_limits_are_refused_by_count():
    layers = json.dumps({"space": "macro", "layers": [{"op": "conv3x3", "skips": []}] * 20000})
    cell = [{"inputs": [0, 1], "ops": ["sep3x3", "sep3x3"]}] * (MAX_BLOCKS + 1)
    assert messages(parse_text(layers, "j")[1]) == [
        f"j: record 1: JSON macro record: found 20000 layers, expected at most {MAX_LAYERS} (enastool's limit)"
    ]
    assert messages(parse_text(json.dumps({"space": "micro", "normal": cell, "reduce": cell}), "j")[1]) == [
        f"j: record 1: JSON normal cell: found {MAX_BLOCKS + 1} blocks, expected at most {MAX_BLOCKS} per cell "
        "(enastool's limit)"
    ]
    pairs = "[" + ", ".join([PAIR] * (MAX_BLOCKS + 1)) + "]"
    assert messages(parse_text(genotype(normal=pairs), "g")[1]) == [
        f"g: record 1: DARTS normal: found {2 * MAX_BLOCKS + 2} pairs, expected at most {2 * MAX_BLOCKS} "
        f"({MAX_BLOCKS} nodes, enastool's limit)"
    ]
    with pytest.raises(EncodingError, match=f"--layers must be in 1..{MAX_LAYERS}, found {MAX_LAYERS + 1}"):
        MacroArch.sample(0, num_layers=MAX_LAYERS + 1)


class CountingList(list):
    """A list that counts how often it is walked."""

    walks = 0

    def __iter__(self):
        CountingList.walks += 1
        return super().__iter__()


def test_reading_a_json_macro_layer_walks_its_skips_a_fixed_number_of_times():
    # The set of a layer's skips was once rebuilt for every bit: quadratic in the layers.
    CountingList.walks = 0
    data = {"space": "macro", "layers": [{"op": "conv3x3", "skips": CountingList(range(k))} for k in range(MAX_LAYERS)]}
    arch = MacroArch.from_dict(data)
    assert arch.num_skips == arch.possible_skips
    assert CountingList.walks <= 3 * MAX_LAYERS
