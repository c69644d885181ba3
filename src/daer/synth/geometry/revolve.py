"""Surfaces of revolution and swept shapes for the Align3D-Synth builders.

Profiles are (radius, z) polylines revolved about +z. A *vessel* is a thin-walled container (outer wall,
inner wall and rim, open at the top) so mugs, bowls and vases are hollow; an *open shell* is a thin wall
open at both ends (lamp shades, foot rings, necks). Handles are tubes swept along a path (``tube``), fins
and wings are thin convex plates (``plate``).
"""

from __future__ import annotations

import numpy as np
import trimesh
from trimesh.creation import revolve

from daer.synth.geometry.parts import Vec


def _as_profile(profile: Vec) -> np.ndarray:
    prof = np.asarray(profile, dtype=float)
    if prof.ndim != 2 or prof.shape[1] != 2 or len(prof) < 2:
        raise ValueError(f"profile must be (n >= 2, 2) (radius, z) points, got shape {prof.shape}")
    if (prof[:, 0] < -1e-9).any():
        raise ValueError("profile radii must be >= 0")
    return prof


def offset_profile(profile: Vec, thickness: float) -> np.ndarray:
    """Offset a (radius, z) polyline by ``thickness`` to its left (inside a vessel drawn bottom-up).

    Corners are mitred so the wall keeps its thickness; the first and last points move along the normal
    of their own segment.
    """
    prof = _as_profile(profile)
    seg = np.diff(prof, axis=0)  # (n-1, 2)
    seg /= np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-12)
    normals = np.stack([-seg[:, 1], seg[:, 0]], axis=1)  # left normals, (n-1, 2)
    out = prof.copy()
    out[0] += thickness * normals[0]
    out[-1] += thickness * normals[-1]
    for i in range(1, len(prof) - 1):
        n = normals[i - 1] + normals[i]
        n /= max(np.linalg.norm(n), 1e-12)
        out[i] += thickness * n / max(float(n @ normals[i]), 0.35)
    out[:, 0] = np.maximum(out[:, 0], 0.0)
    return out


def solid(profile: Vec, sections: int = 32) -> trimesh.Trimesh:
    """A closed solid of revolution: ``profile`` should start and end on the axis (radius 0)."""
    return revolve(_as_profile(profile), sections=sections)


def vessel(outer: Vec, thickness: float, sections: int = 32) -> trimesh.Trimesh:
    """A hollow container open at the top: outer wall, rim and inner wall of constant ``thickness``.

    Args:
        outer: (radius, z) outer profile from the bottom centre (radius 0) up to the rim.
        thickness: wall and floor thickness.
        sections: angular resolution.
    """
    prof = _as_profile(outer)
    if prof[0, 0] > 1e-9:
        raise ValueError("a vessel profile must start on the axis (radius 0)")
    inner = offset_profile(prof, thickness)
    inner[0, 0] = 0.0
    return revolve(np.concatenate([prof, inner[::-1]]), sections=sections)


def open_shell(outer: Vec, thickness: float, sections: int = 32) -> trimesh.Trimesh:
    """A thin wall of revolution open at both ends (a lamp shade, a foot ring, a tube).

    ``outer`` runs bottom-up along the outside; the inside lies ``thickness`` towards the axis.
    """
    prof = _as_profile(outer)
    inner = offset_profile(prof, thickness)
    loop = np.concatenate([prof, inner[::-1], prof[:1]])
    return revolve(loop, sections=sections)


def loft(profile: Vec, squareness: Vec, sections: int = 32) -> trimesh.Trimesh:
    """Like :func:`solid`, but each ring may be a rounded square instead of a circle.

    Ring ``i`` is the superellipse ``|x|^n + |y|^n = r^n`` with ``n = 2 + 18 * squareness[i]``: 0 gives a
    circle of radius ``r``, 1 a square of half-side ``r`` with slightly rounded corners. Blending
    ``squareness`` along the profile morphs a square body into a round neck.
    """
    prof = _as_profile(profile)
    sq = np.asarray(squareness, dtype=float)
    if sq.shape != (len(prof),):
        raise ValueError(f"squareness must have one value per profile point ({len(prof)}), got shape {sq.shape}")
    theta = np.linspace(0.0, 2.0 * np.pi, sections, endpoint=False)
    c, s = np.cos(theta), np.sin(theta)
    n = 2.0 + 18.0 * np.clip(sq, 0.0, 1.0)[:, None]  # (m, 1)
    scale = (np.abs(c) ** n + np.abs(s) ** n) ** (-1.0 / n)  # (m, sections): superellipse radius per angle
    rad = prof[:, :1] * scale
    verts = np.stack([rad * c, rad * s, np.broadcast_to(prof[:, 1:], rad.shape)], axis=2).reshape(-1, 3)
    faces = []
    for i in range(len(prof) - 1):
        for j in range(sections):
            a, b = i * sections + j, i * sections + (j + 1) % sections
            faces += [[a, b, b + sections], [a, b + sections, a + sections]]
    mesh = trimesh.Trimesh(vertices=verts, faces=np.asarray(faces))  # merges the rings collapsed on the axis
    mesh.update_faces(mesh.nondegenerate_faces())
    return mesh


def arc(center: Vec, radius: float, a0: float, a1: float, u: Vec, v: Vec, n: int = 12) -> np.ndarray:
    """(n, 3) points on a circular arc ``center + radius (cos a u + sin a v)`` for ``a`` in [a0, a1]."""
    a = np.linspace(a0, a1, n)[:, None]
    c, u, v = (np.asarray(x, dtype=float) for x in (center, u, v))
    return c + radius * (np.cos(a) * u + np.sin(a) * v)


def tube(path: Vec, radius: float, sections: int = 10) -> trimesh.Trimesh:
    """A closed tube of ``radius`` swept along a 3D polyline (handles, bent rails)."""
    pts = np.asarray(path, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 2:
        raise ValueError(f"tube path must be (n >= 2, 3) points, got shape {pts.shape}")
    tang = np.gradient(pts, axis=0)
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-12)
    # parallel transport of a normal frame keeps the tube from twisting
    ref = np.eye(3)[int(np.argmin(np.abs(tang[0])))]
    normal = np.cross(tang[0], ref)
    normal /= np.linalg.norm(normal)
    frames = []
    for t in tang:
        normal = normal - (normal @ t) * t
        normal /= max(np.linalg.norm(normal), 1e-12)
        frames.append((normal.copy(), np.cross(t, normal)))
    ang = np.linspace(0.0, 2.0 * np.pi, sections, endpoint=False)
    rings = [
        p + radius * (np.cos(ang)[:, None] * n + np.sin(ang)[:, None] * b)
        for p, (n, b) in zip(pts, frames, strict=True)
    ]
    verts = np.concatenate([np.concatenate(rings), pts[[0, -1]]])  # rings then the two end centres
    faces = []
    m = len(pts)
    for i in range(m - 1):
        for j in range(sections):
            a, b = i * sections + j, i * sections + (j + 1) % sections
            faces += [[a, b, b + sections], [a, b + sections, a + sections]]
    start, end = m * sections, m * sections + 1
    for j in range(sections):
        jn = (j + 1) % sections
        faces += [[start, jn, j], [end, (m - 1) * sections + j, (m - 1) * sections + jn]]
    return trimesh.Trimesh(vertices=verts, faces=np.asarray(faces))


def plate(outline: Vec, thickness: float, origin: Vec, u: Vec, v: Vec) -> trimesh.Trimesh:
    """A thin plate: a convex 2D ``outline`` in the (u, v) plane at ``origin``, ``thickness`` thick.

    Args:
        outline: (k, 2) convex polygon in plane coordinates.
        thickness: extent along ``u x v``, centred on the plane.
        origin: 3D point of plane coordinate (0, 0).
        u: 3D direction of the first plane axis.
        v: 3D direction of the second plane axis.
    """
    poly = np.asarray(outline, dtype=float)
    o, u, v = (np.asarray(x, dtype=float) for x in (origin, u, v))
    w = np.cross(u, v)
    w /= np.linalg.norm(w)
    flat = o + poly[:, :1] * u + poly[:, 1:] * v
    pts = np.concatenate([flat + 0.5 * thickness * w, flat - 0.5 * thickness * w])
    return trimesh.convex.convex_hull(pts)
