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
from torch import Tensor

from daer.data.synth.generator import attribute_mask
from daer.eval.grounding import MAX_COVER, attribute_tokens
from daer.models.pointops import knn

_EPS = 1e-6


class TokenAttributeMasks:
    """Caption token -> bit mask of the attribute it names, remembered per (shape, caption).

    Args:
        content_only: the model scores content words only (``text_content_words``).
    """

    def __init__(self, content_only: bool) -> None:
        self.content_only = content_only
        self._memo: dict[tuple[int, str], dict[int, int]] = {}

    def __call__(
        self, index: int, category: str, attributes: Mapping[str, str], caption: str, words: Sequence[str]
    ) -> dict[int, int]:
        """The named tokens of ``caption`` (whose scored tokens are ``words``) for shape ``index``."""
        key = (index, caption)
        if key not in self._memo:
            named = attribute_tokens(category, attributes, caption, words, self.content_only)
            self._memo[key] = {t: attribute_mask(category, name) for t, name in named.items()}
        return self._memo[key]


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
    on = (labels[b_idx] & bits[:, None]) != 0  # (R, N) points of each named part
    cover = on.float().mean(1)
    keep = (cover > 0) & (cover <= max_cover)
    if not bool(keep.any()):
        return None
    b_idx, t_idx, on = b_idx[keep], t_idx[keep], on[keep].float()
    losses = []
    for att, cen in zip(attention, centers, strict=True):
        nearest = knn(points.detach().float(), cen.detach().float(), 1)[..., 0]  # (B, N) each point's token
        n_l = cen.shape[1]
        ones = torch.ones(nearest.shape, device=dev)
        cells = torch.zeros(len(points), n_l, device=dev).scatter_add_(1, nearest, ones)  # (B, N_l) cell sizes
        on_cells = torch.zeros(len(b_idx), n_l, device=dev).scatter_add_(1, nearest[b_idx], on)  # (R, N_l)
        a = att[b_idx, t_idx].float()  # (R, N_l)
        share = (a * on_cells).sum(1) / (a * cells[b_idx]).sum(1).clamp_min(_EPS)
        losses.append(-torch.log(share.clamp_min(_EPS)))
    return torch.cat(losses).mean()
