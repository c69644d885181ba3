"""Align3D-Synth part labels (``point_attrs``): checked against the geometry that produced them.

Each point's bits say which attributes of its category the part under it expresses (SYNTH_SPEC.md, "Part
labels"). The labels must not change a single point, must use only the category's own bits, must be empty
for parts that are absent ("no armrests"), and must sit where the geometry puts the part.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from daer.data.build import build_synth
from daer.data.sampling import normalize_unit_sphere, sample_surface, sample_surface_faces
from daer.data.shards import iter_records, load_point_attrs
from daer.synth.generator import attribute_bits, attribute_mask, generate_record
from daer.synth.geometry.parts import box, face_labels, merge, tag, tag_faces, without_faces
from daer.synth.geometry_registry import builder_for
from daer.synth.taxonomy import CATEGORIES, TAXONOMY, combinations
from tests.synth.test_geometry_furniture import clusters

N = 2048

# (category, attribute, value) whose part does not exist at that value: no point may carry the bit.
ABSENT = [
    ("chair", "armrests", "no"), ("sofa", "armrests", "no"), ("bench", "backrest", "no"),
    ("bed", "headboard", "no"), ("bed", "footboard", "no"), ("bookshelf", "back_panel", "no"),
    ("cabinet", "legs", "no"), ("mug", "handle", "no"), ("bowl", "foot", "no"), ("vase", "handles", "0"),
    ("bottle", "cap", "no"), ("rocket", "boosters", "0"), ("house", "chimney", "no"),
]  # fmt: skip


def labelled(category: str, attributes: dict[str, str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) normalised points and (N,) uint16 labels of one built shape, as the generator makes them."""
    mesh = builder_for(category)(attributes, np.random.default_rng(seed))
    points, _, faces = sample_surface_faces(mesh, N, np.random.default_rng(10_000 + seed))
    sets, index = face_labels(mesh)
    masks = np.array([attribute_bits(category, s) for s in sets], dtype=np.uint16)
    return normalize_unit_sphere(points), masks[index[faces]]


def has(labels: np.ndarray, category: str, attribute: str) -> np.ndarray:
    return (labels & attribute_mask(category, attribute)) != 0


def test_tags_follow_faces_through_merge_and_face_removal() -> None:
    a = tag(box((0, 0, 0), (1, 1, 1)), "legs")
    b = tag(tag(box((3, 0, 0), (1, 1, 1)), "legs"), "leg_shape")  # tags add up
    c = box((6, 0, 0), (1, 1, 1))  # untagged
    mesh = merge([a, b, c])
    sets, index = face_labels(mesh)
    per_face = [sets[i] for i in index]
    assert per_face == [{"legs"}] * 12 + [{"legs", "leg_shape"}] * 12 + [frozenset()] * 12
    nested_sets, nested_index = face_labels(merge([mesh, tag(box((9, 0, 0), (1, 1, 1)), "back")]))
    assert [nested_sets[i] for i in nested_index] == per_face + [{"back"}] * 12
    top = tag_faces(box((0, 0, 0), (1, 1, 1)), np.arange(12) < 4, "seat")
    open_top = without_faces(top, (0.0, 0.0, 1.0))
    assert len(face_labels(open_top)[1]) == len(open_top.faces) == 10
    broken = tag(box((0, 0, 0), (1, 1, 1)), "legs")
    broken.metadata["daer_part_attrs"] = (broken.metadata["daer_part_attrs"][0], np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="tag after editing"):
        face_labels(broken)
    plain = trimesh.creation.box()
    assert face_labels(plain)[0] == (frozenset(),) and not face_labels(plain)[1].any()


def test_unknown_attribute_names_are_a_builder_bug() -> None:
    assert attribute_bits("chair", {"legs", "leg_shape"}) == 0b1001
    with pytest.raises(ValueError, match="unknown attribute"):
        attribute_bits("chair", {"legz"})


@pytest.mark.parametrize("category", CATEGORIES)
def test_labels_leave_points_unchanged_and_use_only_the_categorys_bits(category: str) -> None:
    width = len(TAXONOMY[category])
    for k in range(3):
        index = CATEGORIES.index(category) + 19 * k
        rec = generate_record(index, 0, n_points=512)
        assert rec.point_attrs is not None and rec.point_attrs.dtype == np.uint16 and rec.point_attrs.shape == (512,)
        assert int(rec.point_attrs.max()) < 1 << width
        # the points are exactly what the unlabelled sampling path gives
        mesh = builder_for(category)(rec.attributes, np.random.default_rng([0, index, 0]))
        points, normals = sample_surface(mesh, 512, np.random.default_rng([0, index, 1]))
        np.testing.assert_array_equal(rec.points, normalize_unit_sphere(points))
        again = generate_record(index, 0, n_points=512)
        np.testing.assert_array_equal(rec.point_attrs, again.point_attrs)
    for attributes in combinations(category):
        _, labels = labelled(category, attributes, 0)
        assert labels.any(), (category, attributes)  # every shape has some labelled part
        for name, value in attributes.items():
            if (category, name, value) not in ABSENT:
                assert has(labels, category, name).any(), (category, name, value)


@pytest.mark.parametrize(("category", "attribute", "value"), ABSENT)
def test_absent_parts_label_no_point(category: str, attribute: str, value: str) -> None:
    for attributes in combinations(category):
        if attributes[attribute] == value:
            for seed in (0, 1):
                _, labels = labelled(category, attributes, seed)
                assert not has(labels, category, attribute).any(), (attributes, seed)


def test_chair_labels_sit_on_their_parts() -> None:
    for attributes in combinations("chair"):
        for seed in (0, 1, 2):
            p, labels = labelled("chair", attributes, seed)
            legs, back = has(labels, "chair", "legs"), has(labels, "chair", "back")
            arms = has(labels, "chair", "armrests")
            np.testing.assert_array_equal(legs, has(labels, "chair", "leg_shape"))  # the same parts
            assert not (legs & back).any() and not (legs & arms).any()
            seat = labels == 0
            assert p[legs, 2].max() < p[seat, 2].min() + 1e-4  # legs end under the seat
            assert p[back, 2].max() > p[seat, 2].max()  # the back rises above it
            assert p[back, 1].mean() > p[seat, 1].mean()  # at the rear (+y)
            legs_xy = p[legs][:, :2]
            assert len(clusters(legs_xy, eps=0.1)) == int(attributes["legs"]), (attributes, seed)
            if attributes["armrests"] == "yes":
                assert p[arms, 2].min() >= p[seat, 2].max() - 1e-4  # armrests stand on the seat


def test_other_categories_labels_sit_on_their_parts() -> None:
    for seed in (0, 1):
        for attributes in combinations("table"):
            p, labels = labelled("table", attributes, seed)
            legs, top = has(labels, "table", "legs"), has(labels, "table", "top")
            np.testing.assert_array_equal(legs, has(labels, "table", "height"))
            assert p[legs, 2].max() <= p[top, 2].min() + 1e-4  # legs hold the top up
        for attributes in combinations("stool"):
            p, labels = labelled("stool", attributes, seed)
            legs, seat = has(labels, "stool", "legs"), has(labels, "stool", "seat")
            assert (has(labels, "stool", "height") >= legs).all()  # every leg point also marks the height
            assert p[legs, 2].max() <= p[seat, 2].min() + 0.03  # splayed legs' tilted end caps poke in a little
            assert np.quantile(p[legs, 2], 0.95) < p[seat, 2].min()
        for attributes in combinations("bottle"):
            p, labels = labelled("bottle", attributes, seed)
            body, neck, cap = (has(labels, "bottle", a) for a in ("body", "neck", "cap"))
            assert (body ^ neck ^ cap).all() and not (body & neck).any()  # one region per point, all covered
            assert p[body, 2].max() <= p[neck, 2].min() + 1e-4
            if cap.any():
                assert p[neck, 2].max() <= p[cap, 2].min() + 1e-4
        for attributes in combinations("rocket"):
            p, labels = labelled("rocket", attributes, seed)
            nose, fins = has(labels, "rocket", "nose"), has(labels, "rocket", "fins")
            assert p[nose, 2].min() > p[fins, 2].max()  # the nose is at the top, the fins at the base
        for attributes in combinations("lamp"):
            p, labels = labelled("lamp", attributes, seed)
            base, pole, shade = (has(labels, "lamp", a) for a in ("base", "height", "shade"))
            assert p[base, 2].max() <= p[pole, 2].min() + 1e-4 and p[shade, 2].mean() > p[pole, 2].mean()
        for attributes in combinations("vase"):
            p, labels = labelled("vase", attributes, seed)
            body, neck = has(labels, "vase", "body"), has(labels, "vase", "neck")
            assert p[neck, 2].mean() > p[body, 2].mean() and not (body & neck).any()


def test_a_built_data_set_stores_the_labels(tmp_path) -> None:
    manifest = build_synth(tmp_path, 25, n_points=128, workers=1, shard_size=10, progress=False)
    assert manifest["point_attrs"] == 25
    recs = list(iter_records(tmp_path))
    for i, rec in enumerate(recs):
        np.testing.assert_array_equal(rec.point_attrs, generate_record(i, 0, n_points=128).point_attrs)
    ids, labels, has = load_point_attrs(tmp_path, "train")
    assert has.all() and ids == [r.id for r in recs if r.split == "train"]
    np.testing.assert_array_equal(labels, np.stack([r.point_attrs for r in recs if r.split == "train"]))
