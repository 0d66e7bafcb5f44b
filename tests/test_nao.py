"""NAO-WS as a search strategy: the pool, its evaluation points and file, the EPD rounds as
resumable units, exact resume inside EPD training and generation, derive, and that the pool
really gets better than the random start."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from enastool.config import resolve_search_config
from enastool.encoding.textio import parse_text
from enastool.encoding.tokens import MicroTokens
from enastool.errors import EnasError
from enastool.runs import RunDir
from enastool.search import nao
from enastool.search.derive import _shared_weights, derive, predicted_scores
from enastool.search.loop import SearchLoop, search
from enastool.search.nao import NaoStrategy
from helpers import Countdown

# A few seconds a run on one CPU thread: 9 steps an epoch, an evaluation point after each of
# the 2 epochs, one EPD round of 2 units between them (2 of the 20 held out). Two seeds and eight new ones make
# generation take several eta rounds (each round decodes one candidate per seed).
TINY = dict(
    device="cpu", dtype="float32", channels_last=False, channels=4, batch_size=128, epochs=2,
    lr_t0=2, log_every=3, strategy="nao", nao_eval_every=1, nao_pool=20, nao_score_examples=64,
    nao_epd_epochs=2 * nao.EPD_EPOCHS_PER_UPDATE, nao_top=2, nao_new=8, nao_max_eta=20,
)
STEPS_PER_EPOCH = 1248 // 128
TIMING = ("images_per_s", "seconds", "wall_time")  # the fields that may differ between equal runs


def tiny_config(**changes):
    return resolve_search_config("smoke", "micro", overrides={**TINY, **changes})


def pool_records(run: RunDir) -> list[dict]:
    return [json.loads(line) for line in run.file(nao.POOL_FILE).read_text().splitlines()]


def arch_of(text: str):
    records, errors = parse_text(text)
    assert not errors and len(records) == 1
    return records[0].arch


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    config = tiny_config()
    run = RunDir.create(tmp_path_factory.mktemp("nao") / "run", config)
    events = []
    result = search(config, run, callback=events.append)
    return run, result, events


# ------------------------------------------------------------------------ the run directory
def test_every_evaluation_point_writes_the_sorted_scored_pool(finished):
    run, result, _ = finished
    assert result["interrupted"] is False and result["epoch"] == 2
    records = pool_records(run)
    assert [r["evaluation"] for r in records] == [1] * 20 + [2] * 20
    for evaluation, epoch in ((1, 1), (2, 2)):
        rows = [r for r in records if r["evaluation"] == evaluation]
        assert [r["rank"] for r in rows] == list(range(1, 21)) and {r["epoch"] for r in rows} == {epoch}
        scores = [r["score"] for r in rows]
        assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
        assert all(s * 64 == round(s * 64) for s in scores)  # accuracies on 64 images
        assert len({arch_of(r["arch"]).canonical() for r in rows}) == 20  # distinct members
    first = [r for r in records if r["evaluation"] == 1]
    assert {r["generation"] for r in first} == {nao.RANDOM_START}


def test_generated_architectures_are_valid_new_and_replace_the_worst(finished):
    run, _, _ = finished
    records = pool_records(run)
    first = [r for r in records if r["evaluation"] == 1]
    second = [r for r in records if r["evaluation"] == 2]
    (replace,) = [r for r in run.read_metrics() if r.get("update") == "replace"]
    new = [r for r in second if r["generation"] == 1]
    assert len(new) == replace["replaced"] > 0
    old_pool = {arch_of(r["arch"]).canonical() for r in first}
    for record in new:
        arch = arch_of(record["arch"])  # parses: a valid micro architecture of the run's size
        assert arch.num_blocks == 2 and arch.canonical() not in old_pool
    assert len({arch_of(r["arch"]).canonical() for r in new}) == len(new)
    # The rest of the pool is the best of the first evaluation point; the worst are gone.
    kept = {arch_of(r["arch"]) for r in second if r["generation"] == nao.RANDOM_START}
    assert kept == {arch_of(r["arch"]) for r in first[: 20 - len(new)]}


def test_metrics_record_pool_statistics_the_epd_figures_and_generation(finished):
    run, _, events = finished
    metrics = run.read_metrics()
    records = pool_records(run)
    evaluations = [r for r in metrics if r.get("kind") == "controller" and "evaluation" in r]
    assert [r["evaluation"] for r in evaluations] == [1, 2]
    for record in evaluations:
        scores = [p["score"] for p in records if p["evaluation"] == record["evaluation"]]
        assert record["pool_mean"] == pytest.approx(statistics.mean(scores))
        assert (record["pool_max"], record["pool_min"]) == (max(scores), min(scores))
        assert record["valid_acc"] == pytest.approx(record["pool_mean"])
    assert "new_mean" in evaluations[1] and evaluations[1]["new_count"] > 0
    epd = [r for r in metrics if str(r.get("update", "")).startswith("epd")]
    assert [r["epd_epoch"] for r in epd] == [10, 20]
    assert all(r["epd_loss"] > 0 for r in epd)
    assert 0 <= epd[-1]["pairwise_accuracy"] <= 1 and 0 <= epd[-1]["hamming"] <= 16
    assert epd[-1]["holdout"] == 2  # round(20 * 0.1)
    generation = [r for r in metrics if str(r.get("update", "")).startswith("eta")]
    assert [r["eta"] for r in generation] == [float(e) for e in range(1, len(generation) + 1)]
    assert len(generation) > 1 and generation[-1]["found"] == sum(r["new"] for r in generation)
    # The epoch record of an evaluation epoch carries the pool's mean, not a diluted one.
    epochs = [r for r in metrics if r.get("kind") == "epoch"]
    assert epochs[0]["valid_acc"] == pytest.approx(evaluations[0]["pool_mean"])
    assert events[-1]["kind"] == "done"


def test_the_checkpoint_holds_the_pool_and_loads_weights_only(finished):
    run, _, _ = finished
    state = torch.load(run.checkpoint_path(), weights_only=True)["strategy"]
    assert state["stage"] == nao.IDLE and state["evaluations"] == 2 and state["rounds"] == 1
    assert state["pool"].shape == state["scored"].shape == (20, MicroTokens(2).length)
    assert torch.equal(state["scores"], torch.tensor([r["score"] for r in pool_records(run)[20:]],
                                                     dtype=torch.float64))


# ------------------------------------------------------------------------ exact resume
def test_a_search_interrupted_in_epd_training_and_in_generation_resumes_bit_for_bit(tmp_path, monkeypatch):
    # Scoring in units of 5 members, so that an interrupt can also land inside scoring.
    monkeypatch.setattr(nao, "SCORE_CHUNK", 5)
    config = tiny_config()
    straight = RunDir.create(tmp_path / "straight", config)
    search(config, straight)

    run = RunDir.create(tmp_path / "stopped", config)
    # Epoch 1: 9 steps, then the units: scoring (5, 10, 15, 20 members: the evaluation point),
    # EPD training (10, 20 epochs), eta rounds, the replacement. Polls count from each start.
    stages = []
    for number, at in enumerate((STEPS_PER_EPOCH + 1, 4, 3)):
        result = search(config, run, resume=number > 0, interrupt=Countdown(at))
        assert result["interrupted"] is True
        state = run.load_checkpoint()["strategy"]
        stages.append((state["stage"], state["pending_count"], state["trainer"]["epoch"],
                       state["generator"]["rounds"]))
    assert stages == [
        (nao.SCORE, 5, 0, 0),  # inside scoring
        (nao.TRAIN, 20, 10, 0),  # inside EPD training (the evaluation point behind it)
        (nao.GENERATE, 20, 20, 2),  # inside generation
    ]
    assert len(state["generator"]["found"]) < config.nao_new  # generation not done yet
    # A hard stop after the checkpoint may have written pool lines of evaluation points the
    # state has not reached: resume drops them, so the file has no duplicates.
    with run.file(nao.POOL_FILE).open("a") as handle:
        handle.write(json.dumps({"evaluation": 2, "epoch": 2, "rank": 1, "score": 1.0}) + "\n")
    final = search(config, run, resume=True)
    assert final["interrupted"] is False

    a, b = (torch.load(r.checkpoint_path(), weights_only=True) for r in (straight, run))
    assert torch.equal(a["strategy"]["trainer"]["model"]["encoder.lstm.weight_hh_l0"],
                       b["strategy"]["trainer"]["model"]["encoder.lstm.weight_hh_l0"])
    assert (straight.path / "last.pt").read_bytes() == (run.path / "last.pt").read_bytes()
    assert without_timing(straight.read_metrics()) == without_timing(run.read_metrics())
    assert run.file(nao.POOL_FILE).read_text() == straight.file(nao.POOL_FILE).read_text()


def test_resume_refuses_a_pool_that_does_not_fit_the_run(finished, tmp_path):
    run, _, _ = finished
    config = run.config
    copy = RunDir.create(tmp_path / "copy", config)
    state = run.load_checkpoint()
    state["strategy"]["pool"] = state["strategy"]["pool"][:5]
    copy.save_checkpoint("last.pt", state)
    with pytest.raises(EnasError, match=r"strategy\.pool has shape \[5, 16\], expected \[20, 16\]"):
        search(config, copy, resume=True)


def test_a_damaged_pool_file_is_one_line(finished, tmp_path):
    run, _, _ = finished
    copy = RunDir.create(tmp_path / "copy", run.config)
    copy.save_checkpoint("last.pt", run.load_checkpoint())
    copy.file(nao.POOL_FILE).write_text("not json\n")
    with pytest.raises(EnasError, match=r"pool.jsonl: line 1 is not a pool record"):
        search(run.config, copy, resume=True)


# ------------------------------------------------------------------------ derive
def test_derive_ranks_the_last_scored_pool_without_scoring_again(finished):
    run, _, _ = finished
    last = pool_records(run)[20:]
    ranked = derive(run.path)
    assert [(a.format(), s) for a, s in ranked] == [(arch_of(r["arch"]).format(), r["score"]) for r in last]
    assert derive(run.path, top=3) == ranked[:3]
    predicted = predicted_scores(run.path, [a for a, _ in ranked])
    assert len(predicted) == 20 and all(0 < p < 1 for p in predicted)
    with pytest.raises(EnasError, match="--samples and --seed: not for a nao run, whose derive ranks the pool"):
        derive(run.path, samples=5, seed=1)


def test_derive_before_the_first_evaluation_point_and_an_untrained_predictor_are_one_line(tmp_path):
    config = tiny_config(nao_eval_every=2)
    run = RunDir.create(tmp_path / "run", config)
    assert search(config, run, interrupt=Countdown(2))["interrupted"]
    with pytest.raises(EnasError, match=r"run: no pool has been scored yet: nao scores its pool first "
                                        r"after epoch 2"):
        derive(run.path)
    with pytest.raises(EnasError, match="the predictor is untrained"):
        predicted_scores(run.path, [arch_of("micro 0 0 1 1 0 2 1 3 0 0 1 1 0 2 1 3")])


def test_only_a_run_with_a_predictor_predicts(tmp_path):
    config = resolve_search_config("smoke", "micro", overrides={
        **{k: v for k, v in TINY.items() if not k.startswith("nao")}, "strategy": "random", "epochs": 1})
    run = RunDir.create(tmp_path / "run", config)
    search(config, run)
    with pytest.raises(EnasError, match="strategy random has no predictor; only nao runs train one"):
        predicted_scores(run.path, [arch_of("micro 0 0 1 1 0 2 1 3 0 0 1 1 0 2 1 3")])


# ------------------------------------------------------------------------ the strategy alone
def test_the_random_start_is_distinct_and_children_come_from_the_pool():
    strategy = NaoStrategy(tiny_config(nao_pool=50, nao_top=10, nao_new=20), torch.device("cpu"))
    pool = strategy.pool_archs
    assert len({a.canonical() for a in pool}) == 50
    assert all(strategy.child() in pool for _ in range(100))
    assert [strategy.evaluation_point(e) for e in (1, 2)] == [1, 2]
    other = NaoStrategy(tiny_config(epochs=7, nao_eval_every=3), torch.device("cpu"))
    assert [other.evaluation_point(e) for e in range(1, 8)] == [0, 0, 1, 0, 0, 2, 3]
    assert [other.evaluation_epoch(p) for p in (1, 2, 3)] == [3, 6, 7]


def test_a_pool_larger_than_the_space_allows_is_refused():
    # Macro networks of one layer: six architectures in all.
    config = resolve_search_config("smoke", "macro", overrides={
        **TINY, "layers": 1, "nao_pool": 7, "nao_top": 2, "nao_new": 3})
    with pytest.raises(EnasError, match="nao_pool = 7: the macro space of 1 layers gave only 6 distinct"):
        NaoStrategy(config, torch.device("cpu"))


def test_a_scoring_batch_larger_than_the_validation_split_is_refused(tmp_path):
    config = tiny_config(nao_score_examples=500)  # digits hold out 181
    with pytest.raises(EnasError, match="nao_score_examples = 500: a scoring batch of 500 images does not fit "
                                        "the 181 validation images of digits"):
        search(config, RunDir.create(tmp_path / "run", config))


def test_nao_searches_the_macro_space_too(tmp_path):
    config = resolve_search_config("smoke", "macro", overrides={**TINY, "epochs": 1})
    run = RunDir.create(tmp_path / "run", config)
    search(config, run)
    ranked = derive(run.path, top=2)
    assert [a.space for a, _ in ranked] == ["macro", "macro"] and ranked[0][1] >= ranked[1][1]


# ------------------------------------------------------------------------ rnn
# rnn on the embedded pydoc corpus: 12 windows of 128 streams x 35 tokens an epoch, pool of
# 20 cells of 3 nodes scored on 64 segments of 35 validation tokens.
RNN_TINY = dict(
    TINY, hidden_size=16, num_nodes=3, bptt=35, channels_last="auto", nao_score_examples=64,
)
for _image_only in ("channels", "lr_t0", "channels_last"):
    RNN_TINY.pop(_image_only)


def rnn_config(**changes):
    return resolve_search_config("smoke", "rnn", overrides={**RNN_TINY, **changes})


def test_the_text_scoring_batch_is_one_window_of_distinct_validation_segments():
    config = rnn_config()
    loop = SearchLoop(config, None)
    task = loop.task
    (window,) = task.score_batch(64, seed=7)
    assert window.x.shape == window.y.shape == (64, 35) and window.seq_len == 35
    valid = task.corpus.valid
    starts = []
    for row_x, row_y in zip(window.x, window.y):  # each row is a segment of the split, in order
        start = next(s for s in range(0, valid.numel() - 35, 35) if torch.equal(valid[s:s + 35], row_x))
        assert torch.equal(valid[start + 1:start + 36], row_y)
        starts.append(start)
    assert starts == sorted(set(starts))
    (again,) = task.score_batch(64, seed=7)
    (other,) = task.score_batch(64, seed=8)
    assert torch.equal(again.x, window.x) and not torch.equal(other.x, window.x)
    segments = (valid.numel() - 1) // 35
    with pytest.raises(EnasError, match=f"a scoring batch of {segments + 1} segments of 35 tokens does "
                                        f"not fit the {valid.numel()} validation tokens of pydoc"):
        task.score_batch(segments + 1, seed=7)


def test_nao_searches_rnn_cells_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setattr(nao, "SCORE_CHUNK", 5)
    config = rnn_config()
    straight = RunDir.create(tmp_path / "straight", config)
    search(config, straight)
    run = RunDir.create(tmp_path / "stopped", config)
    assert search(config, run, interrupt=Countdown(12 + 4))["interrupted"] is True  # in EPD training
    assert run.load_checkpoint()["strategy"]["stage"] == nao.TRAIN
    assert search(config, run, resume=True)["interrupted"] is False
    assert (straight.path / "last.pt").read_bytes() == (run.path / "last.pt").read_bytes()
    assert run.file(nao.POOL_FILE).read_text() == straight.file(nao.POOL_FILE).read_text()

    records = pool_records(run)
    assert len(records) == 40 and all(arch_of(r["arch"]).space == "rnn" for r in records)
    ranked = derive(run.path)
    assert [a.format() for a, _ in ranked] == [arch_of(r["arch"]).format() for r in records[20:]]
    assert all(0 < score < 80 for _, score in ranked)  # 80 / perplexity
    evaluation = [r for r in run.read_metrics() if r.get("kind") == "controller" and "valid_ppl" in r]
    assert evaluation and all(r["valid_ppl"] > 1 for r in evaluation)


def test_the_rnn_nao_presets_fit_their_corpora():
    smoke = resolve_search_config("smoke", "rnn", overrides={"strategy": "nao"})
    assert smoke.nao_score_examples * smoke.bptt <= 6309  # pydoc's validation tokens
    assert [e for e in range(1, smoke.epochs + 1) if e % smoke.nao_eval_every == 0] == [2, 4, 6]
    paper = resolve_search_config("paper", "rnn", overrides={"strategy": "nao"})
    assert paper.nao_score_examples * paper.bptt <= 73760 and paper.epochs // paper.nao_eval_every == 4


# ------------------------------------------------------------------------ it works
@pytest.mark.slow
def test_a_smoke_search_ends_with_a_pool_better_than_its_random_start(tmp_path):
    """Scored with the final shared weights on the run's scoring batch, the final pool beats
    the random pool the run started from, and so do the architectures the EPD generated (a
    pool that replaced its worst with random ones would only gain by selection)."""
    config = resolve_search_config("smoke", "micro", overrides=dict(
        device="cpu", dtype="float32", channels_last=False, strategy="nao", epochs=6, lr_t0=6,
        nao_eval_every=2, nao_pool=40, nao_top=10, nao_new=15, nao_epd_epochs=30,
    ))
    run = RunDir.create(tmp_path / "run", config)
    search(config, run)
    records = pool_records(run)
    last = max(r["evaluation"] for r in records)
    task, _ = _shared_weights(run, "cpu")
    data = task.score_batch(config.nao_score_examples, config.seed + nao.SCORE_SEED_OFFSET)
    start = [arch_of(r["arch"]) for r in records if r["evaluation"] == 1]  # the random start
    start_mean = statistics.mean(r["score"] for r in task.scores(start, data))
    final = [r for r in records if r["evaluation"] == last]
    generated = [r["score"] for r in final if r["generation"] > nao.RANDOM_START]
    assert len(generated) >= config.nao_new
    assert statistics.mean(r["score"] for r in final) > start_mean + 0.02
    assert statistics.mean(generated) > start_mean + 0.02
    # The scores in the file are those of the final weights on that batch: derive can trust them.
    assert [r["score"] for r in task.scores([arch_of(r["arch"]) for r in final], data)] == \
        [r["score"] for r in final]
