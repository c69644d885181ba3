"""Grounding loss: a caption word that names a part should attend to that part's points.

Align3D-Synth labels every point with the attributes its part expresses (``point_attrs``). For each
caption token that names an attribute value ("armrests", "four" in "four legs"; found as
:func:`daer.eval.grounding.attribute_tokens` finds them, with no template involved), the HAF attention of
that token at each level is mapped onto the input points as :meth:`DaerModel.explain` maps it (every
point takes its nearest token centre's weight), and the loss is −log of the share of attention mass on
the named part's points: the pointing game of the grounding evaluation, made differentiable.

Nothing else in training tells the fine path *where* a word's evidence lies: the InfoNCE terms are
satisfied by any attention that separates the batch, often by the category alone. Tokens whose part is
absent ("no armrests") or covers most of the shape (a mug's body) are left out, as in the evaluation;
shapes without labels (imported meshes) contribute nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from daer.eval.grounding import MAX_COVER, attribute_tokens
from daer.models.pointops import knn
from daer.synth.generator import attribute_mask

_EPS = 1e-6


class TokenAttributeMasks:
    """Caption token -> bit mask of the attribute it names, remembered per (shape, caption).

    Args:
        content_only: the model scores content words only (``text_content_words``).
    """

    def __init__(self, content_only: bool) -> None:
        self.content_only = content_only
        self._names: dict[tuple[int, str], dict[int, str]] = {}
        self._masks: dict[tuple[int, str], dict[int, int]] = {}

    def __call__(
        self, index: int, category: str, attributes: Mapping[str, str], caption: str, words: Sequence[str]
    ) -> dict[int, int]:
        """The named tokens of ``caption`` (whose scored tokens are ``words``) for shape ``index``."""
        key = (index, caption)
        if key not in self._masks:
            names = self.names(index, category, attributes, caption, words)
            self._masks[key] = {t: attribute_mask(category, name) for t, name in names.items()}
        return self._masks[key]

    def names(
        self, index: int, category: str, attributes: Mapping[str, str], caption: str, words: Sequence[str]
    ) -> dict[int, str]:
        """Token index -> the name of the attribute it names (``__call__`` gives its bit mask)."""
        key = (index, caption)
        if key not in self._names:
            self._names[key] = attribute_tokens(category, attributes, caption, words, self.content_only)
        return self._names[key]


def _part_points(labels: Tensor, shape: Tensor, bits: Tensor, max_cover: float) -> tuple[Tensor, Tensor]:
    """(R, N) which points of shape ``shape[r]`` carry the bits ``bits[r]``, and (R,) whether that part is
    scorable: present, and not covering more than ``max_cover`` of the shape (a mug's body is no evidence)."""
    on = (labels[shape] & bits[:, None]) != 0
    cover = on.float().mean(1)
    return on, (cover > 0) & (cover <= max_cover)


def grounding_loss(
    attention: Sequence[Tensor],
    centers: Sequence[Tensor],
    points: Tensor,
    labels: Tensor,
    token_masks: Sequence[Mapping[int, int]],
    max_cover: float = MAX_COVER,
) -> Tensor | None:
    """Mean over (named token, level) of −log(attention share on the named part's points).

    Args:
        attention: per level (B, T, N_l) attention of aligned pairs (rows sum to one).
        centers: per level (B, N_l, 3) token centres, in the frame of ``points``.
        points: (B, N, 3) the points the encoder saw (normalised).
        labels: (B, N) integer ``point_attrs`` bit masks.
        token_masks: per shape, token index -> bit mask of the attribute the token names.
        max_cover: tokens whose part holds more than this share of the shape's points are left out.

    Returns:
        The scalar loss, or None when no token of the batch names a scorable part.
    """
    rows = [(b, t, m) for b, masks in enumerate(token_masks) for t, m in masks.items()]
    if not rows:
        return None
    dev = points.device
    b_idx = torch.tensor([r[0] for r in rows], device=dev)
    t_idx = torch.tensor([r[1] for r in rows], device=dev)
    bits = torch.tensor([r[2] for r in rows], device=dev, dtype=labels.dtype)
    on, keep = _part_points(labels, b_idx, bits, max_cover)  # (R, N) points of each named part
    if not bool(keep.any()):
        return None
    b_idx, t_idx, on = b_idx[keep], t_idx[keep], on[keep].float()
    losses = []
    for att, cen in zip(attention, centers, strict=True):
        cells, on_cells = _cells(points, cen, b_idx, on)
        a = att[b_idx, t_idx].float()  # (R, N_l)
        share = (a * on_cells).sum(1) / (a * cells[b_idx]).sum(1).clamp_min(_EPS)
        losses.append(-torch.log(share.clamp_min(_EPS)))
    return torch.cat(losses).mean()


def _cells(points: Tensor, centers: Tensor, b_idx: Tensor, on: Tensor) -> tuple[Tensor, Tensor]:
    """Each token's Voronoi cell: (B, N_l) its number of points, and (R, N_l) how many of row r's part points
    it holds (``on`` (R, N) marks them on the shapes ``b_idx``), every point going to its nearest centre."""
    nearest = knn(points.detach().float(), centers.detach().float(), 1)[..., 0]  # (B, N) each point's token
    n_l = centers.shape[1]
    ones = torch.ones(nearest.shape, device=points.device)
    cells = torch.zeros(len(points), n_l, device=points.device).scatter_add_(1, nearest, ones)
    on_cells = torch.zeros(len(b_idx), n_l, device=points.device).scatter_add_(1, nearest[b_idx], on)
    return cells, on_cells


def part_readout_loss(
    haf: torch.nn.Module,
    tokens: Tensor,
    levels: Sequence[Tensor],
    centers: Sequence[Tensor],
    points: Tensor,
    labels: Tensor,
    named: Sequence[Mapping[int, tuple[int, str, str]]],
    scale: Tensor | float,
    local_levels: Sequence[int] = (0, 1),
    max_cover: float = MAX_COVER,
) -> Tensor | None:
    """A word's expectation must match the values read from its labelled part, across the batch.

    For each caption token that names an attribute value (row i: shape b_i, token t_i, value v_i of attribute
    k_i), the part's points are read out of the local levels (patches and parts, before the transformer:
    they see only their neighbourhood) with fixed weights, each token's share of the part's points:
    r_i = Σ_j share_ij · v_j. Then u_i (the word's expectation) must pick, among the parts r_j of every row
    naming the same attribute of the same category, those whose shape has the same value: a supervised
    InfoNCE. A trunk's read-out cannot see the crown, so "tall" must be told from "short" by the trunk
    itself, even where every training tree with a tall trunk has a round crown: the attribute is learnt
    apart from the combination it came in, which caption-level losses cannot do. Screened, it did not raise
    attr_acc (benchmarks/RESULTS.md, "combination confounds"), so it is off by default.

    Args:
        haf: the HierarchicalAttentionFusion (its ``expectations`` and ``read_values``).
        tokens: (B, T, D) caption tokens; levels, centers: the point features' per-level tokens and centres.
        points, labels: (B, N, 3) normalised points and (B, N) ``point_attrs`` bit masks.
        named: per shape, token index -> (bit mask, "category.attribute", value).
        scale: logit multiplier.

    Returns:
        The scalar loss, or None when no attribute of the batch is named with two different values.
    """
    rows = [(b, t, *m) for b, items in enumerate(named) for t, m in items.items()]
    if not rows:
        return None
    dev = points.device
    bits = torch.tensor([r[2] for r in rows], device=dev, dtype=labels.dtype)
    b_all = torch.tensor([r[0] for r in rows], device=dev)
    on, scorable = _part_points(labels, b_all, bits, max_cover)
    keep = scorable.tolist()
    rows = [r for r, k in zip(rows, keep, strict=True) if k]
    on = on[scorable].float()
    groups: dict[str, int] = {}
    key = torch.tensor([groups.setdefault(r[3], len(groups)) for r in rows], device=dev)
    values: dict[tuple[str, str], int] = {}
    value = torch.tensor([values.setdefault((r[3], r[4]), len(values)) for r in rows], device=dev)
    same_key = key[:, None] == key[None, :]
    positive = same_key & (value[:, None] == value[None, :])
    contested = (same_key & ~positive).any(1)  # rows with at least one part of another value to reject
    if not bool(contested.any()):
        return None
    b_idx = torch.tensor([r[0] for r in rows], device=dev)
    t_idx = torch.tensor([r[1] for r in rows], device=dev)
    losses = []
    for lvl in local_levels:
        _, on_cells = _cells(points, centers[lvl], b_idx, on)
        share = on_cells / on_cells.sum(1, keepdim=True).clamp_min(_EPS)  # (R, N_l)
        u, r = haf.expectations(lvl, tokens[b_idx, t_idx]), haf.read_values(lvl, levels[lvl][b_idx], share)
        logits = scale * (F.normalize(u.float(), dim=-1) @ F.normalize(r.float(), dim=-1).T)  # (R, R)
        logits = logits.masked_fill(~same_key, float("-inf"))
        pos = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
        losses.append((torch.logsumexp(logits, dim=1) - pos)[contested])
    return torch.cat(losses).mean()


def part_swap_loss(
    haf: torch.nn.Module,
    levels: Sequence[Tensor],
    centers: Sequence[Tensor],
    points: Tensor,
    labels: Tensor,
    shape: Tensor,
    bits: Tensor,
    words: Tensor,
    owner: Tensor,
    scale: Tensor | float,
    local_levels: Sequence[int] = (0, 1),
    max_cover: float = MAX_COVER,
) -> Tensor | None:
    """The attribute-swap choice made by the named part alone: its local values must pick the true words.

    Each set is one shape's part (``shape``, ``bits``) with the words its caption uses for that attribute
    (the first candidate of the set, "tall" of "a tall trunk") and the words of each swapped caption for it
    ("short"). The part's points are read out of the local levels (patches and parts before the
    transformer) with fixed weights, each token's share of the part's points, and a cross-entropy over the
    set's candidates asks cos(u(words), read values) to pick the true words. Only the trunk is read, so
    the crown cannot answer for it; the caption-level swap loss can always be satisfied by the crown where
    training combinations confound the two. Screened, it did not raise attr_acc either (same section).

    Args:
        levels, centers: the point features' per-level tokens (B, N_l, D) and centres (B, N_l, 3).
        points, labels: (B, N, 3) normalised points and (B, N) ``point_attrs`` bit masks.
        shape, bits: (S,) each set's batch row and the bit mask of its attribute.
        words: (C, D) each candidate's mean token feature; ``owner``: (C,) its set, in order, true one first.
        scale: logit multiplier.

    Returns:
        The scalar loss, or None when no set has a scorable part and a swapped candidate.
    """
    if len(shape) == 0:
        return None
    on, scorable = _part_points(labels, shape, bits, max_cover)  # (S, N)
    counts = torch.bincount(owner, minlength=len(shape))
    keep = scorable & (counts > 1)
    if not bool(keep.any()):
        return None
    first = torch.cumsum(counts, 0) - counts  # index of each set's true candidate
    slot = torch.arange(len(owner), device=owner.device) - first[owner]
    losses = []
    for lvl in local_levels:
        _, on_cells = _cells(points, centers[lvl], shape, on.float())
        share = on_cells / on_cells.sum(1, keepdim=True).clamp_min(_EPS)  # (S, N_l)
        r = haf.read_values(lvl, levels[lvl][shape], share)  # (S, d)
        u = haf.expectations(lvl, words)  # (C, d)
        logit = scale * F.cosine_similarity(u.float(), r[owner].float(), dim=-1)  # (C,)
        table = logit.new_full((len(shape), int(counts.max())), float("-inf"))
        table[owner, slot] = logit
        target = torch.zeros(int(keep.sum()), dtype=torch.long, device=table.device)
        losses.append(F.cross_entropy(table[keep], target, reduction="none"))
    return torch.cat(losses).mean()
