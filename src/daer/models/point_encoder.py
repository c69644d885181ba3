"""Hierarchical point encoder: patches (mini-PointNet), parts (grouped patches), objects (transformer)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from daer.errors import BadInputError
from daer.models.config import ModelConfig
from daer.models.pointops import PointGroups, gather, knn, precompute_groups


@dataclass
class PointFeatures:
    """Point tokens at every level plus the global shape embedding.

    Attributes:
        levels: per level (B, N_l, D) tokens in the shared embedding space (not normalised).
        centers: per level (B, N_l, 3) token positions.
        global_: (B, D) L2-normalised shape embedding.
    """

    levels: list[Tensor]
    centers: list[Tensor]
    global_: Tensor

    def __len__(self) -> int:
        return self.global_.shape[0]

    def select(self, idx: Tensor | slice) -> PointFeatures:
        """The features of a subset of shapes (index or slice along the batch)."""
        if isinstance(idx, Tensor) and idx.dim() == 1 and not idx.is_floating_point() and idx.dtype != torch.bool:
            # index_select's backward is an index_add_, several times faster on CPU than advanced indexing's.
            return PointFeatures(
                [x.index_select(0, idx) for x in self.levels],
                [c.index_select(0, idx) for c in self.centers],
                self.global_.index_select(0, idx),
            )
        return PointFeatures([x[idx] for x in self.levels], [c[idx] for c in self.centers], self.global_[idx])

    def detach(self) -> PointFeatures:
        """A copy cut from the autograd graph."""
        return PointFeatures(
            [x.detach() for x in self.levels], [c.detach() for c in self.centers], self.global_.detach()
        )

    @staticmethod
    def cat(items: list[PointFeatures]) -> PointFeatures:
        """Concatenate along the batch."""
        n = len(items[0].levels)
        return PointFeatures(
            [torch.cat([f.levels[i] for f in items]) for i in range(n)],
            [torch.cat([f.centers[i] for f in items]) for i in range(n)],
            torch.cat([f.global_ for f in items]),
        )


class _GroupMax(torch.autograd.Function):
    """Max over dim 2 of (B, M, k, C): ``amax`` forward (no index tensor, ~6x faster than ``max`` on CPU)
    and a backward that gives the gradient to the first maximum only (``amax`` would split it between tied
    maxima, and giving it to each would count it several times): ``max``'s indices, which name the first
    maximum, found once in the backward and scattered into zeros (fewer passes over (B, M, k, C) than a
    first-hit mask built with ``==`` and a cumulative sum)."""

    @staticmethod
    def forward(ctx: Any, h: Tensor) -> Tensor:
        ctx.save_for_backward(h)
        return h.amax(dim=2)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (h,) = ctx.saved_tensors
        first = h.max(dim=2, keepdim=True).indices  # (B, M, 1, C); ties happen where sampling repeats a point
        return torch.zeros_like(h).scatter_(2, first, grad.unsqueeze(2).to(h.dtype))


def group_max(h: Tensor) -> Tensor:
    """Max-pool (B, M, k, C) over the k neighbours -> (B, M, C)."""
    if torch.is_grad_enabled() and h.requires_grad:
        return _GroupMax.apply(h)
    return h.amax(dim=2)


def _radius(k: int, n: int) -> float:
    # Radius of a kNN ball of k among n points on a surface of area ~4π (unit sphere): sqrt(4k/n).
    # Relative coordinates are divided by it so the first layers see values of order one.
    return math.sqrt(4.0 * k / n)


class PatchEmbed(nn.Module):
    """Mini-PointNet over each kNN patch of raw points: shared MLP on relative coordinates, max-pool.

    The first layer is linear in the coordinates, W(p_j − c_i) = Wp_j − Wc_i, so it runs once per
    point and once per centre instead of once per (centre, neighbour) pair.
    """

    def __init__(self, hidden: list[int], out: int, radius: float) -> None:
        super().__init__()
        self.radius = radius
        self.first = nn.Linear(3, hidden[0])
        layers: list[nn.Module] = []
        for a, b in zip(hidden[:-1], hidden[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        # The last ReLU moves after the max-pool (max and ReLU commute): one less pass over (B, M, k, C).
        self.mlp = nn.Sequential(nn.ReLU(), *layers[:-1])
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(hidden[-1], out), nn.ReLU(), nn.Linear(out, out))

    def forward(self, points: Tensor, centers: Tensor, neighbors: Tensor) -> Tensor:
        per_point = F.linear(points / self.radius, self.first.weight)  # (B, N, C0)
        per_centre = F.linear(centers / self.radius, self.first.weight, -self.first.bias)  # (B, M, C0)
        h = gather(per_point, neighbors) - per_centre[:, :, None, :]  # (B, M, k, C0)
        return self.out(group_max(self.mlp(h)))  # (B, M, out)


class GroupEmbed(nn.Module):
    """Pool tokens over kNN groups: max over the group of ReLU(A·token_j + R·(p_j − c_i) + b), then a linear.

    Both terms of the first layer are computed per token and per centre, so the per-pair work is a
    gather, a subtraction and the max-pool.
    """

    def __init__(self, width_in: int, width: int, radius: float) -> None:
        super().__init__()
        self.radius = radius
        self.token = nn.Linear(width_in, width)
        self.rel = nn.Linear(3, width, bias=False)
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(width, width))

    def forward(self, tokens: Tensor, pos: Tensor, centers: Tensor, neighbors: Tensor) -> Tensor:
        per_token = self.token(tokens) + self.rel(pos / self.radius)  # (B, N, W)
        per_centre = self.rel(centers / self.radius)  # (B, M, W)
        h = gather(per_token, neighbors) - per_centre[:, :, None, :]  # (B, M, k, W)
        return self.out(group_max(h))  # (B, M, W)


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width), nn.Dropout(dropout))

    def forward(self, x: Tensor, key_padding: Tensor | None = None) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        mask = None if key_padding is None else key_padding[:, None, None, :]  # True = attend
        y = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, N, C/H)
        x = x + self.proj(y.transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class PointEncoder(nn.Module):
    """Points (B, N, 3) -> :class:`PointFeatures` with patch, part and object tokens."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_points = cfg.n_points
        self.level_sizes = list(cfg.level_sizes)
        self.level_k = list(cfg.level_k)
        n1, n2, _ = cfg.level_sizes
        k1, k2, k3 = cfg.level_k
        w1, w = cfg.patch_width, cfg.point_width
        self.patch = PatchEmbed(cfg.patch_mlp, w1, _radius(k1, cfg.n_points))
        self.parts = GroupEmbed(w1, w, _radius(k2, n1))
        self.objects = GroupEmbed(w, w, _radius(k3, n2))
        # Without local_position, patch and part tokens describe local geometry only, so a part's token does not
        # depend on where the rest of the shape put it (a crown raised by a tall trunk reads as the same crown).
        self.local_position = cfg.local_position
        self.pos1 = nn.Sequential(nn.Linear(3, w1), nn.GELU(), nn.Linear(w1, w1)) if cfg.local_position else None
        self.pos2 = nn.Sequential(nn.Linear(3, w), nn.GELU(), nn.Linear(w, w))
        self.norm1 = nn.LayerNorm(w1)
        self.norm2 = nn.LayerNorm(w)
        self.blocks = nn.ModuleList(Block(w, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(w)
        self.proj = nn.ModuleList(
            [nn.Linear(w1, cfg.embed_dim), nn.Linear(w, cfg.embed_dim), nn.Linear(w, cfg.embed_dim)]
        )
        self.global_proj = nn.Linear(2 * w, cfg.embed_dim)
        # Context for the fine levels: patches add their nearest part's transformer output, parts are read
        # after the transformer, so a leg token can know how many legs there are.
        self.context = cfg.point_context
        self.patch_context = nn.Linear(w, w1) if cfg.point_context else None

    def groups(self, points: Tensor) -> PointGroups:
        """FPS/kNN groups of a batch (B, N, 3) for this encoder's level sizes."""
        return precompute_groups(points, self.level_sizes, self.level_k)

    def forward(self, points: Tensor, groups: PointGroups | None = None) -> PointFeatures:
        """Encode a batch of point clouds.

        Args:
            points: (B, N, 3) coordinates normalised to the unit sphere; N >= the level-1 size.
            groups: precomputed :class:`PointGroups` of these points (computed here when None).
        """
        if points.dim() != 3 or points.shape[-1] != 3:
            raise BadInputError(f"expected points of shape (B, N, 3), got {tuple(points.shape)}")
        b, n, _ = points.shape
        if groups is None:
            groups = self.groups(points)
        else:
            groups = groups.to(points.device)
            groups.check(n, self.level_sizes, self.level_k, b)
        (c1, c2, c3), (g1, g2, g3) = groups.centers, groups.neighbors
        p1 = gather(points, c1)  # (B, N1, 3)
        p2 = gather(p1, c2)  # (B, N2, 3)
        p3 = gather(p2, c3)  # (B, N3, 3)

        t1 = self.patch(points, p1, g1)  # (B, N1, W1) patches
        t1 = self.norm1(t1 if self.pos1 is None else t1 + self.pos1(p1))
        t2 = self.parts(t1, p1, p2, g2)  # (B, N2, W) parts
        if self.local_position:
            t2 = x = self.norm2(t2 + self.pos2(p2))
        else:
            t2 = self.norm2(t2)
            x = t2 + self.pos2(p2)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm_out(x)  # (B, N2, W) parts in context
        t3 = self.objects(x, p2, p3, g3)  # (B, N3, W) objects
        g = self.global_proj(torch.cat([x.mean(1), x.amax(1)], dim=-1))  # (B, D)
        if self.patch_context is not None:
            nearest = knn(p1, p2, 1)  # (B, N1, 1) each patch's nearest part
            t1 = t1 + self.patch_context(gather(x, nearest)[:, :, 0])  # (B, N1, W1)
            t2 = x
        levels = [proj(t) for proj, t in zip(self.proj, (t1, t2, t3), strict=True)]
        return PointFeatures(levels=levels, centers=[p1, p2, p3], global_=F.normalize(g, dim=-1))
