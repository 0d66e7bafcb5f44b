"""Parameter and FLOP counts of networks, measured on the real modules.

FLOPs come from one real forward pass under ``torch.utils.flop_counter.FlopCounterMode``, so
they describe exactly the network that trains, not a formula kept beside it. The counter
records convolutions and matrix products only (batch norm, ReLU, pooling and additions are
memory-bound and left out, as papers do) and counts a multiply-add as 2 FLOPs. Papers on
architecture search (ENAS, NASNet, DARTS) quote *multiply-adds*, half the FLOPs; both are
reported, under their own names (``flops``, ``mult_adds``), never one for the other.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .kernels import native_kernels

# Name of the attribute under which a final network keeps its auxiliary head (None if absent).
AUX_HEAD_ATTR = "aux_head"

# Batch of the counting forward pass: counts are reported per image.
COUNT_BATCH = 1
FLOPS_PER_MULT_ADD = 2  # one multiply and one add


def count_params(module: nn.Module, exclude_aux: bool = False) -> int:
    """Number of parameter values; ``exclude_aux`` leaves out the auxiliary head's."""
    skipped: set[int] = set()
    aux = getattr(module, AUX_HEAD_ATTR, None)
    if exclude_aux and aux is not None:
        skipped = {id(p) for p in aux.parameters()}
    return sum(p.numel() for p in module.parameters() if id(p) not in skipped)


def count_flops(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs per image (multiply-adds x 2) for one input of ``input_shape`` (C, H, W).

    Runs the module once in eval mode (no dropout, no drop path, no auxiliary head) on a
    batch of one on the module's own device, with the native op kernels (``nn.kernels``: the
    CPU formulation of average pooling is a conv, but pooling is not a FLOP of the network),
    then restores its training flag and kernels.
    """
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros((COUNT_BATCH, *input_shape), device=device)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), native_kernels(module), FlopCounterMode(display=False) as counter:
            module(x)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops()) // COUNT_BATCH


def mult_adds(flops: int) -> int:
    """Multiply-adds (the unit papers quote) of a FLOP count from ``count_flops``: every
    counted op is a multiply-add, so this is exact."""
    return flops // FLOPS_PER_MULT_ADD


def _image_shape(dataset_info: Any) -> tuple[int, int, int]:
    """(channels, height, width) from a DatasetInfo whose ``size`` is an int or (H, W)."""
    size = dataset_info.size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return (int(dataset_info.channels), int(height), int(width))


def network_counts(
    arch, layers: int | None, channels: int | None, dataset_info: Any
) -> dict[str, int]:
    """Counts of the final network for ``arch`` on a data set described by ``dataset_info``.

    ``dataset_info`` needs ``channels``, ``size`` and ``num_classes`` (as
    ``enastool.data.DatasetInfo`` has). ``layers`` / ``channels`` of None take the space's
    final-training defaults. Returns ``params`` (auxiliary head excluded), ``params_aux``
    (included; equal for spaces without one), ``flops`` (forward, per image, multiply-add =
    2) and ``mult_adds`` (the same work in multiply-adds, as papers count it).
    """
    from .final import build_final_network

    shape = _image_shape(dataset_info)
    net = build_final_network(
        arch,
        layers=layers,
        channels=channels,
        in_channels=shape[0],
        num_classes=int(dataset_info.num_classes),
    )
    flops = count_flops(net, shape)
    return {
        "params": count_params(net, exclude_aux=True),
        "params_aux": count_params(net),
        "flops": flops,
        "mult_adds": mult_adds(flops),
    }
