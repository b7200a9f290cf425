"""DDP from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK): gloo on CPU, nccl on CUDA.
Without those variables everything is a single process and these helpers are no-ops."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0


def setup(device_kind):
    """Join the process group torchrun describes; return (Dist, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), None
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_kind == "cuda"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = None
    if cuda:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return Dist(rank, world, local), device


def all_reduce_sum(tensor, d):
    if d.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_from_main(obj, d):
    """Rank 0's `obj` (any picklable value) on every rank; `obj` itself when not distributed."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d):
    if d.enabled:
        dist.barrier()


def cleanup(d):
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
