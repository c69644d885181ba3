"""Attribute-swap negatives: what they contain, what they never contain, and the loss term."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from daer.data.build import build_synth
from daer.errors import BadInputError
from daer.models.model import create_model
from daer.synth.captions import render_caption
from daer.synth.generator import caption_draws, generate_record, shape_spec
from daer.synth.splits import split_of
from daer.synth.taxonomy import TAXONOMY, combinations
from daer.train.hard_negatives import SwapNegatives, swap_loss
from daer.train.train_config import TrainConfig
from daer.train.trainer import train

SEED = 0


@pytest.fixture(scope="module")
def records():
    recs = [generate_record(i, SEED, n_points=64) for i in range(60)]
    return [r for r in recs if r.split == "train"]


def _in_scope(category: str, full: dict, stated: dict, scope: str) -> bool:
    """The obvious reference: the swap's full combination trained, some trained combination stating the
    same values, or anything."""
    if scope == "train":
        return split_of(category, full, SEED) == "train"
    if scope == "stated":
        return any(split_of(category, c, SEED) == "train" and all(c[k] == v for k, v in stated.items())
                   for c in combinations(category))  # fmt: skip
    return True


@pytest.mark.parametrize("scope", ["train", "stated", "free"])
def test_every_negative_is_one_swap_in_its_scope(records, scope):
    swaps = SwapNegatives([r.id for r in records], [r.captions for r in records], scope)
    assert 0.4 < swaps.coverage() <= 1.0
    n = 0
    for pos, (r, opts) in enumerate(zip(records, swaps.options, strict=True)):
        index = int(r.id.rsplit("-", 1)[1])
        category, full = shape_spec(index, SEED)
        draws = {d.text: d for d in caption_draws(index, SEED, len(r.captions))}
        assert set(opts) == set(r.captions)
        for caption, negatives in opts.items():
            d = draws[caption]
            allowed = {
                render_caption(category, {**d.attributes, a: v}, d.template, d.group, d.variant)
                for a in d.attributes
                for v in TAXONOMY[category][a]
                if v != full[a] and _in_scope(category, {**full, a: v}, {**d.attributes, a: v}, scope)
            } - {caption}
            assert set(negatives) == allowed  # all of them, and nothing else
            for neg in negatives:  # the values a negative states: the shape's, with exactly one swapped
                stated = swaps.attributes(pos, neg)
                changed = [a for a in full if stated[a] != full[a]]
                assert len(changed) == 1 and changed[0] in d.attributes
                assert neg == render_caption(
                    category, {a: stated[a] for a in d.attributes}, d.template, d.group, d.variant
                )
            n += len(negatives)
    assert n > 0 and len(swaps.captions()) <= n


def test_scopes_nest_and_free_names_held_out_combinations(records):
    ids, caps = [r.id for r in records], [r.captions for r in records]
    by = {s: SwapNegatives(ids, caps, s) for s in ("train", "stated", "free")}
    for i in range(len(records)):
        for caption in by["train"].options[i]:
            train, stated, free = (set(by[s].options[i][caption]) for s in ("train", "stated", "free"))
            assert train <= stated <= free
    held_out = [
        neg for i, r in enumerate(records) for negs in by["free"].options[i].values() for neg in negs
        if split_of(r.category, by["free"].attributes(i, neg), SEED) != "train"
    ]  # fmt: skip
    assert held_out  # free swaps do name held-out combinations (the point of the scope)
    with pytest.raises(BadInputError, match="swap scope"):
        SwapNegatives(ids, caps, "everything")


def test_pick_is_seeded_and_foreign_shapes_have_none(records):
    r = records[0]
    swaps = SwapNegatives([r.id, "my-own-mesh"], [r.captions, ["a chair with three legs"]])
    first = r.captions[0]
    assert swaps.pick(0, first, np.random.default_rng(5)) == swaps.pick(0, first, np.random.default_rng(5))
    assert set(swaps.pick(0, first, np.random.default_rng(5))) <= set(swaps.options[0][first])
    many = swaps.pick(0, first, np.random.default_rng(5), k=100)
    assert sorted(many) == sorted(swaps.options[0][first])  # k beyond the options: all of them, once each
    two = swaps.pick(0, first, np.random.default_rng(1), k=2)
    assert len(two) == min(2, len(many)) and len(set(two)) == len(two)
    assert swaps.pick(1, "a chair with three legs", np.random.default_rng(0)) == []
    assert swaps.pick(0, "a caption it never had", np.random.default_rng(0)) == []


@pytest.mark.parametrize(("mode", "global_weight"), [("global", 1.0), ("haf", 1.0), ("haf", 0.0)])
def test_swap_loss_against_a_direct_computation(mode, global_weight):
    """global_weight 0 (TrainConfig.swap_global off): only the fine term is left."""
    torch.manual_seed(0)
    model = create_model("tiny", mode=mode)
    pts = torch.randn(4, 256, 3)
    pts = pts / pts.norm(dim=-1).amax(1)[:, None, None]
    shapes = model.encode_points(pts)
    text = model.encode_text(["a tall lamp", "a short lamp", "a mug", "a mug with a handle"])
    negatives = model.encode_text(["a short lamp", "a mug without a handle", "a short lamp with a cone shade"])
    owner = torch.tensor([0, 1, 0])  # row 0 has two negatives, row 3 one: a 3-way and a 2-way choice
    rows = torch.tensor([0, 3])
    scale, fine_scale = torch.tensor(10.0, requires_grad=True), torch.tensor(7.0)
    got = swap_loss(model, text, negatives, owner, shapes, rows, scale, "levels", 0.5, fine_scale, global_weight)
    want = 0.0
    for h, r in enumerate(rows.tolist()):
        s = shapes.global_[r]
        negs = [m for m, o in enumerate(owner.tolist()) if o == h]
        g = torch.stack([s @ text.global_[r]] + [s @ negatives.global_[m] for m in negs])
        want = want - global_weight * torch.log_softmax(scale * g, 0)[0] / 2
        if mode == "haf":
            one = shapes.select(slice(r, r + 1))
            lp = model.haf.paired_level_scores(text.select([r]), one)[0]  # (L,)
            ln = [model.haf.paired_level_scores(negatives.select([m]), one)[0] for m in negs]
            f = torch.stack([lp, *ln])  # (1 + K, L)
            want = want - 0.5 * torch.log_softmax(fine_scale * f, 0)[0].mean() / 2
    assert got.item() == pytest.approx(float(want.detach()), rel=1e-5)
    got.backward()
    assert (model.points.global_proj.weight.grad is not None) == (global_weight > 0)
    if global_weight > 0:
        assert scale.grad is not None and torch.isfinite(scale.grad)  # padding never leaks a NaN into the scale


def test_trainer_adds_the_term_on_synth_data(tmp_path):
    data = tmp_path / "synth"
    build_synth(data, 120, n_points=256, workers=1, progress=False)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), config="tiny", steps=3, batch_size=16,
                      swap_negatives=1.0, ground_weight=0.0, log_every=1, progress=False, dap=False)  # fmt: skip
    train(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(e["loss_swap"] > 0 for e in lines)
    assert all(e["loss"] == pytest.approx(e["loss_global"] + e["loss_fine"] + e["loss_swap"], rel=1e-5) for e in lines)
