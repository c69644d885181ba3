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
    logits_t2s: torch.Tensor, logits_s2t: torch.Tensor, labels: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of the two cross-entropies; each logits matrix holds local rows against all columns.

    Args:
        logits_t2s: (B_local, B_global) local texts against every shape, or (B_local, B_global, L)
            for L score matrices (the loss is then the mean over the L of them).
        logits_s2t: the same shape, local shapes against every text.
        labels: (B_local,) the global column of each row's positive.
        exclude: (B_local, B_global) bool, pairs left out of both contrasts (never a row's positive).
    """
    if exclude is not None:
        mask = exclude if logits_t2s.dim() == 2 else exclude[..., None]
        logits_t2s = logits_t2s.masked_fill(mask, float("-inf"))
        logits_s2t = logits_s2t.masked_fill(mask, float("-inf"))
    if logits_t2s.dim() == 3:  # (B, B_global, L): classes already in dim 1, one target per level
        labels = labels[:, None].expand(-1, logits_t2s.shape[2])
    return (F.cross_entropy(logits_t2s.float(), labels) + F.cross_entropy(logits_s2t.float(), labels)) / 2


class ContrastiveLoss(nn.Module):
    """Global InfoNCE plus (when ``pair_score`` is given) fine InfoNCE over pairwise HAF scores.

    Args:
        pair_score: ``(text, shapes) -> (Bt, Bs)`` fine scores, or ``(Bt, Bs, L)`` per-level scores
            (e.g. ``model.haf.level_scores``: one InfoNCE per level, averaged); None for the
            ``global`` baseline, which then trains on the global embeddings only.
        fine_weight: weight of the fine term.
    """

    def __init__(self, pair_score: PairScore | None = None, fine_weight: float = 1.0) -> None:
        super().__init__()
        self.pair_score = pair_score
        self.fine_weight = float(fine_weight) if pair_score is not None else 0.0

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
        if world == 1:
            fine = self.pair_score(text, shapes)  # (B, B[, L])
            fine_t2s, fine_s2t = fine, fine.transpose(0, 1)
        else:
            fine_t2s = self.pair_score(text, shapes_all)  # (B, B_global[, L])
            fine_s2t = self.pair_score(text_all, shapes).transpose(0, 1)  # (B, B_global[, L])
        loss_fine = symmetric_info_nce(scale * fine_t2s, scale * fine_s2t, labels, exclude)
        loss = loss_global + self.fine_weight * loss_fine
        return {"loss": loss, "loss_global": loss_global.detach(), "loss_fine": loss_fine.detach()}
