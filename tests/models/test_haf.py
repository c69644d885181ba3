"""HAF: the batched, chunked pairwise score against a loop-per-pair reference; masking; the policy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from daer.errors import BadInputError
from daer.models.haf import HierarchicalAttentionFusion
from daer.models.point_encoder import PointFeatures
from daer.models.text_encoder import TextFeatures

D, L, d = 12, 3, 8
SIZES = (10, 6, 3)


def make_haf(chunk: int = 1 << 20, readout: str = "cosine") -> HierarchicalAttentionFusion:
    torch.manual_seed(0)
    haf = HierarchicalAttentionFusion(D, L, d, [0.5, 1.0, 2.0], [0.2, 0.3, 0.5], 0.4, chunk=chunk, readout=readout)
    if haf.evidence is not None:  # non-zero gates, so the evidence term is exercised
        for lin in haf.evidence:
            torch.nn.init.normal_(lin.weight, std=0.5)
            torch.nn.init.normal_(lin.bias, std=0.5)
    return haf.double()


def make_text(b: int, lengths: list[int], seed: int = 1) -> TextFeatures:
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    mask = torch.arange(t)[None] < torch.tensor(lengths)[:, None]
    tokens = torch.randn(b, t, D, generator=g, dtype=torch.float64) * mask[..., None]
    glob = F.normalize(torch.randn(b, D, generator=g, dtype=torch.float64), dim=-1)
    return TextFeatures(tokens, mask, glob, [[f"w{i}" for i in range(n)] for n in lengths])


def make_shapes(b: int, seed: int = 2) -> PointFeatures:
    g = torch.Generator().manual_seed(seed)
    levels = [torch.randn(b, n, D, generator=g, dtype=torch.float64) for n in SIZES]
    centers = [torch.randn(b, n, 3, generator=g, dtype=torch.float64) for n in SIZES]
    return PointFeatures(levels, centers, F.normalize(torch.randn(b, D, generator=g, dtype=torch.float64), dim=-1))


def reference_pair(haf: HierarchicalAttentionFusion, text: TextFeatures, i: int, shapes: PointFeatures, j: int, tau):
    """The formula, one text-shape pair and one token at a time."""
    n_tok = int(text.mask[i].sum())
    imp = torch.stack([haf.importance(text.tokens[i, t]).squeeze() for t in range(n_tok)])
    w = torch.softmax(imp, 0)
    out = []
    for lvl in range(L):
        k = haf.key[lvl].weight @ shapes.levels[lvl][j].T  # (d, N)
        v = (haf.value or haf.key)[lvl].weight @ shapes.levels[lvl][j].T  # (d, N): the keys in the plain readout
        s = 0.0
        for t in range(n_tok):
            q = haf.query[lvl].weight @ text.tokens[i, t]  # (d,)
            u = (haf.expect or haf.query)[lvl].weight @ text.tokens[i, t]  # (d,): the query in the plain readout
            logits = (q @ k) / (math.sqrt(d) * float(tau[lvl]))  # (N,)
            att = v @ torch.softmax(logits, 0)  # attended value (d,)
            score = torch.dot(u, att) / (u.norm() * att.norm())
            if haf.evidence is not None:
                gate = haf.evidence[lvl](text.tokens[i, t]).squeeze()
                score = score + gate * torch.sigmoid(logits).mean()
            s = s + w[t] * score
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("readout", ["cosine", "value"])
@pytest.mark.parametrize("chunk", [1 << 20, 7, 100, 450])  # one block; 1x1; 2 texts x 1; 4 texts x 2 shapes
def test_pairwise_matches_loop_reference(chunk: int, readout: str) -> None:
    haf = make_haf(chunk, readout)
    text, shapes = make_text(4, [3, 5, 1, 4]), make_shapes(3)
    with torch.no_grad():
        got = haf.level_scores(text, shapes)
        assert got.shape == (4, 3, L)
        for i in range(4):
            for j in range(3):
                torch.testing.assert_close(got[i, j], reference_pair(haf, text, i, shapes, j, haf.tau))


@pytest.mark.parametrize("readout", ["cosine", "value"])
def test_paired_and_attention_agree_with_pairwise(readout: str) -> None:
    haf = make_haf(readout=readout)
    text, shapes = make_text(3, [2, 4, 3]), make_shapes(3)
    with torch.no_grad():
        full = haf.level_scores(text, shapes)
        paired = haf.paired_level_scores(text, shapes)
        torch.testing.assert_close(paired, torch.diagonal(full).T)
        attn = haf.attention(text, shapes)
    assert [tuple(a.shape) for a in attn] == [(3, 4, n) for n in SIZES]
    for a in attn:
        torch.testing.assert_close(a.sum(-1), torch.ones(3, 4, dtype=torch.float64))
    with pytest.raises(BadInputError):
        haf.paired_level_scores(text, make_shapes(2))
    assert haf.level_scores(text, make_shapes(3).select(slice(0, 0))).shape == (3, 0, L)


@pytest.mark.parametrize("readout", ["cosine", "value"])
def test_index_pairs_match_the_pairwise_matrix(readout: str) -> None:
    haf = make_haf(readout=readout)
    text, shapes = make_text(3, [2, 4, 3]), make_shapes(4)
    ti, si = torch.tensor([0, 2, 2, 1, 0]), torch.tensor([3, 0, 1, 1, 3])
    with torch.no_grad():
        full = haf.level_scores(text, shapes)  # (3, 4, L)
        got = haf.paired_level_scores(text, shapes, pairs=(ti, si))
    torch.testing.assert_close(got, full[ti, si])


def test_padding_is_ignored() -> None:
    haf = make_haf()
    text, shapes = make_text(2, [2, 4]), make_shapes(2)
    noisy = TextFeatures(text.tokens.clone(), text.mask, text.global_, text.words)
    noisy.tokens[0, 2:] = 1e3  # garbage in the padding of caption 0
    with torch.no_grad():
        torch.testing.assert_close(haf.level_scores(noisy, shapes), haf.level_scores(text, shapes))
        w = haf.token_weights(text)
    assert torch.equal(w[0, 2:], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, dtype=torch.float64))


def test_tau_override_and_its_limits() -> None:
    haf = make_haf()
    text, shapes = make_text(2, [3, 2]), make_shapes(2)
    with torch.no_grad():
        tau = torch.tensor([0.7, 3.0, 0.2])
        over = haf.level_scores(text, shapes, tau=tau)
        haf.set_policy(tau=tau)
        torch.testing.assert_close(over, haf.level_scores(text, shapes))
        # τ → 0: cosine with the best-matching key; τ → ∞: cosine with the mean key
        sharp = haf.level_scores(text, shapes, tau=torch.full((L,), 1e-6))
        flat = haf.level_scores(text, shapes, tau=torch.full((L,), 1e6))
        w = haf.token_weights(text)
        for lvl in range(L):
            q = haf.query[lvl](text.tokens)  # (2, T, d)
            k = haf.key[lvl](shapes.levels[lvl])  # (2, N, d)
            for i in range(2):
                for j in range(2):
                    best = k[j][(q[i] @ k[j].T).argmax(-1)]  # (T, d): each token's highest-dot key
                    want_sharp = (F.cosine_similarity(q[i], best, dim=-1) * w[i]).sum()
                    want_flat = (F.cosine_similarity(q[i], k[j].mean(0)[None], dim=-1) * w[i]).sum()
                    torch.testing.assert_close(sharp[i, j, lvl], want_sharp)
                    torch.testing.assert_close(flat[i, j, lvl], want_flat, atol=1e-5, rtol=0)
    assert not torch.allclose(sharp, flat)


def test_fuse_and_policy() -> None:
    haf = make_haf()
    levels, glob = torch.rand(4, 5, L, dtype=torch.float64), torch.rand(4, 5, dtype=torch.float64)
    fine = levels @ torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    torch.testing.assert_close(haf.fuse(levels, glob), 0.6 * glob + 0.4 * fine)
    torch.testing.assert_close(haf.fuse(levels[:, 0], glob[:, 0]), (0.6 * glob + 0.4 * fine)[:, 0])
    haf.set_policy(mix=0.0)
    torch.testing.assert_close(haf.fuse(levels, glob), glob)
    haf.set_policy(mix=1.0, level_weight=[0, 1, 0])
    torch.testing.assert_close(haf.fuse(levels, glob), levels[..., 1])
    assert haf.get_policy() == {"tau": [0.5, 1.0, 2.0], "level_weight": [0.0, 1.0, 0.0], "mix": 1.0}
    for bad in (
        {"tau": [1, 0, 1]},
        {"tau": [1, 1]},
        {"level_weight": [-1, 1, 1]},
        {"mix": 1.5},
        {"tau": [1, float("nan"), 1]},
    ):
        with pytest.raises(BadInputError):
            haf.set_policy(**bad)
    with pytest.raises(BadInputError):
        haf.fuse(levels, glob[:, :2])
    # the policy is state (saved with the model) but never a trainable parameter
    assert {"tau", "level_weight", "mix"} <= set(haf.state_dict())
    assert not any(n in {"tau", "level_weight", "mix"} for n, _ in haf.named_parameters())


@pytest.mark.parametrize("readout", ["cosine", "value"])
def test_gradients_reach_projections_and_features(readout: str) -> None:
    haf = make_haf(chunk=7, readout=readout)
    text, shapes = make_text(3, [2, 3, 1]), make_shapes(2)
    text.tokens.requires_grad_(True)
    shapes.levels[0].requires_grad_(True)
    haf.fine(haf.level_scores(text, shapes)).sum().backward()
    assert text.tokens.grad is not None and shapes.levels[0].grad is not None
    for name, p in haf.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_value_readout_can_count_and_register_absence() -> None:
    """What the plain readout cannot express: a score that grows with how many tokens match, and
    a word whose score a matching part lowers. One "legs" token over shapes with 1, 3 and 6 leg tokens."""
    haf = make_haf(readout="value")
    with torch.no_grad():
        for mods in (haf.query, haf.key, haf.value, haf.expect):
            for lin in mods:
                lin.weight.copy_(torch.eye(d, D, dtype=torch.float64))
        leg = torch.zeros(D, dtype=torch.float64)
        leg[0] = 4.0
        other = torch.zeros(D, dtype=torch.float64)
        other[1] = 4.0

        def shape(n_legs: int) -> PointFeatures:
            lv = [torch.stack([leg] * n_legs + [other] * (n - n_legs))[None] for n in (10, 10, 10)]
            return PointFeatures(lv, [torch.zeros(1, 10, 3, dtype=torch.float64)] * 3, torch.ones(1, D) / D**0.5)

        shapes = PointFeatures.cat([shape(1), shape(3), shape(6)])
        word = TextFeatures(leg[None, None], torch.ones(1, 1, dtype=torch.bool), torch.ones(1, D) / D**0.5, [["legs"]])
        plain = make_haf(readout="cosine")
        for lin in [*plain.query, *plain.key]:
            lin.weight.copy_(torch.eye(d, D, dtype=torch.float64))
        flat = plain.level_scores(word, shapes)[0, :, 0]  # the best-match detector: about the same for all
        for lin in haf.evidence:
            lin.weight.zero_()
            lin.bias.fill_(1.0)  # "more evidence is better"
        more = haf.level_scores(word, shapes)[0, :, 0]
        for lin in haf.evidence:
            lin.bias.fill_(-1.0)  # a negated word: "no legs"
        fewer = haf.level_scores(word, shapes)[0, :, 0]
    assert float(flat.max() - flat.min()) < 0.05
    assert more[0] < more[1] < more[2] and float(more[2] - more[0]) > 0.1
    assert fewer[0] > fewer[1] > fewer[2]
