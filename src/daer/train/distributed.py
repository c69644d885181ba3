"""Process-group set-up and collectives, written once: every call is a no-op on one process.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them training runs as a single
process through the same code. CPU training uses gloo, CUDA training NCCL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from daer.errors import BadInputError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 on one process).
        world: number of processes.
        local_rank: rank on this machine (picks the GPU).
        device: the device this process computes on.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as e:
        raise BadInputError(f"environment variable {name}={value!r} is not an integer") from e


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group that torchrun describes, or describe a single process.

    Args:
        device: "cpu", "cuda" or None (CUDA when available). Selects gloo (CPU) or NCCL (CUDA).
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r} requested but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """True on rank 0 (and on a single process)."""
    return get_rank() == 0


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (a detached copy; for logging and metrics)."""
    x = x.detach().clone()
    if _active():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
    return x


def all_reduce_grads(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over ranks with one flat all-reduce.

    A parameter without a gradient counts as zero, so every rank sends the same buffer layout.

    Why not DistributedDataParallel: its reducer is armed by the wrapper's ``forward``, and a training step
    here is no single forward: it calls ``encode_text`` (twice with swap negatives), ``encode_points``, the
    HAF pair scores and attention of the loss terms, each a different entry point, and which parameters get
    gradients changes with the step (a batch without swap captions or part labels leaves terms out). DDP would
    need the step rewritten as one ``forward`` plus ``find_unused_parameters=True`` (a graph walk per step);
    one flat all-reduce after ``backward`` is the same arithmetic without either. The reason is structural,
    not a measured speed difference: DDP's overlap of communication with backward is what it would add.
    """
    if not _active() or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
        offset += n


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src`` to all ranks."""
    if not _active():
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            if t.is_floating_point():  # integer buffers are constants (e.g. position ids)
                dist.broadcast(t.data, src=src)


def all_gather_sizes(n: int, device: torch.device | None = None) -> list[int]:
    """Every rank's ``n``, in rank order."""
    if not _active():
        return [n]
    t = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    return [int(v.item()) for v in out]


def all_gather_list(items: list[Any]) -> list[Any]:
    """Concatenate a list of picklable Python values from every rank, in rank order."""
    if not _active():
        return items
    out: list[list[Any]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(out, items)
    return [v for part in out for v in part]


def _gather_padded(x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Size]]:
    """All-gather ``x`` whose shape may differ between ranks: pad every dim to the maximum with zeros.

    Returns the rows of all ranks concatenated along dim 0 (trailing dims at their maximum) and each
    rank's original shape.
    """
    world = dist.get_world_size()
    shape = torch.tensor(list(x.shape), dtype=torch.long, device=x.device)
    shapes_t = [torch.zeros_like(shape) for _ in range(world)]
    dist.all_gather(shapes_t, shape)
    shapes = [torch.Size(s.tolist()) for s in shapes_t]
    max_shape = [max(s[d] for s in shapes) for d in range(x.dim())]
    send = x.new_zeros(max_shape)
    send[tuple(slice(0, n) for n in x.shape)] = x
    # gloo cannot gather bool tensors
    wire = send.to(torch.uint8) if send.dtype == torch.bool else send
    recv = [torch.empty_like(wire) for _ in range(world)]
    dist.all_gather(recv, wire.contiguous())
    parts = [r[: s[0]] for r, s in zip(recv, shapes, strict=True)]
    out = torch.cat(parts, dim=0)
    return (out.to(torch.bool) if x.dtype == torch.bool else out), shapes


class _AllGatherWithGrad(torch.autograd.Function):
    """Gather along dim 0; backward sums every rank's gradient and hands each rank its own rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out, shapes = _gather_padded(x)
        rank = dist.get_rank()
        ctx.start = sum(s[0] for s in shapes[:rank])
        ctx.local_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        rows = grad[ctx.start : ctx.start + ctx.local_shape[0]]
        return rows[(slice(None),) + tuple(slice(0, n) for n in ctx.local_shape[1:])].contiguous()


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, in rank order; ``x`` itself on one process.

    Shapes may differ between ranks (trailing dims are zero-padded to the largest). Gradients flow
    back to each rank's own rows, summed over every rank's use of them, so that averaging parameter
    gradients over ranks gives exactly the gradient of the loss over the global batch.
    Integer and bool tensors are gathered without autograd.
    """
    if not _active():
        return x
    if x.is_floating_point() and x.requires_grad:
        return _AllGatherWithGrad.apply(x)
    return _gather_padded(x)[0]
