"""Surface sampling and normalisation shared by the generator and the importers."""

from __future__ import annotations

import numpy as np
import trimesh

from daer.errors import BadInputError


def sample_surface(mesh: trimesh.Trimesh, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``n`` points uniformly by area on a mesh surface.

    Returns:
        points (n, 3) float32 and their face normals (n, 3) float32.
    """
    points, normals, _ = sample_surface_faces(mesh, n, rng)
    return points, normals


def sample_surface_faces(
    mesh: trimesh.Trimesh, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sample_surface` that also says which face each point lies on (same draws, same points).

    Returns:
        points (n, 3) float32, their face normals (n, 3) float32 and face indices (n,) int64.
    """
    if len(mesh.faces) == 0:
        raise BadInputError("mesh has no faces")
    areas = mesh.area_faces
    total = float(areas.sum())
    if not np.isfinite(total) or total <= 0.0:
        raise BadInputError("mesh has zero surface area")
    face = rng.choice(len(areas), size=n, p=areas / total)
    tri = mesh.triangles[face]  # (n, 3, 3)
    u, v = rng.random((2, n))
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    points = tri[:, 0] + u[:, None] * (tri[:, 1] - tri[:, 0]) + v[:, None] * (tri[:, 2] - tri[:, 0])
    normals = mesh.face_normals[face]
    return points.astype(np.float32), normals.astype(np.float32), np.asarray(face, dtype=np.int64)


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre on the bounding-box centre and scale so the farthest point lies on the unit sphere."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise BadInputError(f"expected (N, 3) points, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise BadInputError("points contain NaN or infinite coordinates")
    centre = points.min(axis=0) / 2.0 + points.max(axis=0) / 2.0  # halves first: no overflow near 1e308
    centred = points - centre
    scale = float(np.abs(centred).max())
    if not np.isfinite(scale) or scale <= 1e-12:
        raise BadInputError("geometry is degenerate (all points coincide) or too large to represent")
    centred = centred / scale  # bring to |x| <= 1 before the norm so squaring cannot overflow
    radius = float(np.linalg.norm(centred, axis=1).max())
    if radius <= 1e-12:
        raise BadInputError("geometry is degenerate (all points coincide)")
    return (centred / radius).astype(np.float32)


def resample_points(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Pick ``n`` of the given points (without replacement when there are enough)."""
    idx = rng.choice(len(points), size=n, replace=len(points) < n)
    return points[idx]


def fixed_subset(n_have: int, n_want: int | None) -> np.ndarray | None:
    """The fixed, sorted point subset served whenever a shape has more points than a model takes.

    Training, evaluation, grounding and indexing all take this one subset (seed 0), so a model always
    sees the sampling it was trained on. None when no subset is needed (``n_want`` None or >= ``n_have``).
    """
    if n_want is None or n_want >= n_have:
        return None
    return np.sort(np.random.default_rng(0).permutation(n_have)[:n_want])
