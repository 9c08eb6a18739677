"""Data-parallel runs: `torchrun --nproc-per-node N -m workbench run ...` (`accelerate launch --multi_gpu`).

The launcher sets WORLD_SIZE, RANK and LOCAL_RANK (and the rendezvous address); `train` sees them and
runs the one training loop on every process, as one run in the store:
- a process group over gloo on the CPU, NCCL on GPUs (each process on the GPU of its LOCAL_RANK);
- every rank loads the same model and draws the same seeded batch stream, so the method's selection
  phases (SMT's warm-up, SPSFT's importance) see the same batches and choose the same; the ranks check
  that they train the same parameters (names and shapes) before the first step;
- training batches are dealt out: rank r takes batches r, r + N, r + 2N ... of the stream, so one
  optimizer step trains on N batches (the effective batch is N x batch_size);
- the loss runs inside torch's DistributedDataParallel (DDP): the gradients of the trainable
  parameters are averaged over the ranks during the backward (micro-batches before the last of a step
  under `no_sync`), and every rank's optimizer takes the same step;
- rank 0 creates the run, evaluates, and writes the manifest, metrics, predictions and the adapter;
  every rank records memory, timing and gradients into the same run with its `rank`
  (store.RankWriter), device peaks included, so each process's peak is in the memory table.

Every registered method trains ordinary parameters and can run data-parallel; a method class that sets
`data_parallel = False` (a plug-in whose trainable state is not an nn.Parameter, or whose selection is
not reproducible across processes) is refused with one error.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workbench.data.batch import Batch
from workbench.errors import ConfigError, RunStopped
from workbench.lm import answer_loss

RANK_RECORDERS = ("memory", "timing", "grads")  # what ranks > 0 record (rank 0 records everything)
TIMEOUT = datetime.timedelta(minutes=60)  # a collective waits this long (rank 0's evaluations included)


class AnswerLoss(nn.Module):
    """The loop's loss as a module, so DDP's forward (which prepares its gradient all-reduce) runs it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        return answer_loss(self.model, batch)


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run (from the launcher's environment)."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> DataParallel | None:
        """The launcher's WORLD_SIZE / RANK / LOCAL_RANK, or None in a single process."""
        env = dict(os.environ if env is None else env)
        world = env.get("WORLD_SIZE", "1")
        try:
            values = [int(world), int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", env.get("RANK", "0")))]
        except ValueError:
            raise ConfigError(
                f"WORLD_SIZE, RANK and LOCAL_RANK must be integers (set by torchrun or accelerate launch), "
                f"got {world!r}, {env.get('RANK')!r}, {env.get('LOCAL_RANK')!r}"
            ) from None
        size, rank, local = values
        if size <= 1:
            return None
        if not 0 <= rank < size or local < 0:
            raise ConfigError(f"RANK {rank} / LOCAL_RANK {local} do not fit WORLD_SIZE {size}")
        return cls(rank, size, local)

    # -- the process group ---------------------------------------------------------------------------

    def start(self, device: str) -> None:
        """Join the process group (gloo on the CPU, NCCL with CUDA); each process on its LOCAL_RANK GPU."""
        import torch.distributed as dist

        cuda = device != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(self.local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)

    def stop(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of `value` over the ranks."""
        import torch.distributed as dist

        total = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return float(total.item()) / self.world_size

    def share(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        import torch.distributed as dist

        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    # -- the run -------------------------------------------------------------------------------------

    def check_method(self, method: Any) -> None:
        if not getattr(type(method), "data_parallel", True):
            raise ConfigError(
                f"method {method.name!r} cannot run data-parallel (its class sets data_parallel = False); "
                "run it in one process (without torchrun / accelerate launch)"
            )

    def check_same_parameters(self, params: dict[str, nn.Parameter]) -> None:
        """RunStopped unless every rank trains the same parameters (names and shapes) after selection."""
        import torch.distributed as dist

        mine = [(name, tuple(p.shape)) for name, p in params.items()]
        every: list[Any] = [None] * self.world_size
        dist.all_gather_object(every, mine)
        for rank, theirs in enumerate(every):
            if theirs != mine:
                raise RunStopped(
                    f"rank {rank} trains other parameters than rank {self.rank} after the method's selection "
                    "(a selection that differs between processes cannot train data-parallel)"
                )

    def deal(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """This rank's share of the stream: batches rank, rank + N, rank + 2N ..."""
        return itertools.islice(batches, self.rank, None, self.world_size)

    def wrap(self, model: nn.Module, device: torch.device) -> LossRunner:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(
            AnswerLoss(model),
            device_ids=[self.local_rank] if device.type == "cuda" else None,
            broadcast_buffers=False,  # every rank computes the same buffers (rotary tables)
            find_unused_parameters=True,  # a method may leave some trainable parameter out of a step
        )
        return LossRunner(ddp, ddp.no_sync)

    def environment(self) -> dict[str, Any]:
        """What the manifest's environment records of the process group."""
        import torch.distributed as dist

        return {
            "world_size": self.world_size,
            "backend": dist.get_backend() if dist.is_initialized() else None,
        }


@dataclass
class LossRunner:
    """The loss of a batch, and the context a micro-batch runs in (`sync`: the step's last, whose
    backward all-reduces the gradients; the others accumulate locally)."""

    loss: Callable[[Batch], torch.Tensor]
    no_sync: Callable[[], contextlib.AbstractContextManager[None]] | None = None

    def context(self, sync: bool) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if sync or self.no_sync is None else self.no_sync()


def single_process(model: nn.Module) -> LossRunner:
    """The loss of a one-process run: the model's answer loss, nothing to synchronise."""
    return LossRunner(lambda batch: answer_loss(model, batch))
