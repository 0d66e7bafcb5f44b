"""The Python API: an architecture from text, its final network, a trained run, in one call each.

    import enastool
    arch = enastool.parse("micro 0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1  1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1")
    net = enastool.build_network(arch, num_classes=10)          # an nn.Module, the space's defaults
    run = enastool.load_run("runs/final")                       # network, architecture, normalisation
    logits = run.predict(images_uint8)                          # [N, classes]

These names are re-exported at the package top (``enastool.parse`` ...) lazily: ``import
enastool`` and ``enastool.parse`` import no torch; ``build_network`` and ``load_run`` import it
when called. Every user error is one ``enastool.errors.EnasError`` naming what is wrong.

The networks follow one output contract: in eval mode (``load_run`` returns them so) a network
returns a plain logits tensor; only a micro network with an auxiliary head in training mode
returns ``(logits, aux_logits)`` (``enastool.train.evaluate.network_output`` reads either).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .encoding.spaces import IMAGES, TEXT, Arch, data_kind
from .encoding.textio import parse_text
from .errors import EnasError

if TYPE_CHECKING:  # torch is imported by the functions that need it, not by this module
    import torch

__all__ = ["TrainedRun", "TrainedTextRun", "build_network", "load_run", "parse"]


def parse(text: str, space: str | None = None) -> Arch:
    """The one architecture in ``text``: a record (``"micro 0 2 ..."``), a bare authors'
    encoding (its space inferred, or ``space``), JSON or a DARTS genotype, as the commands read."""
    if not isinstance(text, str):
        raise EnasError(f"parse: expected a string, found {type(text).__name__}")
    records, errors = parse_text(text, "<string>", space)
    if errors:
        raise errors[0]
    if len(records) != 1:
        raise EnasError(f"<string>: found {len(records)} records, expected exactly one architecture")
    return records[0].arch


def build_network(
    arch: Arch | str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    layers: int | None = None,
    channels: int | None = None,
    keep_prob: float | None = None,
    drop_path_keep: float | None = None,
    aux_head: bool | None = None,
) -> "torch.nn.Module":
    """The final network of ``arch`` (an architecture, or text for :func:`parse`), freshly
    initialised, in training mode. A setting left None takes the space's final-training default
    (the authors': micro 15 layers of 36 channels with an auxiliary head, macro 96 channels;
    ``enastool.nn.final``). Images go in as normalised floats N,C,H,W."""
    from .nn.final import build_final_network

    if isinstance(arch, str):
        arch = parse(arch)
    return build_final_network(
        arch, layers=layers, channels=channels, in_channels=in_channels, num_classes=num_classes,
        keep_prob=keep_prob, drop_path_keep=drop_path_keep, aux_head=aux_head,
    )


@dataclass(frozen=True)
class TrainedRun:
    """A trained final run: its network (eval mode), architecture, configuration and the input
    normalisation it was trained with. ``predict`` takes images as the data set holds them."""

    path: Path
    network: "torch.nn.Module"  # takes normalised floats N,C,H,W; returns logits
    arch: Arch
    config: Any  # the run's FinalConfig
    checkpoint: str  # the checkpoint file loaded (last.pt or best.pt)
    epoch: int  # epochs trained when it was written
    dataset: str
    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    mean: tuple[float, ...]  # per channel, in 0..1 units: x_normalised = (x / 255 - mean) / std
    std: tuple[float, ...]

    def preprocess(self, images: "torch.Tensor") -> "torch.Tensor":
        """Images N,C,H,W on the 0..255 scale (uint8 or floats) -> the network's normalised input."""
        from .train.evaluate import normalize

        return normalize(images, self.mean, self.std)

    def normalized_network(self) -> "torch.nn.Module":
        """The network with the normalisation folded in (sharing its weights): it takes images
        N,C,H,W on the 0..255 scale and returns logits. What ``enastool export`` writes."""
        from .train.evaluate import NormalizedNetwork

        param = next(self.network.parameters())
        return NormalizedNetwork(self.network, self.mean, self.std).to(param.device).eval()

    def predict(self, images: "torch.Tensor") -> "torch.Tensor":
        """Logits [N, num_classes] of images N,C,H,W on the 0..255 scale, in eval mode, no grad."""
        import torch

        shape = tuple(images.shape[1:])
        if images.dim() != 4 or shape != self.input_shape:
            raise EnasError(
                f"predict: images of shape {tuple(images.shape)}, expected N x "
                f"{' x '.join(map(str, self.input_shape))} (N,C,H,W, as {self.dataset})"
            )
        network = self.normalized_network()
        with torch.no_grad():
            return network(images.to(next(network.parameters()).device))


@dataclass(frozen=True)
class TrainedTextRun:
    """A trained final run of the rnn space: its language model (``enastool.nn.recurrent.
    RecurrentNet`` in eval mode, holding the weights NT-ASGD reports), architecture and
    configuration. ``predict`` takes token ids as the run's corpus numbers them."""

    path: Path
    network: "torch.nn.Module"  # RecurrentNet: (tokens [N, T], state=None) -> LMOutput
    arch: Arch
    config: Any  # the run's FinalConfig
    checkpoint: str
    epoch: int
    dataset: str
    vocab_size: int
    hidden_size: int
    averaged: bool  # the weights are NT-ASGD's running mean

    def predict(self, tokens: "torch.Tensor", state: "torch.Tensor | None" = None):
        """(logits [N, T, vocab_size], state [N, hidden_size]) of token ids [N, T], in eval mode,
        no grad; ``state`` None starts from zeros, the returned state continues the text."""
        import torch

        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise EnasError(f"predict: tokens of shape {tuple(tokens.shape)} and dtype {tokens.dtype}, "
                            "expected integer token ids N x T")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise EnasError(f"predict: token ids must lie in 0..{self.vocab_size - 1} (the vocabulary "
                            f"of {self.dataset})")
        device = next(self.network.parameters()).device
        with torch.no_grad():
            output = self.network(tokens.long().to(device), state=None if state is None else state.to(device))
        return output.logits, output.state


def load_run(path: str | Path, *, checkpoint: str | None = None,
             device: str = "cpu") -> TrainedRun | TrainedTextRun:
    """The trained network of final run ``path`` with everything needed to use it: a
    :class:`TrainedRun` for the image spaces, a :class:`TrainedTextRun` for rnn.

    ``checkpoint``: "last" (the default when present: the network at the end of training) or
    "best" (the epoch with the best test accuracy; rnn: validation perplexity). ``device``: "cpu", "cuda", "auto", ...
    The run directory is checked as every command checks it (``RunDir.open``), and the
    checkpoint loads with ``weights_only=True``.
    """
    from .runs import RunDir

    run = RunDir.open(path, kind="final")
    kind = data_kind(run.config.space)
    try:
        load = _LOADERS[kind]
    except KeyError:
        supported = ", ".join(sorted(_LOADERS))
        raise EnasError(f"{path}: load_run reads final runs of {supported} data; "
                        f"this is a {run.config.space} run ({kind})") from None
    return load(run, checkpoint, device)


def _load_image_run(run, checkpoint: str | None, device: str) -> TrainedRun:
    from .train.device import resolve_device
    from .train.evaluate import checkpoint_data, final_checkpoint_name, load_final_checkpoint

    name = final_checkpoint_name(run, checkpoint)
    network, arch, state = load_final_checkpoint(run, name)
    data = checkpoint_data(run, name, state)
    return TrainedRun(
        path=run.path,
        network=network.to(resolve_device(device)).eval(),
        arch=arch,
        config=run.config,
        checkpoint=name,
        epoch=int(state.get("epoch", 0)),
        dataset=data["dataset"],
        input_shape=(int(state["network"]["in_channels"]), int(data["size"]), int(data["size"])),
        num_classes=int(state["network"]["num_classes"]),
        mean=tuple(data["mean"]),
        std=tuple(data["std"]),
    )


def _load_text_run(run, checkpoint: str | None, device: str) -> TrainedTextRun:
    from .train.device import resolve_device
    from .train.evaluate import final_checkpoint_name
    from .train.lm import load_lm_checkpoint

    name = final_checkpoint_name(run, checkpoint)
    network, arch, state = load_lm_checkpoint(run, name)  # no corpus: nothing to read but the run
    average = state.get("average")
    return TrainedTextRun(
        path=run.path,
        network=network.to(resolve_device(device)).eval(),
        arch=arch,
        config=run.config,
        checkpoint=name,
        epoch=int(state.get("epoch", 0)),
        dataset=run.config.dataset,
        vocab_size=int(state["network"]["vocab_size"]),
        hidden_size=run.config.hidden_size,
        averaged=average is not None and int(average["count"]) > 0,
    )


# How a final run of each data kind (``enastool.encoding.spaces.DATA_KINDS``) is loaded.
_LOADERS = {IMAGES: _load_image_run, TEXT: _load_text_run}
