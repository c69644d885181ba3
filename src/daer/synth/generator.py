"""The Align3D-Synth per-shape generator: index -> (category, combination) -> mesh -> points and captions.

Everything about shape ``index`` under ``seed`` is a pure function of the pair, so a data set of any size
is the prefix of a bigger one, shards can be built in any order or in parallel, and rebuilding is exact.

- Category: ``CATEGORIES[index % 19]``, so categories are balanced at every size.
- Combination: the k-th shape of a category (k = index // 19) takes position ``k % n`` of a seeded
  permutation of the category's ``n`` combinations, a fresh permutation every ``n`` shapes. Combinations
  are therefore balanced too (within one per category), and a small data set already covers as many
  combinations as it can.
- Geometry, point sampling, captions and augmentation each draw from their own stream
  ``default_rng([seed, index, stream])``, so changing the point count does not change the mesh or captions.
- Part labels: each builder tags its parts with the attributes they express; the label of the face a point
  was sampled from becomes the point's ``point_attrs`` bits (:func:`attribute_bits`). Labels take no draws,
  so the points are the same with or without them.
"""

from __future__ import annotations

import functools
import re
import zlib

import numpy as np

from daer.data.record import ShapeRecord
from daer.data.sampling import normalize_unit_sphere, sample_surface_faces
from daer.errors import BadInputError
from daer.synth.captions import CaptionDraw, draw_captions
from daer.synth.geometry.parts import face_labels
from daer.synth.geometry_registry import builder_for
from daer.synth.splits import split_of
from daer.synth.taxonomy import CATEGORIES, TAXONOMY, combinations

SYNTH_GENERATOR = "align3d-synth"  # the manifest's ``generator`` of an Align3D-Synth data set
_GEOMETRY, _SAMPLING, _CAPTIONS, _AUGMENT = 0, 1, 2, 3


@functools.cache
def _combos(category: str) -> tuple[dict[str, str], ...]:
    return tuple(combinations(category))


def _check_index_seed(index: int, seed: int) -> None:
    if index < 0:
        raise BadInputError(f"shape index must be >= 0, got {index}")
    if seed < 0:
        raise BadInputError(f"seed must be >= 0, got {seed}")


def shape_spec(index: int, seed: int) -> tuple[str, dict[str, str]]:
    """The category and full attribute combination of shape ``index`` (cheap: no geometry)."""
    _check_index_seed(index, seed)
    category = CATEGORIES[index % len(CATEGORIES)]
    combos = _combos(category)
    cycle, pos = divmod(index // len(CATEGORIES), len(combos))
    perm = np.random.default_rng([seed, zlib.crc32(category.encode()), cycle]).permutation(len(combos))
    return category, dict(combos[int(perm[pos])])


def shape_id(index: int, seed: int) -> str:
    """The record id of shape ``index``: ``synth-<seed>-<index, 8 digits>``."""
    return f"synth-{seed}-{index:08d}"


_SHAPE_ID = re.compile(r"^synth-(\d+)-(\d+)$")


def parse_shape_id(sid: str) -> tuple[int, int] | None:
    """(seed, index) of an Align3D-Synth record id (the inverse of :func:`shape_id`), None for any other id."""
    m = _SHAPE_ID.match(sid)
    return (int(m.group(1)), int(m.group(2))) if m else None


def caption_draws(index: int, seed: int, n_captions: int = 3) -> list[CaptionDraw]:
    """The captions of shape ``index`` with their templates and variants (what ``generate_record`` stores).

    Train shapes use the train templates, val and test shapes the held-out ones. Cheap: no geometry.
    """
    category, attributes = shape_spec(index, seed)
    group = "train" if split_of(category, attributes, seed) == "train" else "heldout"
    return draw_captions(category, attributes, group, np.random.default_rng([seed, index, _CAPTIONS]), n_captions)


def attribute_bits(category: str, names: frozenset[str] | set[str]) -> int:
    """The ``point_attrs`` mask of a part expressing these attributes: bit i for the i-th attribute of the category
    (taxonomy order). Unknown names are a builder bug and raise ValueError."""
    order = list(TAXONOMY[category])
    unknown = sorted(set(names) - set(order))
    if unknown:
        raise ValueError(f"{category} parts tagged with unknown attribute(s) {unknown}; it has {order}")
    return sum(1 << order.index(n) for n in names)


def attribute_mask(category: str, attribute: str) -> int:
    """The ``point_attrs`` bit of one attribute of a category."""
    return attribute_bits(category, {attribute})


def _yaw(points: np.ndarray, normals: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    angle = rng.uniform(0.0, 2.0 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)  # about +z (up)
    return points @ rot.T, normals @ rot.T


def generate_record(
    index: int,
    seed: int,
    n_points: int = 2048,
    *,
    n_captions: int = 3,
    yaw: bool = False,
    jitter: float = 0.0,
) -> ShapeRecord:
    """Build shape ``index`` of the Align3D-Synth data set with this seed.

    Args:
        index: position in the data set (>= 0).
        seed: data set seed (>= 0); fixes combinations, splits, geometry and captions.
        n_points: surface points to sample (area-weighted).
        n_captions: captions per shape; the first names every attribute. Train shapes use the train
            templates, val and test shapes the held-out ones.
        yaw: rotate by a random angle about the up axis (augmentation, off by default).
        jitter: standard deviation of Gaussian noise added to the points, clipped at 3 sigma (0 = off).

    Returns:
        A record with (n_points, 3) float32 points in the unit sphere, (n_points, 3) float32 unit normals
        and (n_points,) uint16 part labels ``point_attrs``.
    """
    _check_index_seed(index, seed)
    if n_points < 1:
        raise BadInputError(f"n_points must be >= 1, got {n_points}")
    if not (np.isfinite(jitter) and jitter >= 0.0):
        raise BadInputError(f"jitter must be a finite number >= 0, got {jitter}")
    category, attributes = shape_spec(index, seed)
    split = split_of(category, attributes, seed)

    mesh = builder_for(category)(dict(attributes), np.random.default_rng([seed, index, _GEOMETRY]))
    points, normals, faces = sample_surface_faces(mesh, n_points, np.random.default_rng([seed, index, _SAMPLING]))
    label_sets, face_label = face_labels(mesh)
    masks = np.array([attribute_bits(category, s) for s in label_sets], dtype=np.uint16)
    point_attrs = masks[face_label[faces]]  # (N,) uint16
    points = normalize_unit_sphere(points)  # (N, 3) float32
    normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    if yaw or jitter > 0.0:
        aug = np.random.default_rng([seed, index, _AUGMENT])
        if yaw:
            points, normals = _yaw(points, normals, aug)
        if jitter > 0.0:
            noise = np.clip(aug.normal(0.0, jitter, points.shape), -3.0 * jitter, 3.0 * jitter)
            points = points + noise

    captions = [d.text for d in caption_draws(index, seed, n_captions)]
    return ShapeRecord(
        id=shape_id(index, seed),
        category=category,
        attributes=dict(attributes),
        captions=captions,
        split=split,
        points=np.ascontiguousarray(points, dtype=np.float32),
        normals=np.ascontiguousarray(normals, dtype=np.float32),
        source="synth",
        point_attrs=np.ascontiguousarray(point_attrs, dtype=np.uint16),
    )
