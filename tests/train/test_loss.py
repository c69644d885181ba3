"""The contrastive loss against a per-row loop reference."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from daer.train.loss import ContrastiveLoss, gather_features, symmetric_info_nce


@dataclass
class Feats:
    tokens: torch.Tensor  # (B, T, D)
    mask: torch.Tensor  # (B, T)
    global_: torch.Tensor  # (B, D)
    words: list[str] | None = None  # per-item Python values (gathered as a list under DDP)

    def __len__(self) -> int:
        return self.global_.shape[0]


def max_sim(text: Feats, shapes: Feats) -> torch.Tensor:
    """A small token-to-token fine score: mean over valid text tokens of the best cosine to a shape token."""
    t = torch.nn.functional.normalize(text.tokens, dim=-1)
    s = torch.nn.functional.normalize(shapes.tokens, dim=-1)
    sim = torch.einsum("atd,bnd->abtn", t, s).amax(-1)  # (Bt, Bs, T)
    m = text.mask.float()[:, None, :]
    return (sim * m).sum(-1) / m.sum(-1)


def two_level(text: Feats, shapes: Feats) -> torch.Tensor:
    """Per-level scores (Bt, Bs, 2): best-token cosine and global-to-global dot product."""
    return torch.stack([max_sim(text, shapes), text.global_ @ shapes.global_.T / 4], dim=-1)


def naive_info_nce(scores: torch.Tensor, scale: float, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE with the diagonal as positives, one row at a time (pairs in ``exclude`` skipped)."""
    b = scores.shape[0]
    total = 0.0
    for i in range(b):
        keep = [j for j in range(b) if exclude is None or not exclude[i, j]]
        row = [scale * float(scores[i, j]) if j in keep else -math.inf for j in range(b)]
        col = [scale * float(scores[j, i]) if j in keep else -math.inf for j in range(b)]
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
        total += -col[i] + math.log(sum(math.exp(v) for v in col))
    return torch.tensor(total / (2 * b))


def make(b: int, t: int = 5, d: int = 8, seed: int = 0) -> tuple[Feats, Feats]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[:, 3:] = torch.rand(b, t - 3, generator=g) > 0.5
    text = Feats(torch.randn(b, t, d, generator=g), mask, torch.randn(b, d, generator=g))
    shapes = Feats(
        torch.randn(b, 7, d, generator=g), torch.ones(b, 7, dtype=torch.bool), torch.randn(b, d, generator=g)
    )
    return text, shapes


def test_global_loss_matches_loop_reference():
    text, shapes = make(6)
    scale = torch.tensor(1 / 0.07)
    out = ContrastiveLoss()(text, shapes, scale)
    cos = torch.nn.functional.normalize(text.global_, dim=-1) @ torch.nn.functional.normalize(shapes.global_, dim=-1).T
    ref = naive_info_nce(cos, float(scale))
    assert torch.allclose(out["loss"], ref, atol=1e-4)
    assert float(out["loss_fine"]) == 0.0


def test_fine_term_matches_loop_reference():
    text, shapes = make(5, seed=1)
    scale = torch.tensor(10.0)
    out = ContrastiveLoss(pair_score=max_sim, fine_weight=0.5)(text, shapes, scale, fine_logit_scale=torch.tensor(20.0))
    cos = torch.nn.functional.normalize(text.global_, dim=-1) @ torch.nn.functional.normalize(shapes.global_, dim=-1).T
    ref_g = naive_info_nce(cos, 10.0)
    ref_f = naive_info_nce(max_sim(text, shapes), 20.0)
    assert torch.allclose(out["loss_global"], ref_g, atol=1e-4)
    assert torch.allclose(out["loss_fine"], ref_f, atol=1e-4)
    assert torch.allclose(out["loss"], ref_g + 0.5 * ref_f, atol=1e-4)


def test_excluded_pairs_leave_the_contrast_on_both_sides():
    text, shapes = make(6, seed=2)
    exclude = torch.zeros(6, 6, dtype=torch.bool)
    exclude[0, 3:] = exclude[3:, 0] = True  # row 0 meets only shapes 1 and 2, and they only it
    exclude[4, 5] = exclude[5, 4] = True
    scale = torch.tensor(10.0)
    out = ContrastiveLoss(pair_score=two_level)(text, shapes, scale, exclude=exclude)
    cos = torch.nn.functional.normalize(text.global_, dim=-1) @ torch.nn.functional.normalize(shapes.global_, dim=-1).T
    assert torch.allclose(out["loss_global"], naive_info_nce(cos, 10.0, exclude), atol=1e-4)
    levels = two_level(text, shapes)
    ref_f = (naive_info_nce(levels[..., 0], 10.0, exclude) + naive_info_nce(levels[..., 1], 10.0, exclude)) / 2
    assert torch.allclose(out["loss_fine"], ref_f, atol=1e-4)
    assert float(out["loss_global"]) < float(ContrastiveLoss()(text, shapes, scale)["loss_global"])
    with pytest.raises(ValueError, match="positive"):
        ContrastiveLoss()(text, shapes, scale, exclude=torch.eye(6, dtype=torch.bool))


def two_level_pairs(text: Feats, shapes: Feats, pairs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """two_level of M index pairs, (M, 2), one pair at a time."""
    rows = [two_level(text, shapes)[int(i), int(j)] for i, j in zip(*pairs, strict=True)]
    return torch.stack(rows)


def naive_hard_info_nce(scores: torch.Tensor, cos: torch.Tensor, k: int, scale: float) -> torch.Tensor:
    """Symmetric InfoNCE of each row over its positive and its k globally closest other columns, by a loop."""
    b = scores.shape[0]
    total = 0.0
    for side_scores, side_cos in ((scores, cos), (scores.T, cos.T)):
        for i in range(b):
            others = sorted((j for j in range(b) if j != i), key=lambda j: -float(side_cos[i, j]))[:k]
            row = [scale * float(side_scores[i, j]) for j in [i, *others]]
            total += -row[0] + math.log(sum(math.exp(v) for v in row))
    return torch.tensor(total / (2 * b))


@pytest.mark.parametrize("k", [1, 3, 10])
def test_hard_fine_negatives_match_loop_reference(k: int):
    text, shapes = make(6, seed=5)
    scale = torch.tensor(8.0)
    loss = ContrastiveLoss(pair_score=two_level, fine_negatives=k, paired_score=two_level_pairs)
    out = loss(text, shapes, scale)
    cos = torch.nn.functional.normalize(text.global_, dim=-1) @ torch.nn.functional.normalize(shapes.global_, dim=-1).T
    levels = two_level(text, shapes)
    ref = (naive_hard_info_nce(levels[..., 0], cos, k, 8.0) + naive_hard_info_nce(levels[..., 1], cos, k, 8.0)) / 2
    assert torch.allclose(out["loss_fine"], ref, atol=1e-4)
    full = ContrastiveLoss(pair_score=two_level)(text, shapes, scale)["loss_fine"]
    assert (k >= 5) == bool(torch.allclose(out["loss_fine"], full, atol=1e-5))  # k >= B - 1: the whole batch


def test_hard_fine_negatives_skip_excluded_pairs_and_need_paired_scores():
    text, shapes = make(4, seed=6)
    exclude = torch.zeros(4, 4, dtype=torch.bool)
    exclude[0, 1:] = exclude[1:, 0] = True  # row 0 has no negative left: its slots are masked, not scored
    loss = ContrastiveLoss(pair_score=two_level, fine_negatives=2, paired_score=two_level_pairs)
    out = loss(text, shapes, torch.tensor(5.0), exclude=exclude)
    full = ContrastiveLoss(pair_score=two_level)(text, shapes, torch.tensor(5.0), exclude=exclude)
    assert torch.isfinite(out["loss_fine"])
    assert torch.allclose(out["loss_fine"], full["loss_fine"], atol=1e-5)  # 3 other rows, 2 free: all of them
    with pytest.raises(ValueError, match="paired_score"):
        ContrastiveLoss(pair_score=two_level, fine_negatives=2)


def test_per_level_scores_average_one_info_nce_per_level():
    text, shapes = make(6, seed=4)
    out = ContrastiveLoss(pair_score=two_level)(text, shapes, torch.tensor(5.0))
    levels = two_level(text, shapes)
    ref = (naive_info_nce(levels[..., 0], 5.0) + naive_info_nce(levels[..., 1], 5.0)) / 2
    assert torch.allclose(out["loss_fine"], ref, atol=1e-4)


def test_loss_falls_when_pairs_align_and_grad_reaches_temperature():
    text, shapes = make(8, seed=2)
    aligned = Feats(shapes.tokens, shapes.mask, text.global_ + 0.01 * shapes.global_)
    scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    loss_fn = ContrastiveLoss()
    random_loss = loss_fn(text, shapes, scale.exp())["loss"]
    aligned_loss = loss_fn(text, aligned, scale.exp())["loss"]
    assert aligned_loss < 0.1 < random_loss
    aligned_loss.backward()
    assert scale.grad is not None and scale.grad < 0  # sharper is better for aligned pairs


def test_symmetric_info_nce_uses_label_offsets():
    logits = torch.randn(3, 6)
    labels = torch.tensor([3, 4, 5])
    ref = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(symmetric_info_nce(logits, logits, labels), ref)


def test_batch_mismatch_is_refused_and_gather_is_identity_on_one_process():
    text, shapes = make(4)
    _, other = make(3)
    with pytest.raises(ValueError, match="differ"):
        ContrastiveLoss()(text, other, torch.tensor(1.0))
    assert gather_features(text) is text
