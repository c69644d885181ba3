"""Part drop: one labelled part removed, checked point by point against a loop, and served by the data set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from daer.data.build import build_synth
from daer.data.dataset import ShapeTextDataset
from daer.errors import BadInputError
from daer.models.pointops import precompute_groups
from daer.synth.captions import value_phrases
from daer.synth.part_drop import PartDrop
from daer.synth.taxonomy import TAXONOMY
from tests.synth.test_part_labels import labelled

CHAIR = {"legs": "4", "back": "tall", "armrests": "yes", "leg_shape": "round"}


def _dropped_attribute(labels: np.ndarray, view_labels: np.ndarray, category: str) -> list[str]:
    """Attributes with labelled points before and none after (by a loop over points and bits)."""
    out = []
    for b, name in enumerate(TAXONOMY[category]):
        before = any(int(v) >> b & 1 for v in labels)
        after = any(int(v) >> b & 1 for v in view_labels)
        if before and not after:
            out.append(name)
    return out


@pytest.mark.parametrize("absent", [False, True])
def test_view_removes_one_part_and_captions_what_is_left(absent):
    points, labels = labelled("chair", CHAIR, seed=3)
    drop = PartDrop(p=1.0, absent=absent)
    seen = set()
    for seed in range(40):
        view = drop.apply(points, labels, "chair", CHAIR, np.random.default_rng(seed))
        assert view is not None and view.points.shape == points.shape and view.labels.shape == labels.shape
        gone = _dropped_attribute(labels, view.labels, "chair")
        seen.add(tuple(gone))
        # every served point is an original point that carries none of the removed bits
        originals = {tuple(p) for p, v in zip(points, labels, strict=True) if not any(int(v) >> b & 1 for b in
                     [list(TAXONOMY["chair"]).index(n) for n in gone])}  # fmt: skip
        assert all(tuple(p) in originals for p in view.points)
        for name in gone:
            if absent and name == "armrests":
                assert view.attributes[name] == "no"
                assert any(phrase in view.caption for phrase in value_phrases("chair", name, "no"))
            else:
                assert name not in view.attributes
        for name in set(CHAIR) - set(gone):
            assert view.attributes[name] == CHAIR[name]
        assert view.defining == (gone != ["armrests"])  # a chair needs its back and legs, not its armrests
    # legs carry legs + leg_shape; armrests and back are parts of their own
    assert seen == {("legs", "leg_shape"), ("back",), ("armrests",)}


def test_optional_only_removes_optional_parts_and_says_so():
    points, labels = labelled("chair", CHAIR, seed=3)
    for seed in range(20):
        view = PartDrop(p=1.0, optional_only=True).apply(points, labels, "chair", CHAIR, np.random.default_rng(seed))
        assert view is not None and _dropped_attribute(labels, view.labels, "chair") == ["armrests"]
        assert view.attributes == {**CHAIR, "armrests": "no"}
    tree = {"crown": "cone", "trunk": "short"}
    points, labels = labelled("tree", tree, seed=1)
    assert PartDrop(p=1.0, optional_only=True).apply(points, labels, "tree", tree, np.random.default_rng(0)) is None
    no_arms = {**CHAIR, "armrests": "no"}
    points, labels = labelled("chair", no_arms, seed=2)
    assert PartDrop(p=1.0, optional_only=True).apply(points, labels, "chair", no_arms, np.random.default_rng(0)) is None


def test_large_parts_stay_and_chance_is_respected():
    points, labels = labelled("tree", {"crown": "cone", "trunk": "short"}, seed=1)
    for seed in range(20):
        view = PartDrop(p=1.0).apply(points, labels, "tree", {"crown": "cone", "trunk": "short"},
                                     np.random.default_rng(seed))  # fmt: skip
        assert view is not None and view.attributes == {"crown": "cone"}  # the crown covers ~90%: never removed
    rng = np.random.default_rng(0)
    hits = sum(PartDrop(p=0.25).apply(points, labels, "tree", {"crown": "cone", "trunk": "short"}, rng) is not None
               for _ in range(400))  # fmt: skip
    assert 60 <= hits <= 140
    assert PartDrop(p=1.0).apply(points, labels, "not-a-synth-category", {}, rng) is None
    with pytest.raises(BadInputError, match="chance"):
        PartDrop(p=1.5)


def test_dataset_serves_views_with_fresh_groups(tmp_path):
    build_synth(tmp_path, 24, n_points=256, workers=1, shard_size=10, progress=False)

    def groups(p: torch.Tensor):
        return precompute_groups(p, [32, 8], [8, 4])

    ds = ShapeTextDataset.from_folder(tmp_path, "train", labels=True, groups_fn=groups, part_drop=PartDrop(p=0.5))
    plain = ShapeTextDataset.from_folder(tmp_path, "train", labels=True, groups_fn=groups)
    keys = [(0, i) for i in range(len(ds))]
    batch, ref = ds.__getitems__(keys), plain.__getitems__(keys)
    changed = [r for r in range(len(ds)) if batch.captions[r] != ref.captions[r]]
    assert 0 < len(changed) < len(ds)
    fresh = groups(batch.points)
    for r in range(len(ds)):
        dropped = not torch.equal(batch.points[r], ref.points[r])
        assert dropped == (r in changed)
        expected = fresh if dropped else ref.groups
        assert torch.equal(batch.groups.centers[0][r], expected.centers[0][r])
        assert (batch.point_attrs[r] != ref.point_attrs[r]).any() == dropped
    again = ds.__getitems__(keys)
    assert again.captions == batch.captions and torch.equal(again.points, batch.points)
    assert batch.defining is not None and plain.__getitems__(keys).defining is None
    assert not batch.defining[[r for r in range(len(ds)) if r not in changed]].any()
    one = ds[keys[changed[0]]]
    assert one["caption"] == batch.captions[changed[0]] and torch.equal(one["points"], batch.points[changed[0]])
    with pytest.raises(BadInputError, match="part labels"):
        ShapeTextDataset.from_folder(tmp_path, "train", part_drop=PartDrop())


def test_generic_captions_name_what_is_left_but_never_the_category():
    from daer.synth.phrases import PHRASES

    points, labels = labelled("chair", CHAIR, seed=3)
    nouns = PHRASES["chair"].nouns
    kinds = set()
    for seed in range(30):
        view = PartDrop(p=1.0, generic=True).apply(points, labels, "chair", CHAIR, np.random.default_rng(seed))
        assert view is not None
        kinds.add(view.defining)
        if view.defining:
            assert view.caption.startswith("an object with ")
            assert not any(noun in view.caption for noun in nouns)
            for name, value in view.attributes.items():
                assert any(p in view.caption for p in value_phrases("chair", name, value))
        else:  # only the armrests went: still a chair, still named
            assert any(noun in view.caption for noun in nouns)
    assert kinds == {True, False}
