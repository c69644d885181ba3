"""Lamp: a base (round disc or square slab), a pole (desk or floor height) and a shade.

Shades: ``cone`` is a frustum much narrower at the top, ``cylinder`` a straight drum, ``sphere`` a globe;
drums and frustums are open thin walls. Desk poles are about one to two shade diameters tall, floor poles
four to six, so the height-to-width ratio of the whole lamp tells them apart.
"""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box, cylinder_between, merge, sphere, tag, uniform
from daer.synth.geometry.revolve import open_shell


def _shade(kind: str, radius: float, z0: float, rng: np.random.Generator) -> tuple[trimesh.Trimesh, float]:
    """The shade with its bottom at ``z0``; returns it and the height where the pole meets it."""
    wall = radius * uniform(rng, 0.03, 0.05)
    if kind == "sphere":
        return sphere((0.0, 0.0, z0 + radius), radius, subdivisions=3), z0 + 0.2 * radius
    height = radius * uniform(rng, 1.2, 1.6)
    top = radius * (uniform(rng, 0.22, 0.4) if kind == "cone" else uniform(rng, 0.96, 1.0))
    shell = open_shell([(radius, z0), (top, z0 + height)], wall, sections=40)
    # a small cap where the pole holds the shade keeps it from floating
    return merge([shell, cylinder_between((0, 0, z0 + 0.25 * height), (0, 0, z0 + 0.3 * height), 0.12 * radius)]), (
        z0 + 0.3 * height
    )


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a lamp mesh (+z up, front -y) for ``shade``, ``base`` and ``height`` values.

    Part labels: shade -> ``shade``; base -> ``base``; pole (its length sets the height) -> ``height``.
    """
    shade_r = uniform(rng, 0.9, 1.2)
    base_half = shade_r * uniform(rng, 0.8, 1.15)
    base_t = base_half * uniform(rng, 0.12, 0.2)
    if attributes["base"] == "round":
        base = cylinder_between((0, 0, 0), (0, 0, base_t), base_half, sections=40)
    else:
        base = box((0, 0, base_t / 2), (2 * base_half, 2 * base_half, base_t))
    factor = uniform(rng, 0.9, 1.5) if attributes["height"] == "desk" else uniform(rng, 4.0, 5.5)
    pole_len = 2.0 * shade_r * factor
    pole_r = shade_r * uniform(rng, 0.05, 0.07)
    shade, pole_top = _shade(attributes["shade"], shade_r, base_t + pole_len, rng)
    pole = cylinder_between((0, 0, base_t), (0, 0, pole_top), pole_r, sections=12)
    return merge([tag(base, "base"), tag(pole, "height"), tag(shade, "shade")])
