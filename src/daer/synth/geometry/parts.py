"""Shared mesh primitives for the Align3D-Synth builders: boxes, cylinders, cones, spheres, lathes.

All points are world coordinates (+z up, front facing -y). Every primitive is a closed triangle mesh;
builders concatenate them with :func:`merge` (parts may overlap, only the surface is sampled).

Part labels (the ground truth for grounding, SYNTH_SPEC.md "Part labels"): a builder marks each part with
the names of the attributes it expresses, :func:`tag` for a whole part or :func:`tag_faces` for a region of
one (a bottle's neck on a single lofted outline). The labels live per face in ``mesh.metadata`` and are
carried through :func:`merge` and :func:`without_faces`; :func:`face_labels` reads them back. Tagging never
touches the geometry or a random stream, so labelled builds are bit-identical to unlabelled ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import trimesh
from trimesh.creation import box as _box
from trimesh.creation import cylinder as _cylinder
from trimesh.creation import icosphere, revolve
from trimesh.geometry import align_vectors

Vec = Sequence[float] | np.ndarray
LABELS_KEY = "daer_part_attrs"  # metadata: (label sets, per-face index into them)


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One float drawn uniformly from ``[lo, hi)``: the nuisance range of a dimension."""
    return float(rng.uniform(lo, hi))


def box(center: Vec, size: Vec) -> trimesh.Trimesh:
    """An axis-aligned box of extents ``size`` (x, y, z) centred at ``center``."""
    mesh = _box(extents=np.asarray(size, dtype=float))
    mesh.apply_translation(np.asarray(center, dtype=float))
    return mesh


def box_between(lo: Vec, hi: Vec) -> trimesh.Trimesh:
    """An axis-aligned box spanning the corners ``lo`` and ``hi``."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    return box((lo + hi) / 2.0, np.abs(hi - lo))


def _segment_transform(p0: Vec, p1: Vec) -> tuple[np.ndarray, float]:
    """Rigid transform taking the +z axis from the origin onto ``p0 -> p1``, and the segment length."""
    p0, p1 = np.asarray(p0, dtype=float), np.asarray(p1, dtype=float)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    if length <= 1e-12:
        raise ValueError(f"degenerate segment {p0.tolist()} -> {p1.tolist()}")
    matrix = align_vectors([0.0, 0.0, 1.0], axis / length)
    matrix[:3, 3] = p0
    return matrix, length


def cylinder_between(p0: Vec, p1: Vec, radius: float, sections: int = 16) -> trimesh.Trimesh:
    """A capped cylinder of ``radius`` whose axis runs from ``p0`` to ``p1``."""
    return _cylinder(radius=radius, sections=sections, segment=np.array([p0, p1], dtype=float))


def beam_between(p0: Vec, p1: Vec, width: float, depth: float) -> trimesh.Trimesh:
    """A box beam from ``p0`` to ``p1`` with cross-section ``width`` x ``depth`` (x, y before it is tilted)."""
    matrix, length = _segment_transform(p0, p1)
    mesh = _box(extents=[width, depth, length])
    mesh.apply_translation([0.0, 0.0, length / 2.0])
    mesh.apply_transform(matrix)
    return mesh


def lathe(profile: Vec, sections: int = 24) -> trimesh.Trimesh:
    """Revolve a (radius, z) polyline about the +z axis (start and end on the axis for a closed solid)."""
    return revolve(np.asarray(profile, dtype=float), sections=sections)


def cone_between(p0: Vec, p1: Vec, r0: float, r1: float, sections: int = 16) -> trimesh.Trimesh:
    """A capped frustum from radius ``r0`` at ``p0`` to ``r1`` at ``p1`` (``r1=0`` gives a cone)."""
    matrix, length = _segment_transform(p0, p1)
    mesh = lathe([(0.0, 0.0), (r0, 0.0), (r1, length), (0.0, length)], sections=sections)
    mesh.apply_transform(matrix)
    return mesh


def sphere(center: Vec, radius: float, subdivisions: int = 2) -> trimesh.Trimesh:
    """An icosphere of ``radius`` centred at ``center``."""
    mesh = icosphere(subdivisions=subdivisions, radius=radius)
    mesh.apply_translation(np.asarray(center, dtype=float))
    return mesh


def ellipsoid(center: Vec, radii: Vec, subdivisions: int = 2) -> trimesh.Trimesh:
    """An axis-aligned ellipsoid with semi-axes ``radii`` (x, y, z) centred at ``center``."""
    mesh = icosphere(subdivisions=subdivisions, radius=1.0)
    mesh.apply_scale(np.asarray(radii, dtype=float))
    mesh.apply_translation(np.asarray(center, dtype=float))
    return mesh


def rotate_z(mesh: trimesh.Trimesh, angle: float, about: Vec = (0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    """Rotate a mesh in place by ``angle`` radians about the vertical axis through ``about``; returns it."""
    mesh.apply_transform(trimesh.transformations.rotation_matrix(angle, [0.0, 0.0, 1.0], point=about))
    return mesh


def without_faces(mesh: trimesh.Trimesh, direction: Vec) -> trimesh.Trimesh:
    """Drop the faces whose normal points along ``direction`` (hidden caps that would only soak up samples)."""
    unit = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
    keep = mesh.face_normals @ unit < 0.99
    out = trimesh.Trimesh(mesh.vertices, mesh.faces[keep], process=False)
    sets, index = face_labels(mesh)
    _set_labels(out, sets, index[keep])
    return out


def face_labels(mesh: trimesh.Trimesh) -> tuple[tuple[frozenset[str], ...], np.ndarray]:
    """The part labels of a mesh: (label sets, (F,) int32 index of each face's set).

    An untagged mesh has one empty set for every face.
    """
    stored = mesh.metadata.get(LABELS_KEY)
    if stored is None:
        return (frozenset(),), np.zeros(len(mesh.faces), dtype=np.int32)
    if len(stored[1]) != len(mesh.faces):
        raise ValueError(f"part labels cover {len(stored[1])} faces, the mesh has {len(mesh.faces)}: tag after editing")
    return stored


def _set_labels(mesh: trimesh.Trimesh, sets: Sequence[frozenset[str]], index: np.ndarray) -> None:
    """Store labels, dropping unused and duplicate sets (so the stored form is canonical and small)."""
    used = np.unique(index)
    canon = sorted({sets[int(i)] for i in used}, key=lambda s: tuple(sorted(s)))
    where = {s: k for k, s in enumerate(canon)}
    remap = np.zeros(max(len(sets), 1), dtype=np.int32)
    for i in used:
        remap[int(i)] = where[sets[int(i)]]
    mesh.metadata[LABELS_KEY] = (tuple(canon), remap[index].astype(np.int32))


def tag_faces(mesh: trimesh.Trimesh, faces: np.ndarray, *attributes: str) -> trimesh.Trimesh:
    """Add attribute names to the labels of the selected faces (a boolean mask or indices); returns the mesh."""
    sets, index = face_labels(mesh)
    chosen = np.zeros(len(mesh.faces), dtype=bool)
    chosen[np.asarray(faces)] = True
    added = frozenset(attributes)
    new_sets = list(sets) + [s | added for s in sets]
    _set_labels(mesh, new_sets, np.where(chosen, index + len(sets), index))
    return mesh


def tag(mesh: trimesh.Trimesh, *attributes: str) -> trimesh.Trimesh:
    """Mark a whole part as expressing these attributes (added to any labels it has); returns the mesh."""
    return tag_faces(mesh, np.ones(len(mesh.faces), dtype=bool), *attributes)


def face_centers(mesh: trimesh.Trimesh) -> np.ndarray:
    """(F, 3) face centroids, computed without touching the mesh's caches (which ``merge`` would copy)."""
    return np.asarray(mesh.vertices)[np.asarray(mesh.faces)].mean(axis=1)


def merge(parts: Iterable[trimesh.Trimesh]) -> trimesh.Trimesh:
    """Concatenate parts into one mesh (no boolean union: overlapping parts keep their own faces).

    Face order is the parts' order, so each part's labels follow its faces into the merged mesh.
    """
    parts = [p for p in parts if p is not None and len(p.faces) > 0]
    if not parts:
        raise ValueError("no parts to merge")
    labels = [face_labels(p) for p in parts]
    out = trimesh.util.concatenate(parts)
    sets: list[frozenset[str]] = []
    index = []
    for part_sets, part_index in labels:
        index.append(part_index + len(sets))
        sets.extend(part_sets)
    index_all = np.concatenate(index)
    if len(index_all) != len(out.faces):
        raise ValueError(f"merge changed the face count ({len(index_all)} -> {len(out.faces)}): labels would drift")
    _set_labels(out, sets, index_all)
    return out
