"""Rocket: a lathed body with a nozzle and a nose (``pointed``: a long sharp ogive; ``round``: a short
blunt dome), 3 or 4 swept fins at the base, and 0 or 2 side boosters on the +x and -x sides.

Fins reach well beyond the boosters (over two body radii from the axis) and sit at angles that miss them,
so both stay separate in a point cloud.
"""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import face_centers, merge, tag, tag_faces, uniform
from daer.synth.geometry.revolve import plate, solid


def _body(radius: float, length: float, nose: str, nose_len: float, base: float) -> trimesh.Trimesh:
    """A closed body of revolution from a nozzle at ``base`` up through the nose tip."""
    t = np.linspace(0.0, 1.0, 12)[1:]
    shape = (1.0 - t) ** 0.75 if nose == "pointed" else np.sqrt(np.clip(1.0 - t**2, 0.0, 1.0))
    nose_pts = np.stack([radius * shape, length + nose_len * t], axis=1)
    nozzle = [(0.0, base), (0.6 * radius, base), (0.4 * radius, 0.0)]
    return solid(np.concatenate([nozzle, [(radius, 0.0), (radius, length)], nose_pts]), sections=32)


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a rocket mesh (+z up, front -y) for ``fins``, ``boosters`` and ``nose`` values.

    Part labels: the main body's nose (above the cylinder) -> ``nose``; fins -> ``fins``; boosters ->
    ``boosters``; the rest of the body expresses none.
    """
    radius = uniform(rng, 0.9, 1.1)
    length = radius * uniform(rng, 6.5, 8.5)
    nose_len = radius * (uniform(rng, 2.2, 3.0) if attributes["nose"] == "pointed" else uniform(rng, 0.8, 1.1))
    base = -0.35 * radius
    body = _body(radius, length, attributes["nose"], nose_len, base)
    parts = [tag_faces(body, face_centers(body)[:, 2] > length, "nose")]

    n_fins = int(attributes["fins"])
    span, root = radius * uniform(rng, 1.65, 2.0), radius * uniform(rng, 1.5, 2.0)
    tip, drop = radius * uniform(rng, 0.5, 0.8), radius * uniform(rng, 0.2, 0.35)
    outline = [(0.9 * radius, 0.0), (0.9 * radius, root), (radius + span, tip - drop), (radius + span, -drop)]
    start = np.pi / 4 if n_fins == 4 else np.pi / 2  # 45/135/.. or 90/210/330 degrees: clear of +-x boosters
    for k in range(n_fins):
        phi = start + 2 * np.pi * k / n_fins
        parts.append(tag(plate(outline, 0.12 * radius, (0, 0, 0), (np.cos(phi), np.sin(phi), 0.0), (0, 0, 1)), "fins"))

    if attributes["boosters"] == "2":
        b_r = radius * uniform(rng, 0.4, 0.5)
        b_len = length * uniform(rng, 0.55, 0.65)
        for side in (1.0, -1.0):
            booster = _body(b_r, b_len, "pointed", b_r * uniform(rng, 1.6, 2.2), 0.7 * base)
            booster.apply_translation((side * (radius + 0.95 * b_r), 0.0, 0.0))
            parts.append(tag(booster, "boosters"))
    return merge(parts)
