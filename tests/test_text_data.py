"""Behaviour of the text data: PTB files, the embedded pydoc corpus, BPTT streams, download."""

import hashlib
import http.server
import io
import math
import platform
import threading
from pathlib import Path

import pytest
import torch

from enastool.data import (
    EOS, UNK, TextBatches, Vocabulary, download_ptb, endless_windows, load_corpus, make_streams,
    text_dataset_names, unigram_perplexity,
)
from enastool.data import download, ptb, pydoc_corpus, streams
from enastool.errors import EnasError

from test_data import RangeHandler

# Mikolov's layout: each line starts with a space and ends with " \n".
TRAIN = [" the cat sat on the mat ", " the dog sat ", " a <unk> of N dogs "]
VALID = [" the cat sat ", " a dog "]
TEST = [" the mat ", "", " N N "]  # a blank line is a lone <eos>
TRAIN_VOCAB = ["<eos>", "<unk>", "N", "a", "cat", "dog", "dogs", "mat", "of", "on", "sat", "the"]


def write_ptb(folder: Path, train=TRAIN, valid=VALID, test=TEST) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in (("train", train), ("valid", valid), ("test", test)):
        (folder / ptb.FILES[split]).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


def ids(words: str, vocab=TRAIN_VOCAB) -> list[int]:
    return [vocab.index(w) for w in words.split()]


# ---------------------------------------------------------------------------- PTB files

def test_ptb_vocabulary_is_the_sorted_train_words_and_ids_are_exact(tmp_path):
    corpus = load_corpus("ptb", write_ptb(tmp_path))
    assert list(corpus.vocab.words) == TRAIN_VOCAB  # code-point order: '<' < 'N' < 'a'
    assert corpus.train.tolist() == ids("the cat sat on the mat <eos> the dog sat <eos> a <unk> of N dogs <eos>")
    assert corpus.valid.tolist() == ids("the cat sat <eos> a dog <eos>")
    assert corpus.test.tolist() == ids("the mat <eos> <eos> N N <eos>")
    assert corpus.train.dtype == torch.int64 and corpus.train.device.type == "cpu"
    assert (corpus.vocab.eos, corpus.vocab.unk, corpus.vocab.id_of("the")) == (0, 1, 11)
    assert corpus.vocab.decode(corpus.valid[:3]) == ["the", "cat", "sat"]
    assert corpus.info.as_dict() == {
        "name": "ptb", "vocab_size": 12, "tokens": {"train": 17, "valid": 7, "test": 7},
        "digest": corpus.info.digest, "source": ptb.SOURCE,
    }
    assert corpus.sizes() == corpus.info.tokens


def test_ptb_line_endings_final_newline_and_byte_order_mark_do_not_change_the_tokens(tmp_path):
    plain = load_corpus("ptb", write_ptb(tmp_path / "a"))
    other = write_ptb(tmp_path / "b")
    (other / ptb.FILES["train"]).write_bytes(b"\xef\xbb\xbf" + "\r\n".join(TRAIN).encode())  # BOM, CRLF, no final \n
    (other / ptb.FILES["test"]).write_bytes("\r".join(TEST).encode() + b"\r")  # old Mac line ends
    changed = load_corpus("ptb", other)
    assert torch.equal(plain.train, changed.train) and torch.equal(plain.test, changed.test)
    assert plain.info.digest == changed.info.digest


def test_ptb_digest_follows_the_content(tmp_path):
    first = load_corpus("ptb", write_ptb(tmp_path / "a")).info.digest
    again = load_corpus("ptb", write_ptb(tmp_path / "b")).info.digest
    swapped = load_corpus("ptb", write_ptb(tmp_path / "c", test=[" the mat ", " N N ", ""])).info.digest
    assert first == again != swapped and len(first) == 64


def test_ptb_is_found_in_the_download_subfolder(tmp_path):
    write_ptb(tmp_path / ptb.FOLDER)
    assert load_corpus("ptb", tmp_path).sizes() == {"train": 17, "valid": 7, "test": 7}


def test_unknown_word_is_refused_with_file_line_and_word(tmp_path):
    folder = write_ptb(tmp_path, test=[" the mat ", " the cat ", " the zebra sat "])
    with pytest.raises(EnasError) as caught:
        load_corpus("ptb", folder)
    message = str(caught.value)
    assert "\n" not in message
    where = f"{folder / 'ptb.test.txt'} line 3: word 'zebra'"
    assert f"{where} is not in the vocabulary of {folder / 'ptb.train.txt'}" in message


def spoil(path: Path, kind: str) -> str:
    """Make ``path`` unusable in one way; return what the error must say."""
    if kind == "missing":
        path.unlink()
        return "is missing"
    if kind == "binary":
        path.write_bytes(b" the cat \n\x00\x01\x02")
        return "is a binary file, not text (a NUL byte at offset 10)"
    if kind == "not utf-8":
        path.write_bytes(b" the caf\xe9 \n")
        return "is not UTF-8 text (byte 0xe9 at offset 8)"
    if kind == "empty":
        path.write_text(" \n\n  \n")
        return "holds no words"
    if kind == "a folder":
        path.unlink()
        path.mkdir()
        return "is missing"
    raise ValueError(kind)


# A folder without its train file is no PTB copy at all: that case is the next test's.
BAD_FILES = [(split, kind) for split in ("train", "valid", "test")
             for kind in ("missing", "binary", "not utf-8", "empty", "a folder")
             if split != "train" or kind in ("binary", "not utf-8", "empty")]


@pytest.mark.parametrize("split, kind", BAD_FILES)
def test_bad_ptb_file_is_one_line_naming_the_file_and_the_problem(tmp_path, split, kind):
    folder = write_ptb(tmp_path / "d")
    path = folder / ptb.FILES[split]
    expected = spoil(path, kind)
    with pytest.raises(EnasError) as caught:
        load_corpus("ptb", folder)
    message = str(caught.value)
    assert "\n" not in message and f"{path} {expected}" in message
    assert "enastool data download ptb" in message


def test_ptb_missing_directory_or_train_file_says_how_to_download(tmp_path):
    with pytest.raises(EnasError, match=r"does not exist; run `enastool data download ptb --data-dir"):
        load_corpus("ptb", tmp_path / "nowhere")
    with pytest.raises(EnasError, match=f"no ptb.train.txt in {tmp_path} or {tmp_path / 'ptb'}"):
        load_corpus("ptb", tmp_path)


def test_damaged_download_folder_is_to_be_deleted(tmp_path):
    folder = write_ptb(tmp_path / ptb.FOLDER)
    (folder / ptb.FILES["valid"]).write_bytes(b"")
    with pytest.raises(EnasError, match=f"holds no words; delete {folder} and run"):
        load_corpus("ptb", tmp_path)


def test_text_registry_names_and_unknown_name():
    assert text_dataset_names() == ("pydoc", "ptb")
    with pytest.raises(EnasError, match="unknown text data set 'wikitext': expected one of pydoc, ptb"):
        load_corpus("wikitext")


# ---------------------------------------------------------------------------- vocabulary, baseline

def test_vocabulary_round_trips_and_refuses_bad_words():
    vocab = Vocabulary.from_tokens(["b", "a", EOS, "b"])
    assert vocab.words == (EOS, "a", "b") and len(vocab) == vocab.size == 3 and vocab.unk is None
    assert vocab.encode(["b", "a", EOS]).tolist() == [2, 1, 0]
    assert vocab.decode([2, 1]) == ["b", "a"] and vocab.word_of(1) == "a" and "b" in vocab
    assert vocab == Vocabulary([EOS, "a", "b"]) and hash(vocab) == hash(Vocabulary([EOS, "a", "b"]))
    with pytest.raises(KeyError):
        vocab.encode(["c"])
    for bad in (["a", "a"], ["a b"], [""], []):
        with pytest.raises(ValueError):
            Vocabulary(bad)


def test_unigram_perplexity_is_exact_on_a_tiny_corpus():
    train, test = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1])
    # p = (1/2, 1/4, 1/4): perplexity = exp(-(ln 1/2 + ln 1/4) / 2) = sqrt(8)
    assert unigram_perplexity(train, test, 3) == pytest.approx(math.sqrt(8))
    # add-one: counts (3, 2, 2) over 7
    laplace = math.exp(-(math.log(3 / 7) + math.log(2 / 7)) / 2)
    assert unigram_perplexity(train, test, 3, add=1.0) == pytest.approx(laplace)
    with pytest.raises(ValueError, match="probability 0"):
        unigram_perplexity(train, torch.tensor([3]), 4)


# ---------------------------------------------------------------------------- streams and windows

def test_streams_cut_the_split_into_contiguous_rows_and_drop_the_tail():
    rows = make_streams(torch.arange(23), 3)
    assert rows.tolist() == [list(range(0, 7)), list(range(7, 14)), list(range(14, 21))]
    assert rows.dtype == torch.int64
    with pytest.raises(EnasError, match="leave 1 per stream, fewer than the 2"):
        make_streams(torch.arange(5), 3)


def test_fixed_windows_cover_every_target_once_with_targets_shifted_by_one():
    batches = TextBatches(torch.arange(24), 3, bptt=3)  # streams of 8: 7 targets each
    windows = list(batches)
    assert [w.seq_len for w in windows] == [3, 3, 1] and len(batches) == 3
    x, y, seq_len = windows[0]
    assert x.tolist() == [[0, 1, 2], [8, 9, 10], [16, 17, 18]]
    assert y.tolist() == [[1, 2, 3], [9, 10, 11], [17, 18, 19]]
    assert windows[2].x.tolist() == [[6], [14], [22]] and windows[2].y.tolist() == [[7], [15], [23]]
    assert x.is_contiguous() and x.device == batches.device
    full = TextBatches(torch.arange(24), 3, bptt=3, drop_last=True)
    assert [w.seq_len for w in full] == [3, 3] and full.nominal_windows == 2


def test_random_lengths_follow_the_reference_draw_and_repeat_by_seed():
    def draws(seed, bptt=35, count=4000):
        generator = torch.Generator().manual_seed(seed)
        return [streams.draw_length(bptt, generator) for _ in range(count)]

    lengths = draws(0)
    assert draws(0) == lengths and draws(1) != lengths
    assert min(lengths) >= 7 and max(lengths) <= 44  # base 35: 25..44; base 17.5: 7..27
    short = sum(length < 25 for length in lengths) / len(lengths)
    assert 0.03 < short < 0.07  # about the 5% of windows with the short base
    assert 33.2 < sum(lengths) / len(lengths) < 34.0  # 0.95 * 34.5 + 0.05 * 17
    assert min(draws(0, bptt=2, count=500)) == streams.MIN_LENGTH  # the reference's draw would reach 0


def test_a_random_length_epoch_walks_the_streams_and_ends_at_the_reference_reset_point():
    tokens = torch.arange(3 * 400)
    batches = TextBatches(tokens, 3, bptt=10, random_length=True, seed=4)
    assert batches.at_epoch_start
    rows = make_streams(tokens, 3)
    count = len(batches)
    windows = list(batches)
    assert len(windows) == count
    x = torch.cat([w.x for w in windows], dim=1)
    y = torch.cat([w.y for w in windows], dim=1)
    end = x.shape[1]
    assert torch.equal(x, rows[:, :end]) and torch.equal(y, rows[:, 1:end + 1])
    ends = torch.tensor([w.seq_len for w in windows]).cumsum(0).tolist()
    # The reference's should_reset: the first window ending at or past L - 3 ends the epoch.
    assert all(e < 400 - 3 for e in ends[:-1]) and 400 - 3 <= end == ends[-1] <= 400 - 1
    assert all(1 <= w.seq_len <= 30 for w in windows)
    assert batches.epoch == 1 and batches.at_epoch_start  # rolled over: the state is reset here
    second = [w.seq_len for w in batches]
    assert second != [w.seq_len for w in windows] and batches.epoch == 2


def test_len_is_the_number_of_windows_of_the_current_epoch():
    batches = TextBatches(torch.arange(2 * 1000), 2, bptt=20, random_length=True, seed=1)
    for _ in range(3):
        expected = len(batches)
        assert len(list(batches)) == expected
    assert batches.nominal_windows == 999 // 20


def test_state_dict_resumes_mid_epoch_with_exactly_the_same_windows():
    tokens = torch.arange(2 * 300)

    def make():
        return TextBatches(tokens, 2, bptt=12, random_length=True, seed=9)

    running = make()
    epoch_len = len(running)
    windows = endless_windows(running)
    for _ in range(epoch_len + 3):  # one epoch and three more windows
        next(windows)
    buffer = io.BytesIO()
    torch.save(running.state_dict(), buffer)
    expected = [next(windows) for _ in range(2 * epoch_len)]  # crosses the next epoch boundary

    resumed = make()
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert (resumed.epoch, resumed.position, resumed.at_epoch_start) == (1, 3, False)
    got = endless_windows(resumed)
    for a in expected:
        b = next(got)
        assert a.seq_len == b.seq_len and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_state_from_other_settings_is_refused():
    state = TextBatches(torch.arange(100), 2, bptt=5, random_length=True).state_dict()
    with pytest.raises(EnasError, match="saved for batch 2, streams of 50 tokens, bptt 5"):
        TextBatches(torch.arange(100), 4, bptt=5, random_length=True).load_state_dict(state)


def test_endless_windows_refuses_streams_without_a_full_window():
    with pytest.raises(EnasError, match="hold no full window of bptt 10"):
        endless_windows(TextBatches(torch.arange(20), 2, bptt=10, drop_last=True))


# ---------------------------------------------------------------------------- embedded corpus

def test_pydoc_tokenisation_follows_the_documented_rules():
    assert pydoc_corpus.sentences("It's 3.14 and isn't built-in (see __init__). Don't! 0x1F is x1; a 'q'") == [
        ["it", "'s", "N", "and", "is", "n't", "built-in", "see", "__init__"],
        ["do", "n't"],
        ["N", "is", "x1", "a", "q"],
    ]
    assert pydoc_corpus.sentences("*****\n   ...") == []  # a heading rule has no tokens


def test_pydoc_cut_and_rare_words_follow_the_documented_rules():
    # Topic "b" sorts after "a": paragraphs 0..9 are a0..a7, b0, b1 -> b0 valid, b1 test.
    # Several blank lines (one with spaces) and blank lines at a topic's ends make no paragraph.
    topics = {"b": "\n\nword b0.\n\n \n\nword b1.\n", "a": "\n\n".join(f"word a{i} common." for i in range(8))}
    topics["a"] += " common."
    lines = pydoc_corpus.ptb_lines(topics)
    assert lines["valid"] == ["word <unk>"] and lines["test"] == ["word <unk>"]
    assert lines["train"][0] == "word <unk> common" and len(lines["train"]) == 9
    assert lines["train"][-1] == "common"  # 'common' occurs 9 times, 'word' 8: both kept


def test_pydoc_corpus_is_deterministic_and_self_consistent():
    first, second = load_corpus("pydoc"), load_corpus("pydoc")
    assert first.info == second.info and torch.equal(first.train, second.train)
    assert first.info.source == f"pydoc_data.topics of Python {platform.python_version()}"
    assert first.vocab.unk is not None and first.vocab.words == tuple(sorted(first.vocab.words))
    counts = torch.bincount(first.train, minlength=len(first.vocab))
    kept = [i for i, w in enumerate(first.vocab.words) if w not in (EOS, UNK)]
    assert int(counts[kept].min()) >= pydoc_corpus.MIN_COUNT
    assert 50_000 < first.sizes()["train"] < 80_000  # about 80/10/10
    assert first.sizes()["valid"] < first.sizes()["train"] / 5 and first.sizes()["test"] < first.sizes()["train"] / 5


def test_pydoc_corpus_has_the_documented_sizes_for_this_python():
    corpus = load_corpus("pydoc")
    rows = {row[0]: row for row in pydoc_corpus.KNOWN_BUILDS}
    row = rows.get(platform.python_version())
    if row is None or not corpus.info.digest.startswith(row[5]):
        pytest.skip(f"pydoc_data.topics of Python {platform.python_version()} here is not a documented build")
    version, vocab, train, valid, test, _, unigram = row
    assert (corpus.info.vocab_size, corpus.sizes()) == (vocab, {"train": train, "valid": valid, "test": test})
    assert corpus.unigram_perplexity("test") == pytest.approx(unigram, abs=0.05)
    assert f"{version:<7}  {vocab:>10,}  {train:>6,}" in pydoc_corpus.__doc__


# ---------------------------------------------------------------------------- download

def make_mirror(tmp_path: Path) -> tuple[Path, dict]:
    source = write_ptb(tmp_path / "mirror")
    md5s = {name: hashlib.md5((source / name).read_bytes()).hexdigest() for name in ptb.FILES.values()}
    return source, md5s


def test_download_ptb_from_a_file_url_verifies_and_lands_where_data_dir_finds_it(tmp_path):
    source, md5s = make_mirror(tmp_path)
    seen = []
    folder = download_ptb(tmp_path / "data", lambda done, total: seen.append((done, total)),
                          url=source.as_uri(), md5s=md5s)
    assert folder == tmp_path / "data" / ptb.FOLDER
    total = sum((source / name).stat().st_size for name in md5s)
    assert seen[-1] == (total, total)
    assert load_corpus("ptb", tmp_path / "data").sizes() == {"train": 17, "valid": 7, "test": 7}
    assert sorted(p.name for p in folder.iterdir()) == sorted(md5s)  # no .part left
    for name in md5s:
        (source / name).unlink()  # already there: a no-op that needs no source
    assert download_ptb(tmp_path / "data", url=source.as_uri(), md5s=md5s) == folder


def test_download_ptb_resumes_a_part_file_and_fetches_only_what_is_missing(tmp_path):
    source, md5s = make_mirror(tmp_path)
    folder = tmp_path / "data" / ptb.FOLDER
    folder.mkdir(parents=True)
    train = (source / ptb.FILES["train"]).read_bytes()
    (folder / (ptb.FILES["train"] + download.PART_SUFFIX)).write_bytes(train[:20])
    (folder / ptb.FILES["test"]).write_bytes((source / ptb.FILES["test"]).read_bytes())  # already fetched
    (source / ptb.FILES["test"]).unlink()
    seen = []
    download_ptb(tmp_path / "data", lambda done, total: seen.append(done), url=str(source), md5s=md5s)
    assert seen[0] == 20  # resumed, not restarted
    assert (folder / ptb.FILES["train"]).read_bytes() == train
    assert load_corpus("ptb", folder).sizes()["valid"] == 7


def test_download_ptb_deletes_a_file_with_the_wrong_checksum(tmp_path):
    source, md5s = make_mirror(tmp_path)
    md5s[ptb.FILES["valid"]] = "0" * 32
    with pytest.raises(EnasError, match="ptb.valid.txt.part: MD5 .* does not match"):
        download_ptb(tmp_path / "data", url=source.as_uri(), md5s=md5s)
    folder = tmp_path / "data" / ptb.FOLDER
    assert sorted(p.name for p in folder.iterdir()) == [ptb.FILES["train"]]  # nothing untrusted kept


def test_download_ptb_resumes_over_http(tmp_path):
    source, md5s = make_mirror(tmp_path)
    payloads = {"/" + name: (source / name).read_bytes() for name in md5s}

    class Handler(RangeHandler):
        def do_GET(self):
            type(self).payload = payloads[self.path.rsplit("/data", 1)[-1]]
            super().do_GET()

    Handler.ranges = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        folder = tmp_path / "data" / ptb.FOLDER
        folder.mkdir(parents=True)
        (folder / (ptb.FILES["train"] + ".part")).write_bytes(payloads["/" + ptb.FILES["train"]][:10])
        download_ptb(tmp_path / "data", url=f"http://127.0.0.1:{server.server_port}/data/", md5s=md5s)
    finally:
        server.shutdown()
        server.server_close()
    assert Handler.ranges == ["bytes=10-", None, None]
    assert load_corpus("ptb", tmp_path / "data").sizes()["test"] == 7


def test_default_ptb_source_is_pinned():
    assert download.PTB_URL.startswith("https://")
    assert set(download.PTB_MD5) == set(ptb.FILES.values())
    assert all(len(md5) == 32 for md5 in download.PTB_MD5.values())
