"""Contrastive losses: symmetric InfoNCE on global embeddings plus InfoNCE over fine HAF scores.

Under DDP the loss follows open_clip's ``ClipLoss`` with ``local_loss`` and ``gather_with_grad``:
features from every rank are gathered (gradients flow back to their owner), each rank scores its
local rows against all columns with labels offset by its first global row, and the mean over
ranks of the per-rank losses equals the single-process loss over the same global batch. On one
process the gather is the identity, so both paths are the same code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from daer.train.distributed import all_gather_list, all_gather_sizes, all_gather_with_grad, get_rank, get_world_size

T = TypeVar("T")
PairScore = Callable[[Any, Any], torch.Tensor]  # (text, shapes) -> (Bt, Bs) or per level (Bt, Bs, L)
# (text, shapes, (text rows, shape rows)) -> (M,) or per level (M, L): the scores of M index pairs
PairedScore = Callable[[Any, Any, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]


def gather_features(features: T) -> T:
    """All-gather every tensor of a features dataclass along its batch dim (identity on one process).

    Tensor fields, lists/tuples of tensors and per-item lists (as long as the batch) are gathered;
    other fields are kept as they are. The dataclass must define ``__len__`` (its batch size).
    """
    if get_world_size() == 1:
        return features
    if not dataclasses.is_dataclass(features):
        raise TypeError(f"expected a features dataclass, got {type(features).__name__}")
    batch = len(features)  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(features):
        value = getattr(features, f.name)
        if isinstance(value, torch.Tensor):
            changes[f.name] = all_gather_with_grad(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
            changes[f.name] = type(value)(all_gather_with_grad(v) for v in value)
        elif isinstance(value, list) and len(value) == batch:  # per-item Python values, e.g. token strings
            changes[f.name] = all_gather_list(value)
    return dataclasses.replace(features, **changes)  # type: ignore[type-var]


def symmetric_info_nce(
    logits_t2s: torch.Tensor,
    logits_s2t: torch.Tensor,
    labels: torch.Tensor,
    exclude: torch.Tensor | None = None,
    exclude_sides: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean of the two cross-entropies; each logits matrix holds local rows against all columns.

    Args:
        logits_t2s: (B_local, B_global) local texts against every shape, or (B_local, B_global, L)
            for L score matrices (the loss is then the mean over the L of them).
        logits_s2t: the same shape, local shapes against every text.
        labels: (B_local,) the global column of each row's positive.
        exclude: (B_local, B_global) bool, pairs left out of both contrasts (never a row's positive).
        exclude_sides: one such mask per side instead (t2s, s2t), where the two sides' columns differ.
    """
    masks = exclude_sides if exclude_sides is not None else (exclude, exclude)
    sides = []
    for logits, mask in zip((logits_t2s, logits_s2t), masks, strict=True):
        if mask is not None:
            logits = logits.masked_fill(mask if logits.dim() == 2 else mask[..., None], float("-inf"))
        sides.append(logits)
    if logits_t2s.dim() == 3:  # (B, B_global, L): classes already in dim 1, one target per level
        labels = labels[:, None].expand(-1, logits_t2s.shape[2])
    return (F.cross_entropy(sides[0].float(), labels) + F.cross_entropy(sides[1].float(), labels)) / 2


class ContrastiveLoss(nn.Module):
    """Global InfoNCE plus (when ``pair_score`` is given) fine InfoNCE over pairwise HAF scores.

    Args:
        pair_score: ``(text, shapes) -> (Bt, Bs)`` fine scores, or ``(Bt, Bs, L)`` per-level scores
            (e.g. ``model.haf.level_scores``: one InfoNCE per level, averaged); None for the
            ``global`` baseline, which then trains on the global embeddings only.
        fine_weight: weight of the fine term.
        fine_negatives: 0: the fine term contrasts every in-batch pair. k > 0: each text is contrasted
            with its own shape and the k shapes whose *global* embeddings are closest to it (and each
            shape with the k closest texts), the hard negatives ALBEF mines for its matching head. The
            fine score is then trained where it is used, re-ranking a global shortlist, instead of
            on negatives that the category word already tells apart; it needs ``paired_score``.
        paired_score: ``(text, shapes, (text rows, shape rows)) -> (M[, L])``, the same scores as
            ``pair_score`` for M index pairs (e.g. ``model.haf.paired_level_scores`` with ``pairs=``).
    """

    def __init__(
        self,
        pair_score: PairScore | None = None,
        fine_weight: float = 1.0,
        fine_negatives: int = 0,
        paired_score: PairedScore | None = None,
    ) -> None:
        super().__init__()
        if fine_negatives < 0:
            raise ValueError(f"fine_negatives must be >= 0, got {fine_negatives}")
        if fine_negatives and pair_score is not None and paired_score is None:
            raise ValueError("fine_negatives > 0 needs paired_score (the fine scores of index pairs)")
        self.pair_score = pair_score
        self.paired_score = paired_score
        self.fine_weight = float(fine_weight) if pair_score is not None else 0.0
        self.fine_negatives = int(fine_negatives)

    def forward(
        self,
        text: Any,
        shapes: Any,
        logit_scale: torch.Tensor,
        fine_logit_scale: torch.Tensor | None = None,
        exclude: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss on this rank's rows.

        Args:
            text: text features with ``global_`` (B, D) (and whatever ``pair_score`` reads).
            shapes: point features with ``global_`` (B, D).
            logit_scale: scalar, the (already exponentiated, clamped) inverse temperature.
            fine_logit_scale: scalar for the fine term; ``logit_scale`` when None.
            exclude: (B, B_global) bool, (text row, shape column) pairs left out of the contrast (and the
                same pairs of the shape-to-text side); None keeps every pair.

        Returns:
            ``loss`` (weighted sum), ``loss_global`` and ``loss_fine`` (zero when not trained).
        """
        b = text.global_.shape[0]
        if shapes.global_.shape[0] != b:
            raise ValueError(f"text batch {b} and shape batch {shapes.global_.shape[0]} differ")
        world = get_world_size()
        start = sum(all_gather_sizes(b, device=text.global_.device)[: get_rank()]) if world > 1 else 0
        labels = torch.arange(start, start + b, device=text.global_.device)  # (B,)
        text_all, shapes_all = gather_features(text), gather_features(shapes)

        t = F.normalize(text.global_.float(), dim=-1)  # (B, D)
        s = F.normalize(shapes.global_.float(), dim=-1)  # (B, D)
        t_all = F.normalize(text_all.global_.float(), dim=-1)  # (B_global, D)
        s_all = F.normalize(shapes_all.global_.float(), dim=-1)  # (B_global, D)
        if exclude is not None and exclude[torch.arange(b), labels].any():
            raise ValueError("exclude must not leave out a row's own positive")
        loss_global = symmetric_info_nce(logit_scale * t @ s_all.T, logit_scale * s @ t_all.T, labels, exclude)

        if self.pair_score is None:
            zero = loss_global.new_zeros(())
            return {"loss": loss_global, "loss_global": loss_global.detach(), "loss_fine": zero}
        scale = logit_scale if fine_logit_scale is None else fine_logit_scale
        if self.fine_negatives:
            assert self.paired_score is not None
            paired = self.paired_score
            t2s, t2s_out = self._hard_side(
                t @ s_all.T, labels, exclude, lambda r, c: paired(text, shapes_all, (r, c))
            )  # (B, 1 + k[, L]) each
            s2t, s2t_out = self._hard_side(s @ t_all.T, labels, exclude, lambda r, c: paired(text_all, shapes, (c, r)))
            first = torch.zeros_like(labels)  # the positive is column 0
            loss_fine = symmetric_info_nce(scale * t2s, scale * s2t, first, None, (t2s_out, s2t_out))
        else:
            if world == 1:
                fine = self.pair_score(text, shapes)  # (B, B[, L])
                fine_t2s, fine_s2t = fine, fine.transpose(0, 1)
            else:
                fine_t2s = self.pair_score(text, shapes_all)  # (B, B_global[, L])
                fine_s2t = self.pair_score(text_all, shapes).transpose(0, 1)  # (B, B_global[, L])
            loss_fine = symmetric_info_nce(scale * fine_t2s, scale * fine_s2t, labels, exclude)
        loss = loss_global + self.fine_weight * loss_fine
        return {"loss": loss, "loss_global": loss_global.detach(), "loss_fine": loss_fine.detach()}

    def _hard_side(
        self,
        sim: torch.Tensor,
        labels: torch.Tensor,
        exclude: torch.Tensor | None,
        score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fine scores of each row's positive (column 0) and its k most similar other columns by ``sim``.

        Args:
            sim: (B, B_global) global cosines of this side's rows against every column (no gradient is used).
            score: (row indices, column indices) of M pairs -> their fine scores (M[, L]).

        Returns:
            (B, 1 + k[, L]) scores, and a (B, 1 + k) mask of the slots a row could not fill (excluded pairs).
        """
        b, n = sim.shape
        k = min(self.fine_negatives, n - 1)
        blocked = F.one_hot(labels, n).bool()
        if exclude is not None:
            blocked = blocked | exclude
        with torch.no_grad():
            top = sim.detach().masked_fill(blocked, float("-inf")).topk(k, dim=1)  # (B, k)
        cols = torch.cat([labels[:, None], top.indices], dim=1)  # (B, 1 + k)
        rows = torch.arange(b, device=sim.device).repeat_interleave(1 + k)
        fine = score(rows, cols.reshape(-1))
        out = torch.cat([torch.zeros_like(labels, dtype=torch.bool)[:, None], top.values.isneginf()], dim=1)
        return fine.reshape(b, 1 + k, *fine.shape[1:]), out
