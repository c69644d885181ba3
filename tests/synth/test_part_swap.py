"""Part swap: one labelled part taken from a donor of the same category, checked by counting the parts the
view shows, by the placement rules on boxes, and as the data set serves it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from daer.data.build import build_synth
from daer.data.dataset import ShapeTextDataset
from daer.errors import BadInputError
from daer.models.pointops import precompute_groups
from daer.synth.captions import value_phrases
from daer.synth.part_swap import PartSwap, register, swap_mask
from daer.synth.taxonomy import TAXONOMY, combinations, combo_key
from tests.synth.test_part_labels import has, labelled

CHAIR = {"legs": "4", "back": "tall", "armrests": "yes", "leg_shape": "round"}
DONOR = {"legs": "3", "back": "short", "armrests": "no", "leg_shape": "square"}


def _components(points: np.ndarray, radius: float = 0.06) -> int:
    """Connected groups of points (x, y only) whose neighbours lie within ``radius``, by union-find."""
    xy = points[:, :2]
    parent = list(range(len(xy)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    close = np.argwhere(np.linalg.norm(xy[:, None] - xy[None], axis=-1) < radius)
    for i, j in close:
        parent[root(int(i))] = root(int(j))
    return len({root(i) for i in range(len(xy))})


def _donor(category: str, attributes: dict[str, str], seed: int):
    points, labels = labelled(category, attributes, seed=seed)
    return lambda rng: (points, labels, attributes)


def test_swapped_legs_are_the_donors_and_hang_under_the_seat():
    points, labels = labelled("chair", CHAIR, seed=3)
    swap = PartSwap(p=1.0, tries=50)
    legs_seen = 0
    for seed in range(30):
        view = swap.apply(points, labels, "chair", CHAIR, np.random.default_rng(seed), _donor("chair", DONOR, 5))
        assert view is not None and view.points.shape == points.shape and view.labels.shape == labels.shape
        assert np.abs(np.linalg.norm(view.points, axis=1).max() - 1.0) < 1e-5  # normalised like every shape
        changed = {n for n in CHAIR if view.attributes[n] != CHAIR[n]}
        assert changed and all(view.attributes[n] == DONOR[n] for n in changed)
        assert changed in ({"legs", "leg_shape"}, {"back"}, {"armrests"})  # leg points carry both leg bits
        for name in changed:
            assert any(p in view.caption for p in value_phrases("chair", name, DONOR[name]))
        if changed == {"legs", "leg_shape"}:
            legs_seen += 1
            leg_points = view.points[has(view.labels, "chair", "legs")]
            assert _components(leg_points) == 3  # the view shows the donor's three legs, not the four
            rest = view.points[~has(view.labels, "chair", "legs")]
            assert leg_points[:, 2].max() <= rest[:, 2].min() + 0.05  # under the seat, touching it
            assert leg_points[:, 2].max() >= rest[:, 2].min() - 0.05
        if changed == {"armrests"}:
            assert not has(view.labels, "chair", "armrests").any()  # the donor has none: they are gone
    assert legs_seen >= 5
    assert _components(points[has(labels, "chair", "legs")]) == 4  # the counting check sees the original's


def test_register_keeps_inside_places_and_scaled_distances_from_faces():
    kept = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    donor_kept = np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]])  # twice as large: scale 0.5
    below = np.array([[0.5, 0.5, -2.0], [1.5, 1.5, 0.0]])  # centred in x, y; hangs under the box in z
    out = register(kept, donor_kept, below)
    np.testing.assert_allclose(out, [[0.25, 0.25, -1.0], [0.75, 0.75, 0.0]])
    above = np.array([[1.0, 1.0, 2.0], [1.0, 1.0, 3.0]])
    np.testing.assert_allclose(register(kept, donor_kept, above), [[0.5, 0.5, 1.0], [0.5, 0.5, 1.5]])
    assert register(kept, donor_kept, np.zeros((0, 3))).shape == (0, 3)


def test_sizes_between_kept_parts_and_forbidden_combinations_are_never_shown():
    desk = {"shade": "cone", "base": "round", "height": "desk"}
    floor = {"shade": "sphere", "base": "square", "height": "floor"}
    points, labels = labelled("lamp", desk, seed=1)
    donor = _donor("lamp", floor, 2)
    changed = set()
    for seed in range(40):
        view = PartSwap(p=1.0).apply(points, labels, "lamp", desk, np.random.default_rng(seed), donor)
        if view is not None:
            changed.add(tuple(n for n in desk if view.attributes[n] != desk[n]))
    assert changed == {("shade",), ("base",)}  # the pole sits between shade and base: its height never swaps
    stool, tall = {"legs": "3", "seat": "round", "height": "low"}, {"legs": "4", "seat": "round", "height": "tall"}
    points, labels = labelled("stool", stool, seed=1)
    view = PartSwap(p=1.0).apply(points, labels, "stool", stool, np.random.default_rng(0), _donor("stool", tall, 2))
    assert view is not None and view.attributes == tall  # legs hang below the seat: they carry their height
    everything_else = frozenset(combo_key("lamp", c) for c in combinations("lamp") if c != desk)
    forbid = PartSwap(p=1.0, tries=20, forbidden=everything_else)
    assert all(forbid.apply(points, labels, "lamp", desk, np.random.default_rng(s), donor) is None for s in range(10))


def test_swap_mask_is_closed_over_shared_labels():
    points, labels = labelled("chair", CHAIR, seed=3)
    names = list(TAXONOMY["chair"])
    mask = swap_mask(labels, labels, names.index("legs"))
    assert mask == (1 << names.index("legs")) | (1 << names.index("leg_shape"))
    assert swap_mask(labels, labels, names.index("back")) == 1 << names.index("back")


def test_chance_bad_settings_and_non_synth_shapes():
    points, labels = labelled("chair", CHAIR, seed=3)
    donor, rng = _donor("chair", DONOR, 5), np.random.default_rng(0)
    hits = sum(PartSwap(p=0.25).apply(points, labels, "chair", CHAIR, rng, donor) is not None for _ in range(400))
    assert 60 <= hits <= 140
    assert PartSwap(p=1.0).apply(points, labels, "not-a-synth-category", {}, rng, donor) is None
    assert PartSwap(p=1.0).apply(points, labels, "chair", {"legs": "4"}, rng, donor) is None  # not a full combination
    assert PartSwap(p=1.0).apply(points, labels, "chair", CHAIR, rng, lambda r: None) is None  # no donor
    same = _donor("chair", CHAIR, 4)  # a donor with the same values changes no caption: no view
    assert PartSwap(p=1.0).apply(points, labels, "chair", CHAIR, rng, same) is None
    for bad in (dict(p=1.5), dict(max_cover=1.0), dict(tries=0)):
        with pytest.raises(BadInputError, match="part swap"):
            PartSwap(**bad)


def test_dataset_serves_swapped_views_from_its_own_category(tmp_path):
    build_synth(tmp_path, 60, n_points=256, workers=1, shard_size=20, progress=False)

    def groups(p: torch.Tensor):
        return precompute_groups(p, [32, 8], [8, 4])

    ds = ShapeTextDataset.from_folder(tmp_path, "train", labels=True, groups_fn=groups, part_swap=PartSwap(p=1.0))
    plain = ShapeTextDataset.from_folder(tmp_path, "train", labels=True, groups_fn=groups)
    keys = [(0, i) for i in range(len(ds))]
    batch, ref = ds.__getitems__(keys), plain.__getitems__(keys)
    swapped = [r for r in range(len(ds)) if batch.attributes[r] != ref.attributes[r]]
    assert swapped
    fresh = groups(batch.points)
    for r in swapped:
        category = batch.categories[r]
        assert combo_key(category, batch.attributes[r]) in {combo_key(category, c) for c in combinations(category)}
        assert torch.equal(batch.groups.centers[0][r], fresh.centers[0][r])
        assert batch.captions[r] != ref.captions[r]
    again = ds.__getitems__(keys)
    assert again.captions == batch.captions and torch.equal(again.points, batch.points)
    with pytest.raises(BadInputError, match="part labels"):
        ShapeTextDataset.from_folder(tmp_path, "train", part_swap=PartSwap())
