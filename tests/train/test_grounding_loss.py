"""The grounding loss against the evaluation's pointing game, and its effect on a trained model."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from daer.data.build import build_synth
from daer.data.dataset import ShapeTextDataset
from daer.eval.grounding import measure_grounding, token_shares
from daer.models.model import load_model
from daer.models.pointops import knn
from daer.train.grounding_loss import TokenAttributeMasks, grounding_loss
from daer.train.train_config import TrainConfig
from daer.train.trainer import train


def _case(seed: int, b: int = 3, t: int = 4, n: int = 64, sizes: tuple[int, ...] = (16, 4)):
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(b, n, 3, generator=g) * 2 - 1
    centers = [points[:, torch.randperm(n, generator=g)[:m]] for m in sizes]
    attention = [torch.rand(b, t, m, generator=g).softmax(-1) for m in sizes]
    labels = torch.randint(0, 8, (b, n), generator=g, dtype=torch.int32)
    masks = [{0: 1, 2: 4}, {}, {1: 2, 3: 8}]  # bit 8 is on no point: left out
    return attention, centers, points, labels, masks


def _reference(attention, centers, points, labels, masks) -> float:
    """Per (token, level): the evaluation's token_shares on explain-style point attention; mean of −log."""
    losses = []
    for att, cen in zip(attention, centers, strict=True):
        for b, tm in enumerate(masks):
            nearest = knn(points[b : b + 1], cen[b : b + 1], 1)[0, :, 0]
            point_att = (att[b][:, nearest] * cen.shape[1]).numpy()  # (T, N), as DaerModel.explain maps it
            for _, share, _ in token_shares(point_att, labels[b].numpy(), tm):
                losses.append(-math.log(share))
    return float(np.mean(losses))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_is_the_pointing_game_share(seed):
    case = _case(seed)
    loss = grounding_loss(*case)
    assert loss is not None
    assert float(loss) == pytest.approx(_reference(*case), rel=1e-5)


def test_nothing_named_or_nothing_scorable_gives_none():
    attention, centers, points, labels, _ = _case(0)
    assert grounding_loss(attention, centers, points, labels, [{}, {}, {}]) is None
    everywhere = torch.full_like(labels, 1)  # the part covers the whole shape: no evidence, left out
    assert grounding_loss(attention, centers, points, everywhere, [{0: 1}, {}, {}]) is None


def test_descending_the_loss_moves_attention_onto_the_part():
    """Gradient descent on attention logits reaches the best possible loss: all mass on the token
    whose cell holds the largest share of the part (the reference's optimum)."""
    attention, centers, points, labels, masks = _case(3)
    best = []
    for cen in centers:
        for b, tm in enumerate(masks):
            nearest = knn(points[b : b + 1], cen[b : b + 1], 1)[0, :, 0]
            for bit in tm.values():
                on = (labels[b] & bit) != 0
                if on.any():
                    cells = [float(on[nearest == j].float().mean()) for j in nearest.unique()]
                    best.append(-math.log(max(cells)))
    optimum = float(np.mean(best))
    logits = [a.log().clone().requires_grad_(True) for a in attention]
    opt = torch.optim.Adam(logits, lr=0.5)
    before = float(grounding_loss(attention, centers, points, labels, masks))
    for _ in range(200):
        loss = grounding_loss([x.softmax(-1) for x in logits], centers, points, labels, masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(grounding_loss([x.softmax(-1) for x in logits], centers, points, labels, masks))
    assert before > optimum + 0.3 and after < optimum + 0.02, (before, after, optimum)


def test_swap_caption_words_name_the_swapped_part(synth):
    """In a swap caption, the swapped word names the same part as the true one ("no" of "no armrests" on a
    chair that has armrests points at its armrests): the target that ``ground_swaps`` trains."""
    from daer.data.shards import iter_records
    from daer.synth.generator import attribute_mask
    from daer.train.hard_negatives import SwapNegatives

    recs = list(iter_records(synth, "train", columns=["category", "attributes", "captions"]))
    swaps = SwapNegatives([r.id for r in recs], [r.captions for r in recs])
    masks = TokenAttributeMasks(content_only=True)
    checked = 0
    for i, r in enumerate(recs):
        for negatives in swaps.options[i].values():
            for neg in negatives:
                stated = swaps.attributes(i, neg)
                (name,) = [a for a in stated if stated[a] != r.attributes[a]]
                words = re.findall(r"[a-z0-9]+", neg.lower())  # whole words, as a word-level tokenizer gives
                named = masks(i, r.category, stated, neg, words)
                assert attribute_mask(r.category, name) in named.values(), (neg, name, named)
                checked += 1
    assert checked > 20


def test_token_masks_name_the_attribute_words():
    masks = TokenAttributeMasks(content_only=True)
    words = ["chair", "four", "legs", "armrests"]
    named = masks(0, "chair", {"legs": "4", "armrests": "yes"}, "a chair with four legs and armrests", words)
    assert set(named) == {1, 3}  # "four" (not "legs", which every leg count says) and "armrests"
    assert named[1] != named[3]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    build_synth(folder, 240, n_points=256, workers=1, progress=False)
    return folder


def test_labelled_data_set_serves_labels_in_point_order(synth):
    ds = ShapeTextDataset.from_folder(synth, "train", labels=True)
    plain = ShapeTextDataset.from_folder(synth, "train")
    assert plain.point_attrs is None
    assert ds.point_attrs is not None and ds.point_attrs.shape == ds.points.shape[:2]
    batch = ds.__getitems__([0, 1])
    assert batch.point_attrs.shape == (2, ds.points.shape[1]) and len(batch.attributes) == 2
    assert batch.point_attrs.any()


@pytest.mark.parametrize("swaps", [False, True])
def test_trainer_adds_the_weighted_term(synth, tmp_path, swaps):
    cfg = TrainConfig(data=str(synth), out=str(tmp_path / "run"), config="tiny", steps=3, batch_size=16,
                      ground_weight=0.5, ground_swaps=swaps, log_every=1, progress=False, dap=False)  # fmt: skip
    train(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    lines = [e for e in lines if "loss" in e]
    assert lines and all(e["loss_ground"] > 0 for e in lines)
    parts = ("loss_global", "loss_fine", "loss_swap")
    assert all(e["loss"] == pytest.approx(sum(e[k] for k in parts) + 0.5 * e["loss_ground"], rel=1e-5) for e in lines)


@pytest.mark.parametrize(("field", "key"), [("part_weight", "loss_part"), ("part_swap_weight", "loss_part_swap")])
def test_trainer_adds_the_part_terms(synth, tmp_path, field, key):
    cfg = TrainConfig(data=str(synth), out=str(tmp_path / "run"), config="tiny", steps=3, batch_size=32,
                      ground_weight=0.0, log_every=1, progress=False, dap=False, **{field: 2.0})  # fmt: skip
    train(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    lines = [e for e in lines if "loss" in e]
    assert lines and all(e[key] > 0 for e in lines)
    parts = ("loss_global", "loss_fine", "loss_swap")
    assert all(e["loss"] == pytest.approx(sum(e[k] for k in parts) + 2.0 * e[key], rel=1e-5) for e in lines)


def test_grounding_loss_trains_words_to_look_at_their_parts(synth, tmp_path):
    """Same steps, with and without the term: the pointing-game score on training shapes must rise."""
    scores = {}
    for weight in (0.0, 5.0):  # the tiny model needs a strong weight to move in 80 steps
        out = tmp_path / f"run-{weight}"
        cfg = TrainConfig(data=str(synth), out=str(out), config="tiny", steps=80, batch_size=32, lr=5e-3,
                          warmup_steps=10, log_every=20, ckpt_every=1000, progress=False, dap=False,
                          ground_weight=weight)  # fmt: skip
        train(cfg)
        result = measure_grounding(load_model(out), synth, "train", max_shapes=100)
        assert result is not None and result.score is not None
        scores[weight] = (result.score, result.chance)
    (plain, chance), (grounded, _) = scores[0.0], scores[5.0]
    assert grounded > plain + 0.1 and grounded > chance + 0.15, scores


def _readout_case(seed: int, b: int = 4, t: int = 3, n: int = 48, d: int = 16):
    from daer.models.haf import HierarchicalAttentionFusion

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    haf = HierarchicalAttentionFusion(d, 3, 8, tau=[1.0] * 3, level_weight=[1 / 3] * 3, mix=0.5)
    points = torch.rand(b, n, 3, generator=g) * 2 - 1
    sizes = (12, 4, 2)
    centers = [points[:, torch.randperm(n, generator=g)[:m]] for m in sizes]
    levels = [torch.randn(b, m, d, generator=g) for m in sizes]
    tokens = torch.randn(b, t, d, generator=g)
    labels = torch.zeros(b, n, dtype=torch.int32)
    labels[:, : n // 4] = 1  # bit 1: the trunk, a quarter of each shape
    labels[:, n // 4 : n // 2] = 2  # bit 2: the crown
    named = [  # token -> (bit, attribute key, value); shape 3 names the crown only, with nobody to contrast
        {0: (1, "tree.trunk", "tall"), 2: (2, "tree.crown", "cone")},
        {1: (1, "tree.trunk", "short")},
        {0: (1, "tree.trunk", "tall"), 1: (4, "tree.trunk", "short")},  # bit 4 is on no point: left out
        {2: (2, "tree.crown", "cone")},
    ]
    return haf, tokens, levels, centers, points, labels, named


def _readout_reference(haf, tokens, levels, centers, points, labels, named, scale, local_levels) -> float:
    """Loops: each row's part read out point by point, then a softmax over the rows of its attribute."""
    rows = [(b, t, *m) for b, items in enumerate(named) for t, m in items.items()]
    rows = [r for r in rows if bool(((labels[r[0]] & r[2]) != 0).any())]
    losses = []
    for lvl in local_levels:
        us, rs = [], []
        for b, t, bit, _, _ in rows:
            nearest = knn(points[b : b + 1], centers[lvl][b : b + 1], 1)[0, :, 0]
            share = torch.zeros(centers[lvl].shape[1])
            for p in range(points.shape[1]):
                if int(labels[b, p]) & bit:
                    share[nearest[p]] += 1
            share = share / share.sum()
            v = haf.value[lvl](levels[lvl][b])  # (N_l, d)
            rs.append(sum(share[j] * v[j] for j in range(len(share))))
            us.append(haf.expect[lvl](tokens[b, t]))
        for i, (_, _, _, key, value) in enumerate(rows):
            group = [j for j, r in enumerate(rows) if r[3] == key]
            if all(rows[j][4] == value for j in group):
                continue
            logit = {j: scale * float(torch.cosine_similarity(us[i], rs[j], dim=0)) for j in group}
            pos = sum(math.exp(logit[j]) for j in group if rows[j][4] == value)
            losses.append(-math.log(pos / sum(math.exp(v) for v in logit.values())))
    return float(np.mean(losses))


@pytest.mark.parametrize("seed", [0, 1])
def test_part_readout_loss_against_loops(seed):
    from daer.train.grounding_loss import part_readout_loss

    case = _readout_case(seed)
    with torch.no_grad():
        got = part_readout_loss(*case, scale=5.0)
        want = _readout_reference(*case, scale=5.0, local_levels=(0, 1))
    assert got is not None and float(got) == pytest.approx(want, rel=1e-4)
    haf, tokens, levels, centers, points, labels, named = case
    alone = [named[0], {}, {}, named[3]]  # trunk named once, crown twice with one value: nothing to contrast
    assert part_readout_loss(haf, tokens, levels, centers, points, labels, alone, 5.0) is None


def test_part_swap_loss_against_loops():
    from daer.train.grounding_loss import part_swap_loss

    haf, tokens, levels, centers, points, labels, _ = _readout_case(3)
    d = tokens.shape[-1]
    g = torch.Generator().manual_seed(7)
    shape = torch.tensor([0, 1, 2, 3])
    bits = torch.tensor([1, 2, 4, 1], dtype=labels.dtype)  # set 2 names a part with no points; set 3 no swap
    counts = [3, 2, 2, 1]
    words = torch.randn(sum(counts), d, generator=g)
    owner = torch.repeat_interleave(torch.arange(4), torch.tensor(counts))
    with torch.no_grad():
        got = part_swap_loss(haf, levels, centers, points, labels, shape, bits, words, owner, 4.0)
        losses = []
        for lvl in (0, 1):
            at = 0
            for b, bit, c in zip(shape.tolist(), bits.tolist(), counts, strict=True):
                cand, at = words[at : at + c], at + c
                part = [p for p in range(points.shape[1]) if int(labels[b, p]) & bit]
                if c < 2 or not part:
                    continue
                nearest = knn(points[b : b + 1], centers[lvl][b : b + 1], 1)[0, :, 0]
                share = torch.zeros(centers[lvl].shape[1])
                for p in part:
                    share[nearest[p]] += 1 / len(part)
                r = sum(share[j] * haf.value[lvl](levels[lvl][b, j]) for j in range(len(share)))
                logits = [4.0 * float(torch.cosine_similarity(haf.expect[lvl](w), r, dim=0)) for w in cand]
                losses.append(-logits[0] + math.log(sum(math.exp(x) for x in logits)))
    assert got is not None and float(got) == pytest.approx(float(np.mean(losses)), rel=1e-4)
    only_true = torch.arange(4)  # one candidate per set: nothing to choose between
    assert part_swap_loss(haf, levels, centers, points, labels, shape, bits, words[:4], only_true, 4.0) is None
