"""Vase: a closed body of revolution with an open neck.

``round`` bodies are bulbous (an elliptic outline, narrow at the foot and the shoulder); ``cylindrical``
bodies have straight walls and a short rounded shoulder. The neck is narrow (about a quarter of the body
radius) or wide (over half), with a flared lip and a well sunk into it so the mouth reads as open.
``handles: 2`` adds two ear-shaped tubes from the neck down to the shoulder, on the +x and -x sides.
"""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import face_centers, merge, tag, tag_faces, uniform
from daer.synth.geometry.revolve import solid, tube


def _body(kind: str, body_r: float, body_h: float, neck_r: float, rng: np.random.Generator) -> np.ndarray:
    """Outer (radius, z) outline of the body from the foot up to where the neck starts."""
    if kind == "round":
        t0 = np.arcsin(uniform(rng, 0.45, 0.6))
        t1 = np.pi - np.arcsin(neck_r / body_r)
        t = np.linspace(t0, t1, 20)
        z = 0.5 * body_h * (1.0 - np.cos(t))
        return np.stack([body_r * np.sin(t), z - z[0]], axis=1)
    shoulder = body_h * uniform(rng, 0.15, 0.22)
    a = np.linspace(0.0, np.pi / 2, 8)
    wall = [(body_r * 0.97, 0.0), (body_r, 0.04 * body_h)]
    top = np.stack([neck_r + (body_r - neck_r) * np.cos(a), body_h - shoulder + shoulder * np.sin(a)], axis=1)
    return np.concatenate([wall, top])


def _handle(side: float, neck_r: float, neck_z: tuple[float, float], outline: np.ndarray, reach: float) -> np.ndarray:
    """Path of one ear handle: from the neck, out by ``reach`` and down onto the shoulder (side = +1 or -1)."""
    z_a = neck_z[0] + 0.65 * (neck_z[1] - neck_z[0])
    r_b = neck_r + 0.55 * reach
    upper = outline[np.argmax(outline[:, 0]) :]  # from the widest point up to the neck, radius decreasing
    z_b = float(np.interp(r_b, upper[::-1, 0], upper[::-1, 1])) if r_b < upper[0, 0] else upper[0, 1]
    a = np.array([neck_r - 0.02, z_a])
    b = np.array([r_b - 0.02, z_b])
    c1, c2 = a + np.array([reach, 0.15 * reach]), b + np.array([0.8 * reach, 0.6 * reach])
    s = np.linspace(0.0, 1.0, 20)[:, None]
    rz = (1 - s) ** 3 * a + 3 * (1 - s) ** 2 * s * c1 + 3 * (1 - s) * s**2 * c2 + s**3 * b  # cubic Bezier
    return np.stack([side * rz[:, 0], np.zeros(len(rz)), rz[:, 1]], axis=1)


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a vase mesh (+z up, front -y) for ``body``, ``neck`` and ``handles`` values.

    Part labels: faces below the neck -> ``body``; the neck with its lip and well -> ``neck``; handles ->
    ``handles``.
    """
    body_r = uniform(rng, 0.9, 1.1)
    body_h = body_r * uniform(rng, 1.9, 2.6)
    neck_r = body_r * (uniform(rng, 0.2, 0.27) if attributes["neck"] == "narrow" else uniform(rng, 0.5, 0.6))
    neck_len = body_h * uniform(rng, 0.3, 0.42)
    wall = body_r * uniform(rng, 0.04, 0.06)
    outline = _body(attributes["body"], body_r, body_h, neck_r, rng)
    z_neck = outline[-1, 1]
    z_top = z_neck + neck_len
    lip = neck_r * uniform(rng, 1.12, 1.2)
    profile = np.concatenate(
        [
            [(0.0, 0.0)],
            outline,
            [(neck_r, z_top - 0.1 * neck_len), (lip, z_top), (neck_r - wall, z_top)],
            [(neck_r - wall, z_neck - wall), (0.0, z_neck - wall)],  # the well inside the neck
        ]
    )
    vase = solid(profile, sections=40)
    c = face_centers(vase)
    radius = np.hypot(c[:, 0], c[:, 1])
    neck = (c[:, 2] >= z_neck) | ((radius < neck_r - 0.5 * wall) & (c[:, 2] >= z_neck - 1.5 * wall))
    tag_faces(vase, ~neck, "body")
    parts = [tag_faces(vase, neck, "neck")]
    if attributes["handles"] == "2":
        reach = body_r * uniform(rng, 0.42, 0.55)
        tube_r = body_r * uniform(rng, 0.07, 0.09)
        for side in (1.0, -1.0):
            handle = tube(_handle(side, neck_r, (z_neck, z_top), outline, reach), tube_r, sections=10)
            parts.append(tag(handle, "handles"))
    return merge(parts)
