"""Distributed training: torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT; we use
NCCL on GPUs and Gloo on CPUs. Under plain `python` (no WORLD_SIZE) everything here is a no-op
for a single process, so the same training code runs both ways.

Multi-node: run the same command on every node, e.g. for 2 nodes x 8 GPUs
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank {0,1} --rdzv_backend c10d \
        --rdzv_endpoint HOST:29500 --rdzv_id RUN_NAME -m marionette.cli train ...
"""

from __future__ import annotations

import gc
import os

import torch
import torch.distributed as dist


def init() -> torch.device:
    """Join the process group when launched by torchrun (idempotent); return this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Only rank 0 writes files."""
    return rank() == 0


def agree(flag: bool) -> bool:
    """Rank 0's `flag` on every rank (a decision all ranks must take together, e.g. to stop)."""
    if not dist.is_initialized():
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([int(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown(wait: bool = True) -> None:
    """Leave the process group cleanly: DDP wrappers sit in reference cycles and keep the group's
    threads alive until collected, so collect them first; then wait for every rank (`wait=False`
    after an error, when the other ranks may never arrive), then destroy. Left to interpreter exit,
    Gloo's threads can abort the process."""
    if dist.is_initialized():
        gc.collect()
        if wait:
            dist.barrier()
        dist.destroy_process_group()
