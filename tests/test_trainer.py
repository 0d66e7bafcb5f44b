"""Final training: device decisions, the loop, checkpoints, exact resume, evaluation, DDP."""

from __future__ import annotations

import copy
import json
import os
import types

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from enastool.config import resolve_final_config
from enastool.data import load_dataset
from enastool.encoding import MacroArch, MicroArch
from enastool.errors import EnasError
from enastool.runs import RunDir
from enastool.train import device as dev
from enastool.train.distributed import DistInfo, shard_slice
from enastool.train.evaluate import evaluate_network, load_final_run
from enastool.train.trainer import parameter_groups, sgd_optimizer, train_final
from helpers import Countdown

# A 3-layer macro arch with a skip from the stem, and a 2-block micro arch whose normal cell
# has a separable conv, a pool and an identity (so drop path has something to drop).
MACRO = MacroArch.from_ints([1, 5, 1, 0, 1, 0])
MICRO = MicroArch.from_ints([0, 0, 1, 2, 2, 4, 0, 1, 1, 3, 0, 0, 2, 1, 1, 2])

TINY = dict(  # a few seconds of CPU per run on digits
    device="cpu", compile=False, channels_last=False, dtype="float32", channels=8,
    batch_size=64, epochs=2, lr_t0=2, log_every=5, eval_every=1,
)


def tiny_config(arch, **changes):
    overrides = {**TINY, **changes}
    return resolve_final_config("smoke", arch.space, overrides=overrides, arch=arch)


class Flag:
    """Stands in for GracefulInterrupt: the loop only reads ``interrupted``."""

    interrupted = False


def train(tmp_path, name, arch, config, **kwargs):
    run = RunDir.create(tmp_path / name, config)
    return run, train_final(arch, config, run, **kwargs)


# ------------------------------------------------------------------------ device decisions
def test_auto_settings_use_bf16_and_compile_on_cuda_only_and_channels_last_everywhere():
    config = types.SimpleNamespace(dtype="auto", compile="auto", channels_last="auto")
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert dev.autocast_dtype(config, cpu) is None
    assert dev.autocast_dtype(config, cuda) is torch.bfloat16
    assert (dev.use_compile(config, cpu), dev.use_compile(config, cuda)) == (False, True)
    assert (dev.use_channels_last(config, cpu), dev.use_channels_last(config, cuda)) == (True, True)
    forced = types.SimpleNamespace(dtype="bfloat16", compile=True, channels_last="off")
    assert dev.autocast_dtype(forced, cpu) is torch.bfloat16
    assert dev.use_compile(forced, cpu) is True
    assert dev.use_channels_last(forced, cuda) is False


def test_placement_picks_the_cpu_kernels_only_for_fp32_channels_last_on_the_cpu():
    auto = types.SimpleNamespace(device="cpu", dtype="auto", compile="auto", channels_last="auto")
    placement = dev.resolve_placement(auto)
    assert (placement.device, placement.dtype, placement.channels_last, placement.compile, placement.kernels) \
        == (torch.device("cpu"), None, True, False, "cpu")
    assert placement.memory_format is torch.channels_last
    assert placement.describe() == {"device": "cpu", "dtype": "float32", "channels_last": True,
                                    "compile": False, "kernels": "cpu"}
    nchw = dev.resolve_placement(types.SimpleNamespace(device="cpu", channels_last="off"))
    assert (nchw.kernels, nchw.memory_format) == ("native", torch.contiguous_format)
    assert dev.op_kernels(torch.device("cpu"), torch.bfloat16, True) == "native"
    assert dev.op_kernels(torch.device("cuda", 0), None, True) == "native"
    cuda = torch.device("cuda", 0)
    final_on_cuda = dev.resolve_placement(auto, cuda)
    assert (final_on_cuda.dtype, final_on_cuda.compile, final_on_cuda.kernels) == (torch.bfloat16, True, "native")
    search_config = types.SimpleNamespace(device="auto")  # no compile setting: a search's
    assert dev.resolve_placement(search_config, cuda).compile is False


def test_resolve_device_and_bad_settings():
    assert dev.resolve_device("cpu") == torch.device("cpu")
    assert dev.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(EnasError, match="--device 'tpu'"):
        dev.resolve_device("tpu")
    with pytest.raises(EnasError, match="--dtype"):
        dev.autocast_dtype(types.SimpleNamespace(dtype="int8"), torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(EnasError, match="no CUDA GPU"):
            dev.resolve_device("cuda")


def test_float16_is_for_cuda_training_and_scores_in_float32_elsewhere():
    half = types.SimpleNamespace(dtype="float16")
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert dev.autocast_dtype(half, cuda) is torch.float16
    with pytest.raises(EnasError, match=r"--dtype float16 needs a CUDA device: on cpu float16 is emulated"):
        dev.autocast_dtype(half, cpu)
    assert dev.autocast_dtype(half, cpu, training=False) is None  # derive, evaluate: float32


def test_weight_decay_covers_every_parameter_at_twice_l2():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    (group,) = parameter_groups(model, 2e-4)
    assert group["weight_decay"] == pytest.approx(4e-4)
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()}  # BN and biases too


def test_l2_means_the_authors_flag_a_loss_term_l2_sum_w_squared():
    # The authors add l2 * sum(w^2) over every variable to the loss, so the l2 part of the
    # gradient is 2 * l2 * w. One step of our optimiser equals plain SGD on that loss.
    l2, lr = 0.05, 0.1
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    authors = copy.deepcopy(ours)
    x, y = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    config = types.SimpleNamespace(l2=l2, lr_max=lr, momentum=0.9, nesterov=True)
    optimizer = sgd_optimizer(ours, config)
    nn.functional.cross_entropy(ours(x), y).backward()
    optimizer.step()
    plain = torch.optim.SGD(authors.parameters(), lr=lr, momentum=0.9, nesterov=True)
    loss = nn.functional.cross_entropy(authors(x), y)
    (loss + l2 * sum(p.square().sum() for p in authors.parameters())).backward()
    plain.step()
    for (name, a), b in zip(authors.named_parameters(), ours.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7, msg=name)
    # the decay part of that gradient is 2 * l2 * w
    fresh = copy.deepcopy(authors)
    for p in fresh.parameters():
        p.grad = None
    (l2 * sum(p.square().sum() for p in fresh.parameters())).backward()
    for p in fresh.parameters():
        torch.testing.assert_close(p.grad, 2 * l2 * p.detach())


# ------------------------------------------------------------------------ evaluation
class MeanColumns(nn.Module):
    """Logits = mean of each image column (W classes): mirroring reverses the logits."""

    def forward(self, x):
        return x.mean(dim=(1, 2)), None


def test_evaluate_network_matches_hand_computation_with_and_without_tta():
    torch.manual_seed(0)
    images = torch.randn(10, 1, 3, 3)
    labels = torch.randint(0, 3, (10,))
    model = MeanColumns()
    logits = images.mean(dim=(1, 2))
    plain = evaluate_network(model, images, labels, batch_size=4, device="cpu")
    assert set(plain) == {"accuracy", "loss", "images"}
    assert plain["images"] == 10
    assert plain["accuracy"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert plain["loss"] == pytest.approx(nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)
    tta_logits = (logits + logits.flip(1)) / 2
    tta = evaluate_network(model, images, labels, batch_size=3, device="cpu", tta=True)
    assert tta["loss"] == pytest.approx(nn.functional.cross_entropy(tta_logits, labels).item(), rel=1e-6)


def test_evaluate_network_normalises_uint8_images():
    images = torch.full((4, 1, 2, 2), 255, dtype=torch.uint8)
    labels = torch.zeros(4, dtype=torch.int64)

    class Probe(nn.Module):
        def forward(self, x):
            self.seen = x
            return torch.zeros(x.shape[0], 2)

    probe = Probe()
    result = evaluate_network(probe, images, labels, 4, "cpu", mean=[0.5], std=[0.25])
    assert torch.allclose(probe.seen, torch.full_like(probe.seen, 2.0))  # (1 - 0.5) / 0.25
    assert result["loss"] == pytest.approx(torch.log(torch.tensor(2.0)).item())


# ------------------------------------------------------------------------ the loop
def test_training_beats_chance_on_digits_and_writes_the_run(tmp_path):
    config = tiny_config(MACRO, epochs=4, lr_t0=4, eval_every=2)
    events = []
    run, result = train(tmp_path, "macro", MACRO, config, callback=events.append)
    assert result["interrupted"] is False
    assert result["epoch"] == 4 and result["step"] == 4 * events[0]["steps_per_epoch"]
    assert result["test_accuracy"] > 0.5  # chance is 0.1
    assert result["best_accuracy"] >= result["test_accuracy"]

    kinds = [e["kind"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    epochs = [e for e in events if e["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]  # an event every epoch (the epochs bar)
    assert [e["epoch"] for e in epochs if "test_accuracy" in e] == [2, 4]  # eval_every=2
    ticks = [e["step"] for e in events if e["kind"] == "tick"]
    assert ticks == list(range(1, result["step"] + 1))  # the bar moves every step
    steps = [e for e in events if e["kind"] == "step"]
    assert [e["step"] for e in steps] == list(range(5, result["step"] + 1, 5))
    assert all(e["lr"] <= config.lr_max and e["images_per_s"] > 0 for e in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]

    metrics = run.read_metrics()
    assert [m["step"] for m in metrics if m["kind"] == "step"] == [e["step"] for e in steps]
    assert sum(m["kind"] == "epoch" for m in metrics) == 4
    assert all("wall_time" in m for m in metrics)
    assert not any(m["kind"] == "tick" for m in metrics)  # ticks are events, not records
    assert (run.path / "arch.txt").read_text().strip() == f"macro {MACRO.format()}"

    for name in ("last.pt", "best.pt"):
        state = torch.load(run.path / name, weights_only=True)
        assert state["arch"] == f"macro {MACRO.format()}"
        assert {"model", "optimizer", "loader", "rng", "epoch", "step", "best_accuracy"} <= set(state)
    assert torch.load(run.path / "last.pt", weights_only=True)["epoch"] == 4


def test_lr_follows_the_cosine_schedule_each_step(tmp_path):
    config = tiny_config(MACRO, epochs=1, lr_t0=1, log_every=1, lr_max=0.1, lr_min=0.0)
    events = []
    train(tmp_path, "lr", MACRO, config, callback=events.append)
    steps = [e for e in events if e["kind"] == "step"]
    per_epoch = len(steps)
    # the rate logged at step s was set from the fractional epoch (s - 1) / steps_per_epoch
    expected = [0.05 * (1 + torch.cos(torch.tensor(torch.pi * s / per_epoch))).item() for s in range(per_epoch)]
    assert [e["lr"] for e in steps] == pytest.approx(expected, abs=1e-7)


def _interrupt_on(kind: str, flag: Flag, after_step: int = 0):
    def callback(event):
        if event["kind"] == kind and event.get("step", 0) >= after_step and event.get("epoch", 0) >= 1:
            flag.interrupted = True

    return callback


@pytest.mark.parametrize("where, after_step", [("epoch", 0), ("step", 25)])
def test_interrupted_and_resumed_run_ends_bitwise_equal(tmp_path, where, after_step):
    # micro with drop path, dropout, crop, flip and cutout: every random stream matters
    arch_config = dict(drop_path_keep=0.7, keep_prob=0.8, augment_pad=1, augment_flip=True, cutout=2)
    config = tiny_config(MICRO, **arch_config)
    whole_run, whole = train(tmp_path, "whole", MICRO, config)
    whole_state = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)

    flag = Flag()
    run, first = train(tmp_path, "parts", MICRO, config, interrupt=flag,
                       callback=_interrupt_on(where, flag, after_step))
    assert first["interrupted"] is True
    assert first["step"] < whole["step"]
    assert first["epoch"] == 1
    if where == "step":
        assert first["step"] == 25  # stopped inside epoch 2, right after the step
    resumed = train_final(MICRO, config, RunDir.open(run.path), resume=True)
    assert resumed["interrupted"] is False
    assert resumed["step"] == whole["step"]
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    parts_state = torch.load(run.path / "last.pt", weights_only=True)
    for key, value in whole_state["model"].items():
        assert torch.equal(value, parts_state["model"][key]), key
    # metrics: the same records as the uninterrupted run, each step logged once
    def logged(r):
        return [(m["kind"], m["step"]) for m in r.read_metrics() if m["kind"] in ("step", "epoch")]

    assert logged(run) == logged(whole_run)
    # Every generator is seeded from the run seed (Python's and NumPy's too): the same bytes.
    assert (run.path / "last.pt").read_bytes() == (whole_run.path / "last.pt").read_bytes()


def test_a_log_interval_spanning_an_interruption_reports_the_uninterrupted_loss(tmp_path):
    config = tiny_config(MICRO, epochs=1, log_every=5)
    whole_run, _ = train(tmp_path, "whole", MICRO, config)
    run, first = train(tmp_path, "parts", MICRO, config, interrupt=Countdown(7))
    assert first["interrupted"] is True and first["step"] == 7  # 2 steps into the second interval
    train_final(MICRO, config, RunDir.open(run.path), resume=True)

    def losses(r):
        return [(m["step"], m["loss"], m["acc"]) for m in r.read_metrics() if m["kind"] == "step"]

    assert losses(run) == losses(whole_run) and len(losses(run)) >= 2


def test_a_resumed_run_reports_the_images_per_second_it_measured(tmp_path):
    # The interval of steps 11-20 is cut at step 18: 8 steps before the interrupt, 2 after the
    # resume. Dividing all 10 steps' images by the 2 steps' time read 5x too fast (and 23142
    # img/s on a GPU); only the images timed since the resume count.
    config = tiny_config(MACRO, epochs=1, log_every=10)
    whole_run, _ = train(tmp_path, "whole", MACRO, config)
    run, first = train(tmp_path, "parts", MACRO, config, interrupt=Countdown(18))
    assert first["interrupted"] is True and first["step"] == 18
    train_final(MACRO, config, RunDir.open(run.path), resume=True)

    def rates(r):
        return {m["step"]: m["images_per_s"] for m in r.read_metrics() if m["kind"] == "step"}

    whole, resumed = rates(whole_run), rates(run)
    assert set(whole) == set(resumed) == {10, 20}
    assert 0.5 < resumed[20] / whole[20] < 2.0, (resumed, whole)
    assert all("wall_time" in m for m in run.read_metrics())


def test_resume_refuses_another_architecture(tmp_path):
    config = tiny_config(MACRO, epochs=1)
    run, _ = train(tmp_path, "run", MACRO, config)
    other = MacroArch.from_ints([0, 5, 1, 0, 1, 1])
    with pytest.raises(EnasError, match="another architecture"):
        train_final(other, config, RunDir.open(run.path), resume=True)


def test_load_final_run_rebuilds_the_best_network(tmp_path):
    config = tiny_config(MICRO, epochs=2)
    run, result = train(tmp_path, "micro", MICRO, config)
    model, arch, loaded_config = load_final_run(run.path, checkpoint="best")
    assert arch == MICRO and loaded_config == config and not model.training
    splits = load_dataset("digits", purpose="final")
    images, labels = splits.test
    score = evaluate_network(model, images, labels, 100, "cpu", mean=splits.info.mean, std=splits.info.std)
    assert score["images"] == len(labels)
    assert score["accuracy"] == pytest.approx(result["best_accuracy"])

    (run.path / "best.pt").unlink()
    (run.path / "last.pt").unlink()
    with pytest.raises(EnasError, match="no last.pt or best.pt"):
        load_final_run(run.path)


# ------------------------------------------------------------------------ two processes
def test_shards_split_a_batch_into_disjoint_contiguous_parts():
    for total, world in [(64, 2), (10, 3), (2, 4)]:
        parts = [shard_slice(total, DistInfo(rank, world)) for rank in range(world)]
        covered = [i for part in parts for i in range(total)[part]]
        assert covered == list(range(total))
        sizes = [len(range(total)[part]) for part in parts]
        assert max(sizes) - min(sizes) <= 1


def _ddp_worker(rank: int, world_size: int, port: int, out: str, config) -> None:
    from enastool.train import distributed

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
        RANK=str(rank), LOCAL_RANK=str(rank),
        # As under torchrun: the rendezvous store is already served (by the test process), so
        # every rank joins it as a client and no rank has to bind MASTER_PORT itself.
        TORCHELASTIC_USE_AGENT_STORE="True",
    )
    torch.set_num_threads(1)
    try:
        distributed.init_distributed("cpu")
        run = distributed.setup_run_dir(os.path.join(out, "run"), config, resume=False)
        events = []
        result = train_final(MACRO, config, run, callback=events.append)
        distributed.barrier()  # leave together, as the CLI does: gloo aborts a rank left mid-save
        with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
            json.dump({"result": result, "events": [e["kind"] for e in events]}, handle)
    finally:
        distributed.cleanup()


def test_two_process_gloo_run_is_written_by_rank_0_only(tmp_path):
    from torch.distributed import TCPStore

    config = tiny_config(MACRO, epochs=1, batch_size=32)
    # The store listens on a port the system picks and holds it until the workers are done,
    # so no other process can take the port between choosing it and the rendezvous.
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    try:
        mp.spawn(_ddp_worker, args=(2, store.port, str(tmp_path), config), nprocs=2, join=True)
    finally:
        del store
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0["events"][0] == "start" and rank0["events"][-1] == "done"
    assert rank1["events"] == []  # only rank 0 reports progress
    # evaluation counts are all-reduced: both ranks know the full test accuracy
    assert rank0["result"]["test_accuracy"] == rank1["result"]["test_accuracy"]
    run = RunDir.open(tmp_path / "run")
    metrics = run.read_metrics()
    steps = [m["step"] for m in metrics if m["kind"] == "step"]
    assert steps == sorted(set(steps))  # one writer: no duplicated lines
    splits = load_dataset("digits", purpose="final")
    # each step consumes 32 images per rank x 2 ranks of the shared permutation
    assert rank0["result"]["step"] == splits.train.num_examples // 64
    (epoch,) = [m for m in metrics if m["kind"] == "epoch"]
    assert epoch["test_images"] == splits.test.num_examples  # both shards counted
    assert sorted(p.name for p in run.path.iterdir() if not p.name.startswith(".")) == [
        "arch.txt", "best.pt", "config.json", "config.toml", "last.pt", "metrics.csv", "metrics.jsonl",
        "run.json",
    ]
