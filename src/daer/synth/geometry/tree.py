"""Tree: a trunk and a crown. ``cone`` crowns are one to three stacked cones sharing an apex (a fir),
widest at the bottom; ``sphere`` crowns are a slightly squashed or stretched ball, widest in the middle.
A ``short`` trunk shows under half the crown's height below it, a ``tall`` one about the crown's height.
"""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import cone_between, cylinder_between, ellipsoid, merge, tag, uniform


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a tree mesh (+z up, front -y) for ``crown`` and ``trunk`` values.

    Part labels: trunk -> ``trunk``; crown -> ``crown``.
    """
    crown_r = uniform(rng, 0.9, 1.1)
    if attributes["crown"] == "cone":
        crown_h = crown_r * uniform(rng, 2.0, 2.8)
    else:
        crown_h = 2.0 * crown_r * uniform(rng, 0.9, 1.1)
    visible = crown_h * (uniform(rng, 0.25, 0.45) if attributes["trunk"] == "short" else uniform(rng, 0.9, 1.25))
    trunk_r = crown_r * uniform(rng, 0.1, 0.15)
    parts = [tag(cylinder_between((0, 0, 0), (0, 0, visible + 0.5 * crown_h), trunk_r, sections=12), "trunk")]
    if attributes["crown"] == "cone":
        apex = visible + crown_h
        for i in range(int(rng.integers(1, 4))):
            z0 = visible + i * 0.3 * crown_h
            cone = cone_between((0, 0, z0), (0, 0, apex), crown_r * (1.0 - 0.28 * i), 0.0, sections=24)
            parts.append(tag(cone, "crown"))
    else:
        ball = ellipsoid((0, 0, visible + crown_h / 2), (crown_r, crown_r, crown_h / 2), subdivisions=3)
        parts.append(tag(ball, "crown"))
    return merge(parts)
