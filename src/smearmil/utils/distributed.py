"""Several processes, one run: who this process is, and the collectives the run's code needs.

Lightning's DDP runs every process through the whole command (its launcher re-runs the command line
for processes 1..N-1; SLURM starts every task itself). The rule that keeps a run's folder sound: **only
the main process (global rank 0) writes files**; the others compute their share and hand it over.
Before the process group exists, the rank comes from the variables the launchers set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

# variables a launcher sets to a process's rank: torchrun, Lightning's launcher, SLURM, several nodes
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK")


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def initialised() -> bool:
    """Whether a process group exists (never before torch is imported: it cannot)."""
    if "torch.distributed" not in sys.modules:
        return False
    dist = _dist()
    return bool(dist.is_available() and dist.is_initialized())


def world_size() -> int:
    return int(_dist().get_world_size()) if initialised() else 1


def rank() -> int:
    """This process's global rank: from the process group, else from its launcher's variables (before the
    group exists, any non-zero value only says "not the main process")."""
    if initialised():
        return int(_dist().get_rank())
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and os.environ.get("SLURM_PROCID", "0") != "0":
        return int(os.environ["SLURM_PROCID"])
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:  # rank variables left over from elsewhere: one process
        return 0
    return max((int(os.environ.get(v, "0") or 0) for v in _RANK_VARIABLES), default=0)


def is_main_process() -> bool:
    return rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This process's share of ``items`` (every ``world_size``-th, from its rank): each item on one process."""
    return list(items[rank() :: world_size()])


def gather_objects(value: T) -> list[T]:
    """``value`` of every process, in rank order (any picklable value; shapes may differ)."""
    if world_size() == 1:
        return [value]
    found: list[Any] = [None] * world_size()
    _dist().all_gather_object(found, value)
    return found


def sharded(work: Callable[[Sequence[T]], list[Any]], items: Sequence[T], key: Callable[[Any], T]) -> list[Any]:
    """``work(items)`` computed as each process's share, gathered, in the order of ``items``."""
    if world_size() == 1:
        return work(items)
    done = {key(r): r for part in gather_objects(work(shard(items))) for r in part}
    return [done[i] for i in items]


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over processes (a new tensor, no gradient)."""
    x = x.detach().clone()
    if world_size() > 1:
        _dist().all_reduce(x, op=_dist().ReduceOp.SUM)
    return x


def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone()
    if world_size() > 1:
        _dist().all_reduce(x, op=_dist().ReduceOp.MAX)
    return x


@cache
def _gather_with_gradient() -> Any:
    import torch
    import torch.distributed as dist

    class _GatherWithGradient(torch.autograd.Function):
        """All-gather whose backward sums every process's gradient of the gathered tensor and returns this
        process's slice: a loss computed against everyone's rows trains the rows' owners (any backend)."""

        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, x.contiguous())
            ctx.rows = x.shape[0]
            return torch.cat(parts)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            grad = grad.contiguous().clone()
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            start = dist.get_rank() * ctx.rows
            return grad[start : start + ctx.rows]

    return _GatherWithGradient


def gather_with_gradient(x: torch.Tensor) -> torch.Tensor:
    """The rows of ``x`` of every process, concatenated in rank order; gradients flow back to their owner.
    Every process must pass the same number of rows."""
    if world_size() == 1:
        return x
    return _gather_with_gradient().apply(x)


def barrier() -> None:
    """Wait until every process gets here (e.g. until the main one has written a file the others read)."""
    if world_size() > 1:
        _dist().barrier()
