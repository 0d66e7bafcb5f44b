"""Multi-process training under torchrun: process group, DDP wrapping, sharding, rank 0 I/O.

torchrun starts one process per device and sets WORLD_SIZE, RANK and LOCAL_RANK (plus
MASTER_ADDR/MASTER_PORT, read by the ``env://`` rendezvous). Without them everything here is
a no-op and training runs in one process, so the same code path serves both cases.

Rules every rank follows:
- the same seed, hence the same shuffled permutation and the same augmentation of the global
  batch; each rank then takes its own contiguous slice of it (``shard_batch``);
- only rank 0 writes the run directory and calls the progress callback;
- evaluation sums (loss, correct, count) are all-reduced so rank 0 reports the whole test set,
  every rank scoring its shard with rank 0's batch-norm statistics (``broadcast_buffers``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import EnasError
from .device import resolve_device

ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_RANK = "RANK"
ENV_LOCAL_RANK = "LOCAL_RANK"
MAIN_RANK = 0


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among ``world_size`` processes."""

    rank: int = MAIN_RANK
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == MAIN_RANK


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise EnasError(f"environment variable {name}={value!r}: expected an integer (set by torchrun)") from None


def env_info() -> DistInfo:
    """The torchrun settings of this process (one process, rank 0, when they are absent)."""
    info = DistInfo(
        rank=_env_int(ENV_RANK, MAIN_RANK),
        world_size=_env_int(ENV_WORLD_SIZE, 1),
        local_rank=_env_int(ENV_LOCAL_RANK, 0),
    )
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise EnasError(
            f"torchrun environment: RANK={info.rank} WORLD_SIZE={info.world_size} is inconsistent; "
            "start multi-process runs with `torchrun --nproc-per-node N enastool ...`"
        )
    return info


def current_info() -> DistInfo:
    """Rank and world size of the initialised process group, else of the environment."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int(ENV_LOCAL_RANK, 0))
    return env_info()


def init_distributed(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Resolve this process's device and, under torchrun, join the process group.

    The backend follows the device: NCCL for CUDA (device cuda:LOCAL_RANK), gloo for the CPU.
    Calling it again once the group exists is harmless.
    """
    info = env_info()
    device = resolve_device(device_name, index=info.local_rank)
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return info, device


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 of a multi-process one."""
    return current_info().is_main


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (the CLI calls this once training is over)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` when a process group is up, else ``model``.

    DDP copies rank 0's parameters and buffers to every rank here, so all ranks start equal.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics); no-op in one process.

    DDP broadcasts them at the start of each training forward, so after the last step every
    rank holds its own update of them. An evaluation that the saved checkpoint (rank 0's) must
    reproduce calls this first.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=MAIN_RANK)


def shard_slice(total: int, info: DistInfo) -> slice:
    """This rank's contiguous share of ``total`` items (sizes differ by at most one)."""
    base, extra = divmod(total, info.world_size)
    start = info.rank * base + min(info.rank, extra)
    return slice(start, start + base + (1 if info.rank < extra else 0))


def shard_batch(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's rows of a global batch that every rank drew identically."""
    if not info.enabled:
        return tensor
    return tensor[shard_slice(tensor.shape[0], info)]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def setup_run_dir(path, config, *, resume: bool, kind: str = "final", command=None):
    """The run directory on every rank: rank 0 creates it (or all open it on resume).

    Other ranks open it only to read (config, checkpoints on resume); the trainer never writes
    from them. A barrier makes sure rank 0 has finished creating it before they look.
    """
    from ..runs import RunDir

    info = current_info()
    if resume:
        return RunDir.open(path)
    run = None
    if info.is_main:
        run = RunDir.create(path, config, kind=kind, command=command)
    barrier()
    return run if run is not None else RunDir.open(path)
