"""Ladder: two side rails, parallel or tapered toward the top, joined by 4 to 8 evenly spaced rungs."""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import beam_between, box, cylinder_between, merge, tag, uniform


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build an upright ladder mesh (+z up, rails in the x-z plane, rungs along x).

    Part labels: rails -> ``rails``; rungs -> ``rungs``.
    """
    n = int(attributes["rungs"])
    h = uniform(rng, 1.2, 2.4)
    wb = uniform(rng, 0.4, 0.55)  # outer-rail spacing at the foot
    wt = wb * (uniform(rng, 0.5, 0.65) if attributes["rails"] == "tapered" else 1.0)
    rw, rd = uniform(rng, 0.03, 0.045), uniform(rng, 0.05, 0.08)  # rail cross-section

    def rail_x(z: float) -> float:
        """Centre-line x of the right rail at height z."""
        return (wb + (wt - wb) * z / h) / 2.0 - rw / 2.0

    parts = [
        tag(beam_between((sx * rail_x(0.0), 0.0, 0.0), (sx * rail_x(h), 0.0, h), rw, rd), "rails") for sx in (-1.0, 1.0)
    ]
    spacing = h / (n + uniform(rng, 0.4, 0.9))
    first = spacing * uniform(rng, 0.5, 0.8)
    r = uniform(rng, 0.016, 0.024)
    flat = rng.random() < 0.4
    for i in range(n):
        z = first + i * spacing
        x = rail_x(z)
        if flat:
            parts.append(tag(box((0.0, 0.0, z), (2.0 * x, rd * 0.8, 2.0 * r)), "rungs"))
        else:
            parts.append(tag(cylinder_between((-x, 0.0, z), (x, 0.0, z), r, sections=12), "rungs"))
    return merge(parts)
