"""The process group, when the command runs under ``torchrun``.

``torchrun --nproc-per-node N`` starts N copies with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; we then join a process group (NCCL on
CUDA, gloo on CPU) and wrap the model in DistributedDataParallel. Without
those variables everything here is a no-op and the same code runs as one
process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class DistContext:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistContext":
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        return cls(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), True)

    def init(self, device: torch.device) -> None:
        """Join the process group (the caller has picked the device)."""
        if not self.enabled:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce ``t`` in place (sum over ranks); returns it."""
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def shutdown(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
