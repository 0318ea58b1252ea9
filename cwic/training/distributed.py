"""One process per device under `torchrun` (PyTorch DistributedDataParallel), or a plain single process.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op, so the
training loop has one code path. Gloo carries the collectives on the CPU, NCCL on CUDA. Decisions
that depend on a clock or a signal (stop, save) are taken by rank 0 and broadcast every step, so
the ranks never disagree about which step is the last one or when a state is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: its rank, how many there are, and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs, evaluates and writes files."""
        return self.rank == 0


def setup(device: str) -> Ranks:
    """Join the process group when launched by torchrun; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Ranks(rank, world, dev)


def teardown(ranks: Ranks, finished: bool = False) -> None:
    """Leave the group; after a normal finish, all ranks together (a barrier first), so that no rank
    exits while another still writes its files or holds connections to it."""
    if ranks.world > 1 and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def agree(flags: list[bool], ranks: Ranks) -> list[bool]:
    """Rank 0's flags, on every rank."""
    if ranks.world == 1:
        return flags
    t = torch.tensor([float(f) for f in flags], device=ranks.device)
    dist.broadcast(t, 0)
    return [bool(v) for v in t.tolist()]


def all_sum(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The sum of `t` over the ranks (a copy; `t` itself on one rank)."""
    if ranks.world == 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t


def gather(obj: object, ranks: Ranks) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if ranks.world == 1:
        return [obj]
    out: list = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out
