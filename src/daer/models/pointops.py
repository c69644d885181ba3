"""Farthest-point sampling and kNN grouping in plain batched PyTorch, and cached per-shape groups.

FPS and kNN depend only on the point order and the relative distances, so they do not change under
rotation, uniform scaling or a small jitter: the data loader computes them once per shape with
:func:`precompute_groups` and hands them to the encoder with every augmented copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from daer.errors import BadInputError

# Upper bound on the elements of one (chunk, M, N) distance block in knn(), to bound memory.
_KNN_BLOCK = 1 << 19


def farthest_point_sample(points: Tensor, m: int, start: int = 0) -> Tensor:
    """Indices of ``m`` points chosen greedily, each the farthest from those already chosen.

    Args:
        points: (B, N, 3) coordinates.
        m: number of samples, 1..N.
        start: index of the first sample (fixed, so results are deterministic and cacheable).

    Returns:
        (B, m) int64 indices into N; ties go to the lowest index.
    """
    b, n, _ = points.shape
    if not 1 <= m <= n:
        raise BadInputError(f"farthest_point_sample: cannot pick {m} of {n} points")
    xyz = points.permute(2, 0, 1).contiguous()  # (3, B, N): one contiguous plane per coordinate
    idx = torch.empty(b, m, dtype=torch.long, device=points.device)
    dist = torch.full((b, n), float("inf"), dtype=points.dtype, device=points.device)
    d, tmp = torch.empty_like(dist), torch.empty_like(dist)
    far = torch.full((b, 1), start, dtype=torch.long, device=points.device)
    for i in range(m):
        idx[:, i : i + 1] = far
        # Squared distance to the newest centre, in place over (B, N) buffers (this loop dominates).
        torch.sub(xyz[0], xyz[0].gather(1, far), out=d).square_()
        torch.sub(xyz[1], xyz[1].gather(1, far), out=tmp)
        d.addcmul_(tmp, tmp)
        torch.sub(xyz[2], xyz[2].gather(1, far), out=tmp)
        d.addcmul_(tmp, tmp)
        torch.minimum(dist, d, out=dist)
        far = dist.argmax(-1, keepdim=True)
    return idx


def knn(query: Tensor, ref: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` nearest ``ref`` points of every query point, nearest first.

    Args:
        query: (B, M, 3).
        ref: (B, N, 3).
        k: neighbours per query, 1..N.

    Returns:
        (B, M, k) int64 indices into N.
    """
    b, m, _ = query.shape
    n = ref.shape[1]
    if not 1 <= k <= n:
        raise BadInputError(f"knn: cannot take {k} neighbours among {n} points")
    step = max(1, _KNN_BLOCK // max(1, m * n))
    out = []
    for s in range(0, b, step):
        q, r = query[s : s + step], ref[s : s + step]
        # |q - r|^2 = |q|^2 + |r|^2 - 2 q.r as one batched matmul; clamp the rounding below zero.
        d = torch.baddbmm(r.square().sum(-1)[:, None, :], q, r.transpose(1, 2), alpha=-2.0)
        if k == 1:  # a point's nearest centre: |q|^2 is the same along the row, and argmin is cheaper than topk
            out.append(d.argmin(-1, keepdim=True))
            continue
        d = d.add_(q.square().sum(-1)[:, :, None]).clamp_min_(0.0)  # (b, M, N)
        out.append(d.topk(k, dim=-1, largest=False, sorted=True).indices)
    return torch.cat(out, dim=0)


def normalize_batch(points: Tensor) -> Tensor:
    """Centre each cloud (B, N, 3) on its bounding-box centre and scale its farthest point onto the unit
    sphere: the torch form of :func:`daer.data.sampling.normalize_unit_sphere`, so a user's cloud in any
    units and place is seen as the training data was. Degenerate clouds (one point repeated) stay centred."""
    centre = (points.amax(1, keepdim=True) + points.amin(1, keepdim=True)) / 2  # (B, 1, 3)
    centred = points - centre
    radius = centred.norm(dim=-1).amax(1).clamp_min(1e-12)  # (B,)
    return centred / radius[:, None, None]


class _RowGather(torch.autograd.Function):
    """Rows of a (R, C) matrix: ``index_select`` forward, ``index_add_`` backward. Advanced indexing's
    backward is an accumulating ``index_put_``, about 3x slower on CPU for a patch gather (64 shapes,
    128 centres x 32 neighbours); ``index_add_`` sums the same rows (tests/models/test_pointops.py)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, rows: Tensor) -> Tensor:
        ctx.save_for_backward(rows)
        ctx.n_rows = x.shape[0]
        return x.index_select(0, rows)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (rows,) = ctx.saved_tensors
        return grad.new_zeros(ctx.n_rows, grad.shape[1]).index_add_(0, rows, grad), None


def gather(x: Tensor, idx: Tensor) -> Tensor:
    """Batched gather along dim 1: ``x`` (B, N, C), ``idx`` (B, ...) -> (B, ..., C)."""
    b, n, c = x.shape
    offset = torch.arange(b, device=x.device).view(b, *([1] * (idx.dim() - 1))) * n
    rows = (idx + offset).reshape(-1)
    flat = x.reshape(b * n, c)
    out = _RowGather.apply(flat, rows) if torch.is_grad_enabled() and x.requires_grad else flat.index_select(0, rows)
    return out.view(*idx.shape, c)


@dataclass
class PointGroups:
    """FPS centres and kNN neighbourhoods of every level, as indices.

    Level l (0-based) indexes the positions of the level before it: level 0 indexes the input points,
    level 1 the level-0 centres, and so on. Tensors carry a leading batch dim when ``batched``.

    Attributes:
        centers: per level (B, N_l) int64 indices of the centres.
        neighbors: per level (B, N_l, k_l) int64 indices of each centre's neighbours (itself included).
    """

    centers: list[Tensor]
    neighbors: list[Tensor]

    @property
    def batched(self) -> bool:
        """Whether the tensors have a leading batch dimension."""
        return self.centers[0].dim() == 2

    def to(self, device: torch.device | str) -> PointGroups:
        """The same groups on ``device``."""
        return PointGroups([c.to(device) for c in self.centers], [n.to(device) for n in self.neighbors])

    def unbind(self) -> list[PointGroups]:
        """Split batched groups into one per shape."""
        if not self.batched:
            raise ValueError("PointGroups.unbind needs batched groups")
        b = self.centers[0].shape[0]
        return [PointGroups([c[i] for c in self.centers], [n[i] for n in self.neighbors]) for i in range(b)]

    @staticmethod
    def stack(groups: Sequence[PointGroups]) -> PointGroups:
        """Collate per-shape groups into a batch (what a DataLoader collate_fn calls)."""
        if not groups:
            raise ValueError("PointGroups.stack needs at least one item")
        levels = range(len(groups[0].centers))
        return PointGroups(
            [torch.stack([g.centers[lvl] for g in groups]) for lvl in levels],
            [torch.stack([g.neighbors[lvl] for g in groups]) for lvl in levels],
        )

    def to_arrays(self, dtype: np.dtype | type = np.int16) -> dict[str, np.ndarray]:
        """Compact numpy arrays for an on-disk cache (``centers_0``, ``neighbors_0``, ...)."""
        out: dict[str, np.ndarray] = {}
        for lvl, (c, n) in enumerate(zip(self.centers, self.neighbors, strict=True)):
            out[f"centers_{lvl}"] = c.cpu().numpy().astype(dtype)
            out[f"neighbors_{lvl}"] = n.cpu().numpy().astype(dtype)
        return out

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray]) -> PointGroups:
        """Inverse of :meth:`to_arrays`."""
        n_levels = sum(1 for k in arrays if k.startswith("centers_"))
        if n_levels == 0:
            raise BadInputError("cached point groups hold no levels")
        try:
            centers = [torch.from_numpy(np.asarray(arrays[f"centers_{i}"], dtype=np.int64)) for i in range(n_levels)]
            neighbors = [
                torch.from_numpy(np.asarray(arrays[f"neighbors_{i}"], dtype=np.int64)) for i in range(n_levels)
            ]
        except KeyError as e:
            raise BadInputError(f"cached point groups miss {e.args[0]!r}") from e
        return PointGroups(centers, neighbors)

    def check(self, n_points: int, level_sizes: Sequence[int], level_k: Sequence[int], batch: int) -> None:
        """Raise BadInputError unless these groups fit a batch of ``batch`` shapes and the given sizes."""
        if len(self.centers) != len(level_sizes) or len(self.neighbors) != len(level_sizes):
            raise BadInputError(f"point groups have {len(self.centers)} levels, the model needs {len(level_sizes)}")
        prev = n_points
        for lvl, (m, k) in enumerate(zip(level_sizes, level_k, strict=True)):
            c, nb = self.centers[lvl], self.neighbors[lvl]
            if tuple(c.shape) != (batch, m) or tuple(nb.shape) != (batch, m, k):
                raise BadInputError(
                    f"point groups level {lvl}: shapes {tuple(c.shape)}, {tuple(nb.shape)}; "
                    f"expected {(batch, m)}, {(batch, m, k)}"
                )
            if c.numel() and (int(c.min()) < 0 or int(c.max()) >= prev or int(nb.min()) < 0 or int(nb.max()) >= prev):
                raise BadInputError(f"point groups level {lvl}: index outside 0..{prev - 1}")
            prev = m


def precompute_groups(points: Tensor | np.ndarray, level_sizes: Sequence[int], level_k: Sequence[int]) -> PointGroups:
    """FPS centres and kNN neighbourhoods of every level for one shape (N, 3) or a batch (B, N, 3).

    Returns unbatched groups for an (N, 3) input, batched ones for (B, N, 3).
    """
    pts = torch.as_tensor(np.asarray(points) if not isinstance(points, Tensor) else points)
    single = pts.dim() == 2
    if single:
        pts = pts[None]
    if pts.dim() != 3 or pts.shape[-1] != 3:
        raise BadInputError(f"precompute_groups: expected (N, 3) or (B, N, 3) points, got {tuple(pts.shape)}")
    if not pts.is_floating_point() or pts.dtype in (torch.float16, torch.bfloat16):
        pts = pts.float()  # distances in half precision would pick wrong neighbours
    centers, neighbors = [], []
    pos = pts
    with torch.no_grad(), torch.autocast(pts.device.type, enabled=False):
        for m, k in zip(level_sizes, level_k, strict=True):
            c = farthest_point_sample(pos, m)  # (B, m)
            cpos = gather(pos, c)  # (B, m, 3)
            centers.append(c)
            neighbors.append(knn(cpos, pos, k))  # (B, m, k)
            pos = cpos
    groups = PointGroups(centers, neighbors)
    return groups.unbind()[0] if single else groups
