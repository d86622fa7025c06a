"""Data-parallel set-up for torchrun: gloo on CPU, NCCL on CUDA."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_dist_info() -> DistInfo:
    """Read torchrun's environment; a plain ``python`` run is a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=world,
    )


def init_distributed(info: DistInfo, device: torch.device) -> None:
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_metrics(values: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Average metrics over ranks; ``min_*`` / ``max_*`` metrics take the min / max."""
    if not info.enabled or not values:
        return values
    out = {}
    groups = {"mean": [k for k in values if not k.startswith(("min_", "max_"))],
              "min": [k for k in values if k.startswith("min_")],
              "max": [k for k in values if k.startswith("max_")]}
    ops = {"mean": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    for kind, keys in groups.items():
        if not keys:
            continue
        t = torch.tensor([values[k] for k in sorted(keys)], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=ops[kind])
        if kind == "mean":
            t /= info.world_size
        out.update(zip(sorted(keys), t.tolist()))
    return out


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank if it is true on any rank (for stop requests)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
