"""Test-set evaluation of a fixed network and reloading a finished final-training run."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..checkpoints import check_checkpoint
from ..config import FinalConfig
from ..encoding.spaces import IMAGES, data_kind, space_class
from ..errors import EnasError
from ..nn.final import build_final_network
from ..runs import BEST_CHECKPOINT, CHECKPOINT_CHOICES, EVAL_SPLITS, LAST_CHECKPOINT, RunDir
from .device import autocast
from .distributed import DistInfo, all_reduce_sum, shard_slice

CHECKPOINT_NAMES = (LAST_CHECKPOINT, BEST_CHECKPOINT)  # without a choice, the first that exists
EVAL_BATCH_MULTIPLIER = 2  # no activations kept for backward at test time: bigger batches fit
ARCH_FILE = "arch.txt"
RUN_KIND = FinalConfig.kind
CHECKPOINT_VERSION = 2  # 2: the run kind, the log-interval sums, micro layer_base and aux head moved
# What evaluate reads before it can build the network: the rest is checked against the network.
HEADER_TEMPLATE = {"arch": "", "network": {"in_channels": 0, "num_classes": 0}, "epoch": 0, "model": {}}
PIXEL_MAX = 255.0  # images arrive as uint8


def network_output(output) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, aux_logits | None) of a final network's output: bare logits, or the
    ``(logits, aux_logits)`` a network with an auxiliary head returns in training mode."""
    if isinstance(output, (tuple, list)):
        return output[0], (output[1] if len(output) > 1 else None)
    return output, None


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 N,C,H,W -> float, per-channel (x/255 - mean) / std; mean/std are in 0..1 units."""
    shape = (1, -1, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).reshape(shape)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).reshape(shape)
    return (images.float() / PIXEL_MAX - mean_t) / std_t


class NormalizedNetwork(torch.nn.Module):
    """A final network with its input normalisation folded in: it takes images as the data set
    holds them, N,C,H,W pixels on the 0..255 scale (uint8, or floats), normalises them exactly
    as training did (``normalize``) and returns the network's output. What export writes."""

    def __init__(self, network: torch.nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.network = network
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape))

    def forward(self, images: torch.Tensor):
        return self.network((images.float() / PIXEL_MAX - self.mean) / self.std)


def image_data_record(info) -> dict:
    """What a final checkpoint keeps of its data set (a DatasetInfo): the input shape and the
    normalisation, so that new images can be fed to the network (export, ``enastool.load_run``)
    without the data set at hand."""
    return {"dataset": info.name, "channels": info.channels, "size": info.size,
            "mean": [float(m) for m in info.mean], "std": [float(s) for s in info.std]}


def checkpoint_data(run: RunDir, name: str, state: dict) -> dict:
    """The data record (``image_data_record``) of final checkpoint ``name``. Checkpoints written
    before the record existed get it from the run's data set, which must then be at hand."""
    data = state.get("data")
    channels = state["network"]["in_channels"]
    if isinstance(data, dict) and _is_data_record(data, channels):
        return data
    if data is not None:
        raise EnasError(f"{run.path / name}: its 'data' entry is damaged; put the run's own checkpoint back")
    from ..data import load_dataset

    try:
        info = load_dataset(run.config.dataset, run.config.data_dir, purpose="final").info
    except EnasError as err:
        raise EnasError(
            f"{run.path / name} does not keep its input normalisation (an older checkpoint), and "
            f"the data set it comes from cannot be read: {err}"
        ) from None
    return image_data_record(info)


def _is_data_record(data: dict, channels: int) -> bool:
    def numbers(values) -> bool:
        return (isinstance(values, (list, tuple)) and len(values) == channels
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values))

    size = data.get("size")
    return (isinstance(data.get("dataset"), str) and isinstance(size, int) and size > 0
            and numbers(data.get("mean")) and numbers(data.get("std"))
            and all(s > 0 for s in data["std"]))


@torch.no_grad()
def evaluate_network(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    device: torch.device | str,
    tta: bool = False,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channels_last: bool = False,
    dtype: torch.dtype | None = None,
    dist_info: DistInfo | None = None,
) -> dict:
    """Accuracy and mean cross-entropy of ``model`` on (images, labels).

    ``images`` are uint8 (normalised here with ``mean``/``std``) or floats already normalised.
    ``tta`` averages the logits of each image and its horizontal mirror. Under torchrun pass
    ``dist_info``: each rank scores its slice and the sums are all-reduced, so every rank returns
    the figures for the whole set. Returns {"accuracy", "loss", "images"}.
    """
    device = torch.device(device)
    if images.dtype == torch.uint8 and (mean is None or std is None):
        raise ValueError("evaluate_network: uint8 images need mean and std")
    if dist_info is not None and dist_info.enabled:
        part = shard_slice(images.shape[0], dist_info)
        images, labels = images[part], labels[part]
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    was_training = model.training
    model.eval()
    # Sums stay on the device: one host sync at the very end, not one per batch.
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device, non_blocking=True)
            y = labels[start : start + batch_size].to(device, non_blocking=True)
            if x.dtype == torch.uint8:
                x = normalize(x, mean, std)
            x = x.contiguous(memory_format=memory_format)
            with autocast(device, dtype):
                logits = network_output(model(x))[0].float()
                if tta:
                    mirrored = network_output(model(x.flip(-1)))[0].float()
                    logits = (logits + mirrored) / 2
            totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
            totals[1] += (logits.argmax(dim=1) == y).sum()
            totals[2] += y.shape[0]
    finally:
        model.train(was_training)
    all_reduce_sum(totals)
    loss_sum, correct, count = totals.tolist()
    count = int(count)
    return {
        "accuracy": correct / count if count else 0.0,
        "loss": loss_sum / count if count else 0.0,
        "images": count,
    }


# --------------------------------------------------------------------- rebuilding a run
def arch_record(arch) -> str:
    """The one-line record text (``<space> <integers>``) stored in arch.txt and checkpoints."""
    return f"{arch.space} {arch.format()}"


def parse_arch_record(text: str, source: str):
    """The architecture of a one-record text such as arch.txt."""
    tokens = text.split()
    if not tokens:
        raise EnasError(f"{source}: empty, expected one architecture record like 'micro 0 2 ...'")
    cls = space_class(tokens[0])
    try:
        values = [int(t) for t in tokens[1:]]
    except ValueError:
        raise EnasError(f"{source}: expected integers after {tokens[0]!r}") from None
    try:
        return cls.from_ints(values)
    except EnasError as err:
        raise EnasError(f"{source}: {err}") from None


def build_network(arch, config, in_channels: int, num_classes: int) -> torch.nn.Module:
    """The final network of ``arch`` at the width, depth and regularisation of ``config``."""
    return build_final_network(
        arch,
        layers=config.layers,
        channels=config.channels,
        in_channels=in_channels,
        num_classes=num_classes,
        keep_prob=config.keep_prob,
        drop_path_keep=config.drop_path_keep,
        aux_head=config.aux_weight > 0,
    )


def final_checkpoint_name(run: RunDir, choice: str | None = None) -> str:
    """The checkpoint file to load: ``choice`` ("last" or "best"), else last.pt (the network at
    the end of training) when present, else best.pt. best.pt is the epoch with the best test
    accuracy, so a figure from it is selected on the test images."""
    if choice is not None:
        if choice not in CHECKPOINT_CHOICES:
            raise EnasError(f"checkpoint {choice!r}: expected one of {', '.join(CHECKPOINT_CHOICES)}")
        name = CHECKPOINT_CHOICES[choice]
        if not run.has_checkpoint(name):
            present = [n for n in CHECKPOINT_NAMES if run.has_checkpoint(n)]
            raise EnasError(f"{run.path / name}: not found; the run has {', '.join(present) or 'no checkpoint'}")
        return name
    for name in CHECKPOINT_NAMES:
        if run.has_checkpoint(name):
            return name
    raise EnasError(
        f"{run.path}: no {' or '.join(CHECKPOINT_NAMES)}; train it first with `enastool train-final`"
    )


def load_final_checkpoint(run: RunDir, name: str, data_info=None):
    """(network in eval mode on the CPU, arch, checkpoint state) from checkpoint ``name``.

    The checkpoint is checked (``enastool.checkpoints``) before use: a final checkpoint of this
    format, of the run's own architecture (its config.json's), trained on images like those of
    ``data_info`` (a DatasetInfo, when given), with weights that fit the network built from the
    run's configuration.
    """
    path = run.path / name
    state = run.load_checkpoint(name)
    check_checkpoint(state, path, kind=RUN_KIND, version=CHECKPOINT_VERSION, template=HEADER_TEMPLATE)
    arch = parse_arch_record(state["arch"], str(path))
    own = run.config.arch
    if own is not None and arch != parse_arch_record(f"{run.config.space} {own}", f"{run.path} config arch"):
        raise EnasError(f"{path}: trained on another architecture than the run's (its config.json's arch)")
    network = state["network"]
    if data_info is not None and (data_info.channels, data_info.num_classes) != (
        network["in_channels"], network["num_classes"]
    ):
        raise EnasError(
            f"{path}: the network takes {network['in_channels']}-channel images and "
            f"{network['num_classes']} classes, {data_info.name} has {data_info.channels} and "
            f"{data_info.num_classes}; evaluate on the data set it was trained on ({run.config.dataset})"
        )
    model = build_network(arch, run.config, network["in_channels"], network["num_classes"])
    check_checkpoint(state, path, kind=RUN_KIND, version=CHECKPOINT_VERSION,
                     template={"model": model.state_dict()})
    model.load_state_dict(state["model"])
    return model.eval(), arch, state


def load_final_run(run_dir, map_location="cpu", checkpoint: str | None = None):
    """(model, arch, config) of a final-training run directory (see ``final_checkpoint_name``).

    The model is on ``map_location`` in eval mode, loaded with weights_only=True.
    """
    run = RunDir.open(run_dir, kind="final")
    model, arch, _ = load_final_checkpoint(run, final_checkpoint_name(run, checkpoint))
    return model.to(map_location), arch, run.config


def evaluate_final_run(run: RunDir, **options) -> dict:
    """The test figures of a final run's network: the evaluator of its space's data kind
    (``FINAL_EVALUATORS``) with ``options`` (see ``evaluate_image_run`` for images)."""
    kind = data_kind(run.config.space)
    try:
        evaluate = FINAL_EVALUATORS[kind]
    except KeyError:
        raise EnasError(f"evaluate: no evaluation for {kind} (space {run.config.space}) yet") from None
    return evaluate(run, **options)


def evaluate_image_run(
    run: RunDir,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    checkpoint: str | None = None,
    tta: bool = False,
    batch_size: int | None = None,
    device: str = "auto",
) -> dict:
    """Accuracy, loss, parameter and image counts of a final run's network on a data split.

    ``split`` "test", or "valid" (the search's held-out images, which final training also
    trained on). Images are normalised with the statistics of the images the network trained
    on, and the run's own device policy (dtype, memory format) applies, as when it trained.
    """
    from ..data import load_dataset
    from ..nn.counting import count_params
    from .device import resolve_device, resolve_placement

    config = run.config
    name = final_checkpoint_name(run, checkpoint)
    if split not in EVAL_SPLITS:
        raise EnasError(f"split {split!r}: expected one of {', '.join(EVAL_SPLITS)}")
    dataset = dataset or config.dataset
    data_dir = data_dir if data_dir is not None else config.data_dir
    final = load_dataset(dataset, data_dir, purpose="final")
    images, labels = final.test if split == "test" else load_dataset(dataset, data_dir, purpose="search").valid
    model, arch, state = load_final_checkpoint(run, name, final.info)
    placement = resolve_placement(config, resolve_device(device), training=False)
    model = placement.prepare(model)
    batch = batch_size or config.batch_size * EVAL_BATCH_MULTIPLIER
    if batch < 1:
        raise EnasError(f"--batch-size {batch}: must be at least 1")
    result = evaluate_network(model, images, labels, batch, placement.device, tta, mean=final.info.mean,
                              std=final.info.std, channels_last=placement.channels_last,
                              dtype=placement.dtype)
    return {
        "accuracy": result["accuracy"],
        "loss": result["loss"],
        "params": count_params(model),
        "images": result["images"],
        "params_without_aux": count_params(model, exclude_aux=True),
        "run": str(run.path),
        "checkpoint": name,
        "epoch": int(state.get("epoch", 0)),
        "dataset": dataset,
        "split": split,
        "tta": tta,
        "arch": f"{arch.space} {arch.format()}",
    }


# The evaluation of a final run, per data kind (``enastool.encoding.spaces.DATA_KINDS``). The
# text entry (``lm.evaluate_text_run``) is added by ``enastool.train``'s __init__: lm imports
# this module's helpers.
FINAL_EVALUATORS: dict[str, Callable[..., dict]] = {IMAGES: evaluate_image_run}
