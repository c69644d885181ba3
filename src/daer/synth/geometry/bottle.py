"""Bottle: a round or square body, a shoulder, a short or long neck, and either a cap (a cylinder clearly
wider than the neck, closing it) or an open mouth (a well sunk into the neck).

The whole bottle is one lofted outline: square bodies are rounded-square rings that morph into the round
neck across the shoulder, so there are no hidden inner faces. Short necks are under half a body radius
long, long necks over one and a half.
"""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import face_centers, tag_faces, uniform
from daer.synth.geometry.revolve import loft


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a bottle mesh (+z up, front -y) for ``body``, ``neck`` and ``cap`` values.

    Part labels (regions of the one lofted outline): body and shoulder -> ``body``; neck, with the rim and
    well of an open mouth -> ``neck``; cap -> ``cap``.
    """
    body_r = uniform(rng, 0.9, 1.1)
    body_h = body_r * uniform(rng, 2.2, 3.0)
    neck_r = body_r * uniform(rng, 0.28, 0.36)
    shoulder = body_r * uniform(rng, 0.35, 0.6)
    neck_len = body_r * (uniform(rng, 0.25, 0.5) if attributes["neck"] == "short" else uniform(rng, 1.5, 2.1))
    a = np.linspace(0.0, np.pi / 2, 8)
    top = body_h + shoulder + neck_len
    outline = [(0.0, 0.0), (0.96 * body_r, 0.0), (body_r, 0.03 * body_h)]
    outline += list(zip(neck_r + (body_r - neck_r) * np.cos(a), body_h + shoulder * np.sin(a), strict=True))
    outline.append((neck_r, top))
    if attributes["cap"] == "yes":
        cap_r = neck_r * uniform(rng, 1.3, 1.5)
        cap_top = top + cap_r * uniform(rng, 1.0, 1.5)
        outline += [(cap_r, top), (cap_r, cap_top), (0.0, cap_top)]
    else:
        wall = neck_r * uniform(rng, 0.12, 0.18)
        well = top - min(neck_len, 1.2 * neck_r)
        outline += [(neck_r - wall, top), (neck_r - wall, well), (0.0, well)]
    square = 1.0 if attributes["body"] == "square" else 0.0
    # square bodies stay square up to the shoulder and turn round by the neck
    squareness = [square] * 4 + list(square * np.cos(a[1:]) ** 2) + [0.0] * (len(outline) - 11)
    bottle = loft(outline, squareness, sections=40)
    z = face_centers(bottle)[:, 2]
    neck_start = body_h + shoulder
    cap = z >= top - 1e-9 if attributes["cap"] == "yes" else np.zeros(len(z), dtype=bool)
    tag_faces(bottle, z < neck_start, "body")
    tag_faces(bottle, (z >= neck_start) & ~cap, "neck")
    return tag_faces(bottle, cap, "cap")
