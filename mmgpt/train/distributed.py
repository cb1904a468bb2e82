"""Distributed training: the same command under ``torchrun`` uses DDP (or FSDP2) on gloo / NCCL.

One process is rank 0 of world size 1; ``torchrun --nproc_per_node=N mmgpt ...`` sets the
environment and every helper here becomes collective. Only rank 0 logs and writes files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> Dist:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        local, device = int(os.environ.get("LOCAL_RANK", "0")), torch.device("cpu")
    if world == 1:
        return Dist(device=device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    d = Dist(dist.get_rank(), dist.get_world_size(), local, device)
    log.info("rank %d of %d on %s", d.rank, d.world_size, device)
    return d


def all_reduce_sum(value: float | int, d: Dist) -> float:
    """Sum a number over processes (identity in one process)."""
    if not d.enabled:
        return value
    t = torch.tensor(float(value), dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.item()


def gather(value: Any, d: Dist) -> list[Any]:
    """Every process's ``value`` (JSON-like), in rank order (``[value]`` in one process)."""
    if not d.enabled:
        return [value]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, value)
    return out


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def wrap_model(model: nn.Module, d: Dist, strategy: str) -> nn.Module:
    """DDP (every process holds the whole model) or FSDP2 (decoder layers sharded with ``fully_shard``)."""
    if not d.enabled:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        model.use_every_part = True  # the same parameters get gradients on every process
        decoder = model.decoder
        layers = getattr(getattr(decoder, "model", decoder), "layers", None)
        for layer in layers or []:
            fully_shard(layer)
        fully_shard(model)
        return model
    # Unused parameters happen legitimately (a batch without audio leaves the audio adapter idle).
    ids = [d.local_rank] if d.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 sharded ``model``'s parameters (DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def gather_full_state(model: nn.Module, optimizer=None) -> tuple[dict, dict | None]:
    """Full (unsharded, CPU) model and optimiser state dicts of an FSDP2 model: a collective,
    called on every process; the optimiser state is keyed by parameter name."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    if optimizer is None:
        state, optim = get_model_state_dict(model, options=opts), None
    else:
        state, optim = get_state_dict(model, optimizer, options=opts)
    # Tied weights (embedding / LM head) once, under the alphabetically first name, as
    # safetensors' save_model writes them.
    names: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        names.setdefault(id(t), []).append(name)
    keep = {min(group) for group in names.values()}
    return {k: v for k, v in state.items() if k in keep}, optim


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
