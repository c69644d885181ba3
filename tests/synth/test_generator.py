"""Align3D-Synth per-shape generator: balanced specs, value coverage, determinism, record layout."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from daer.errors import BadInputError
from daer.synth.captions import n_templates, render_caption
from daer.synth.generator import caption_draws, generate_record, shape_id, shape_spec
from daer.synth.splits import split_of
from daer.synth.taxonomy import CATEGORIES, TAXONOMY, combinations, combo_key


def first_index(category: str) -> int:
    return CATEGORIES.index(category)


def test_specs_are_balanced_over_categories_and_combinations():
    cycle = 19 * 18 * 2  # two full cycles of the largest category (table: 18 combinations)
    specs = [shape_spec(i, 0) for i in range(cycle)]
    assert Counter(c for c, _ in specs) == {c: cycle // 19 for c in CATEGORIES}
    for category in CATEGORIES:
        counts = Counter(combo_key(c, a) for c, a in specs if c == category)
        assert len(counts) == len(combinations(category))
        assert max(counts.values()) - min(counts.values()) <= 1, category
    assert [shape_spec(i, 0) for i in range(50)] == specs[:50]
    assert [shape_spec(i, 1) for i in range(200)] != specs[:200]


def test_every_category_value_appears_and_is_seen_in_train_at_2000():
    seen: dict[tuple[str, str, str], set[str]] = {}
    for i in range(2000):
        category, attrs = shape_spec(i, 0)
        split = split_of(category, attrs, 0)
        for name, value in attrs.items():
            seen.setdefault((category, name, value), set()).add(split)
    want = {(c, n, v) for c in CATEGORIES for n, vals in TAXONOMY[c].items() for v in vals}
    assert set(seen) == want
    assert all("train" in splits for splits in seen.values())
    assert sum("test" in s for s in seen.values()) > len(want) // 3


def test_caption_draws_use_the_group_of_the_split():
    for i in range(200):
        category, attrs = shape_spec(i, 0)
        draws = caption_draws(i, 0)
        group = "train" if split_of(category, attrs, 0) == "train" else "heldout"
        assert draws[0].attributes == attrs and all(d.group == group for d in draws)
        for d in draws:
            assert d.template < n_templates(group)
            assert render_caption(category, d.attributes, d.template, group, d.variant) == d.text


@pytest.mark.parametrize("category", CATEGORIES)
def test_generate_record_layout_and_determinism(category):
    i = first_index(category) + 19 * 3
    rec = generate_record(i, 0, n_points=512)
    assert rec.id == shape_id(i, 0) == f"synth-0-{i:08d}" and rec.source == "synth"
    assert (rec.category, rec.attributes) == shape_spec(i, 0)
    assert rec.split == split_of(rec.category, rec.attributes, 0)
    assert rec.captions == [d.text for d in caption_draws(i, 0)] and len(rec.captions) == 3
    assert rec.points.shape == (512, 3) and rec.points.dtype == np.float32
    assert rec.normals is not None and rec.normals.shape == (512, 3) and rec.normals.dtype == np.float32
    assert np.isfinite(rec.points).all() and np.isfinite(rec.normals).all()
    radius = np.linalg.norm(rec.points, axis=1)
    assert radius.max() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rec.normals, axis=1), 1.0, atol=1e-4)

    again = generate_record(i, 0, n_points=512)
    np.testing.assert_array_equal(rec.points, again.points)
    np.testing.assert_array_equal(rec.normals, again.normals)
    assert rec.captions == again.captions

    other_seed = generate_record(i, 1, n_points=512)
    assert not np.array_equal(rec.points, other_seed.points)
    assert generate_record(i, 0, n_points=256).captions == rec.captions  # point count leaves captions alone


@pytest.mark.parametrize("category", CATEGORIES)
def test_augmentations_are_off_by_default_and_behave(category):
    i = first_index(category)
    plain = generate_record(i, 0, n_points=256)
    turned = generate_record(i, 0, n_points=256, yaw=True)
    assert not np.allclose(plain.points, turned.points)
    np.testing.assert_allclose(turned.points[:, 2], plain.points[:, 2], atol=1e-6)  # yaw keeps height
    np.testing.assert_allclose(
        np.linalg.norm(turned.points[:, :2], axis=1), np.linalg.norm(plain.points[:, :2], axis=1), atol=1e-5
    )
    np.testing.assert_allclose(np.linalg.norm(turned.normals, axis=1), 1.0, atol=1e-4)
    shaken = generate_record(i, 0, n_points=256, jitter=0.01)
    delta = np.abs(shaken.points - plain.points)
    assert 0 < delta.max() <= 0.03 + 1e-6


@pytest.mark.parametrize(
    "call",
    [
        lambda: shape_spec(-1, 0),
        lambda: shape_spec(0, -3),
        lambda: generate_record(0, 0, n_points=0),
        lambda: generate_record(0, 0, jitter=-0.1),
    ],
)
def test_bad_input(call):
    with pytest.raises(BadInputError):
        call()


def test_shape_ids_parse_back_and_foreign_ids_do_not():
    from daer.synth.generator import parse_shape_id, shape_id

    assert parse_shape_id(shape_id(123, 7)) == (7, 123)
    for foreign in ("my-chair", "synth-1-", "synth--3", "synth-1-2-3", "xsynth-1-2"):
        assert parse_shape_id(foreign) is None
