"""Test-set evaluation of a fixed network and reloading a finished final-training run."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..encoding.spaces import space_class
from ..errors import EnasError
from ..nn.final import build_final_network
from ..runs import RunDir
from .device import autocast
from .distributed import DistInfo, all_reduce_sum, shard_slice

CHECKPOINT_NAMES = ("best.pt", "last.pt")  # load_final_run prefers the first that exists
ARCH_FILE = "arch.txt"
PIXEL_MAX = 255.0  # images arrive as uint8


def network_output(output) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, aux_logits | None) from a network that returns either a tuple or bare logits."""
    if isinstance(output, (tuple, list)):
        return output[0], (output[1] if len(output) > 1 else None)
    return output, None


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 N,C,H,W -> float, per-channel (x/255 - mean) / std; mean/std are in 0..1 units."""
    shape = (1, -1, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).reshape(shape)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).reshape(shape)
    return (images.float() / PIXEL_MAX - mean_t) / std_t


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


def load_final_run(run_dir, map_location="cpu"):
    """(model, arch, config) of a final-training run directory, weights from best.pt or last.pt.

    The model is on the CPU (or ``map_location``) in eval mode, loaded with weights_only=True.
    """
    run = RunDir.open(run_dir)
    path = Path(run.path)
    name = next((n for n in CHECKPOINT_NAMES if (path / n).exists()), None)
    if name is None:
        raise EnasError(
            f"{path}: no {' or '.join(CHECKPOINT_NAMES)}; train it first with `enastool train-final`"
        )
    state = run.load_checkpoint(name, map_location=map_location)
    arch_path = path / ARCH_FILE
    if arch_path.exists():
        arch = parse_arch_record(arch_path.read_text(), str(arch_path))
        if arch_record(arch) != state["arch"]:
            raise EnasError(f"{arch_path} does not match the architecture stored in {path / name}")
    else:
        arch = parse_arch_record(state["arch"], str(path / name))
    network = state["network"]
    model = build_network(arch, run.config, network["in_channels"], network["num_classes"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0]
        raise EnasError(f"{path / name}: weights do not fit the network ({first_line})") from None
    model.to(map_location).eval()
    return model, arch, run.config
