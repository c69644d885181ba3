"""Surface sampling and unit-sphere normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from daer.data.sampling import normalize_unit_sphere, sample_surface
from daer.errors import BadInputError


def test_sampling_is_area_weighted() -> None:
    big = trimesh.creation.box(extents=(2.0, 2.0, 0.01))
    small = trimesh.creation.box(extents=(0.2, 0.2, 0.01))
    small.apply_translation((5, 0, 0))
    mesh = trimesh.util.concatenate([big, small])
    points, normals = sample_surface(mesh, 20000, np.random.default_rng(0))
    share = float((points[:, 0] > 4).mean())
    expected = small.area / mesh.area
    assert share == pytest.approx(expected, rel=0.15)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)


def test_normalisation_centres_and_scales_even_near_float_limits() -> None:
    pts = np.array([[1e308, 0, 0], [-1e308, 0, 0], [0, 1e307, 0]])
    out = normalize_unit_sphere(pts)
    assert np.isfinite(out).all()
    assert np.linalg.norm(out, axis=1).max() == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((5, 3)), np.full((3, 3), np.nan), np.zeros((0, 3)), np.zeros((4, 2))])
def test_degenerate_or_malformed_points_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(BadInputError):
        normalize_unit_sphere(bad)
