"""Attribute-swap negative captions for Align3D-Synth training shapes (NegCLIP-style hard negatives).

For a training caption, a negative is the same caption, rendered with the same template and
variant, with one of the attributes it names set to another value ("a stool with a round seat"
for a square-seated stool). In-batch negatives mostly differ in category, which the category word
alone tells apart; these differ in one word, so the loss has to look at that part of the shape.

Which swaps are allowed is the ``scope``:

- ``"train"``: the shape's full combination with the swap belongs to the *train* split, so no caption of a
  held-out (val/test) combination is ever seen in training, not even as a negative. Where training
  combinations are confounded (tree: only a conical crown with a short trunk and a round crown with a tall
  one) no swap is left, and the model is never told that the crown word and the trunk word are separate.
- ``"stated"``: the attributes the swapped caption *names* occur together in some train combination (a
  caption of partial attributes is allowed although the shape's full combination with the swap is held out).
- ``"free"``: every one-attribute swap, as NegCLIP does on any data: a negative may name a held-out
  combination; no held-out *shape* is ever seen and no held-out caption is ever a positive. Measured, it
  backfires: held-out combinations' captions are then seen only as negatives, and the model learns to
  reject that text whatever the shape (benchmarks/RESULTS.md, "combination confounds"; ``stated`` is
  worse than ``train`` too).

Shapes that are not Align3D-Synth shapes (or whose stored captions the generator does not
reproduce) simply get no negatives.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from daer.errors import BadInputError
from daer.synth.captions import render_caption
from daer.synth.generator import caption_draws, parse_shape_id, shape_spec
from daer.synth.splits import split_of
from daer.synth.taxonomy import TAXONOMY, combinations

SCOPES = ("train", "stated", "free")


class SwapNegatives:
    """Per shape and caption, every allowed one-attribute swap of that caption.

    Args:
        ids: shape ids (``synth-<seed>-<index>`` for Align3D-Synth shapes).
        captions: each shape's stored captions.
        scope: which swaps are allowed: ``"train"``, ``"stated"`` or ``"free"`` (see the module).
    """

    def __init__(self, ids: Sequence[str], captions: Sequence[Sequence[str]], scope: str = "train") -> None:
        if scope not in SCOPES:
            raise BadInputError(f"swap scope must be one of {SCOPES}, got {scope!r}")
        found = [_swaps(sid, caps, scope) for sid, caps in zip(ids, captions, strict=True)]
        self.options: list[dict[str, list[str]]] = [options for options, _ in found]
        self._attributes: list[dict[str, dict[str, str]]] = [attrs for _, attrs in found]

    @classmethod
    def from_folder(cls, data_dir: str | os.PathLike[str], split: str = "train", scope: str = "train") -> SwapNegatives:
        from daer.data.shards import iter_records

        ids, captions = [], []
        for rec in iter_records(data_dir, split, columns=["captions"]):
            ids.append(rec.id)
            captions.append(rec.captions)
        return cls(ids, captions, scope)

    def coverage(self) -> float:
        """Fraction of captions that have at least one negative."""
        counts = [bool(v) for opts in self.options for v in opts.values()]
        return float(np.mean(counts)) if counts else 0.0

    def captions(self) -> list[str]:
        """Every negative caption once (to fill the text-feature cache)."""
        return list(dict.fromkeys(c for opts in self.options for v in opts.values() for c in v))

    def attributes(self, index: int, negative: str) -> dict[str, str]:
        """The attribute values a negative caption of shape ``index`` states (the shape's, one swapped)."""
        return self._attributes[index][negative]

    def pick(self, index: int, caption: str, rng: np.random.Generator, k: int = 1) -> list[str]:
        """Up to ``k`` distinct negatives of shape ``index``'s ``caption`` (empty when it has none)."""
        choices = self.options[index].get(caption) or []
        if len(choices) <= k:
            return list(choices)
        return [choices[int(i)] for i in rng.choice(len(choices), size=k, replace=False)]


def _allowed(category: str, full: dict[str, str], stated: dict[str, str], seed: int, scope: str) -> bool:
    """Whether a swap giving ``full`` (the shape's values, one swapped) and naming ``stated`` is in ``scope``."""
    if scope == "free":
        return True
    if scope == "train":
        return split_of(category, full, seed) == "train"
    return any(
        all(c[k] == v for k, v in stated.items()) and split_of(category, c, seed) == "train"
        for c in combinations(category)
    )


def _swaps(sid: str, captions: Sequence[str], scope: str) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """Caption -> its negatives, and negative -> the full attribute values it states."""
    parsed = parse_shape_id(sid)
    if parsed is None:
        return {}, {}
    seed, index = parsed
    category, full = shape_spec(index, seed)
    out: dict[str, list[str]] = {}
    stated: dict[str, dict[str, str]] = {}
    for draw in caption_draws(index, seed, len(captions)):
        if draw.text not in captions:
            continue
        negs = []
        for name in draw.attributes:
            for value in TAXONOMY[category][name]:
                attrs = {**draw.attributes, name: value}
                if value == full[name] or not _allowed(category, {**full, name: value}, attrs, seed, scope):
                    continue
                neg = render_caption(category, attrs, draw.template, draw.group, draw.variant)
                negs.append(neg)
                stated.setdefault(neg, {**full, name: value})
        out[draw.text] = list(dict.fromkeys(n for n in negs if n != draw.text))
    return out, stated


def swap_loss(
    model: torch.nn.Module,
    text: Any,
    negatives: Any,
    owner: torch.Tensor,
    shapes: Any,
    rows: torch.Tensor,
    logit_scale: torch.Tensor,
    fine_loss: str = "levels",
    fine_weight: float = 1.0,
    fine_logit_scale: torch.Tensor | None = None,
    global_weight: float = 1.0,
) -> torch.Tensor:
    """Each shape picks its caption over all of its swapped captions: a (1 + K)-way cross-entropy per shape.

    Args:
        model: the DaerModel (its ``haf``, when present, adds the same term on the fine scores).
        text: the batch's caption features; ``negatives``: features of M negatives.
        owner: (M,) which entry of ``rows`` each negative belongs to (every entry owns at least one).
        shapes: the batch's point features.
        rows: (H,) the batch rows that have negatives.
        logit_scale: the contrastive multiplier; ``fine_logit_scale`` the fine one (``logit_scale`` when None).
        fine_loss, fine_weight: as for the in-batch loss (per HAF level, or on the fused fine score).
        global_weight: weight of the term on the global score (0: only the fine path learns from swaps).
    """
    h, m = len(rows), len(owner)
    counts = torch.bincount(owner, minlength=h)  # (H,) negatives per row
    order = torch.argsort(owner, stable=True)  # negatives grouped by row, in their given order
    rank = torch.arange(m, device=owner.device) - (torch.cumsum(counts, 0) - counts)[owner[order]]
    slot = torch.empty_like(owner)
    slot[order] = rank + 1  # column of each negative in its row (the positive holds column 0)
    width = 1 + int(counts.max())
    valid = torch.arange(width, device=owner.device)[None] <= counts[:, None]  # (H, width)

    def logits(scale: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """(H, width, ...) scaled scores: the positive in column 0, negatives after it, -inf past a row's own.

        The -inf goes in after scaling: 0 · -inf in the scale's gradient would be NaN."""
        out = pos.new_zeros((h, width, *pos.shape[1:]))
        out[:, 0] = pos
        out[owner, slot] = neg
        mask = valid.view(h, width, *([1] * (pos.dim() - 1)))
        return (scale * out).masked_fill(~mask, float("-inf"))

    pos, sub = text.select(rows), shapes.select(rows)
    target = torch.zeros(h, dtype=torch.long, device=owner.device)
    loss = torch.zeros((), device=owner.device)
    if global_weight > 0:
        s = F.normalize(sub.global_.float(), dim=-1)  # (H, D)
        pos_g = (s * pos.global_.float()).sum(-1)  # (H,)
        neg_g = (s[owner] * negatives.global_.float()).sum(-1)  # (M,)
        loss = global_weight * F.cross_entropy(logits(logit_scale, pos_g, neg_g), target)
    haf = getattr(model, "haf", None)
    if haf is not None and fine_weight > 0:
        lp = haf.paired_level_scores(pos, sub)  # (H, L)
        ln = haf.paired_level_scores(negatives, sub.select(owner))  # (M, L)
        if fine_loss == "fused":
            lp, ln = haf.fine(lp)[:, None], haf.fine(ln)[:, None]
        scale = logit_scale if fine_logit_scale is None else fine_logit_scale
        fine = logits(scale, lp.float(), ln.float())  # (H, width, L)
        loss = loss + fine_weight * F.cross_entropy(fine, target[:, None].expand(-1, fine.shape[2]))
    return loss
