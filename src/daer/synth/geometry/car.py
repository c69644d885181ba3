"""Car: a lower body on wheels (nose at -y) with one of three silhouettes on top.

``sedan``: a low trapezoidal cabin in the middle, hood in front and trunk behind at the same height.
``pickup``: a cab in the front half and an open bed with low walls behind it.
``van``: one tall box from a short sloped nose to the rear, over most of the length.
``wheels``: 4 (two axles) or 6 (a front axle and a rear tandem pair), tyres sticking out of the sides.
"""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box_between, cylinder_between, merge, tag, uniform
from daer.synth.geometry.revolve import plate

_Y, _Z = (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def _profile_block(outline: list[tuple[float, float]], width: float) -> trimesh.Trimesh:
    """A prism of ``width`` (along x, centred) from a convex outline in the (y, z) side view."""
    return plate(outline, width, (0.0, 0.0, 0.0), _Y, _Z)


def _top(kind: str, length: float, width: float, z: float, rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """The upper body standing on the lower body's top face at height ``z``."""
    front = -length / 2
    if kind == "sedan":
        y0, y1 = front + length * uniform(rng, 0.28, 0.34), front + length * uniform(rng, 0.76, 0.82)
        h = length * uniform(rng, 0.1, 0.12)
        run0, run1 = length * uniform(rng, 0.1, 0.13), length * uniform(rng, 0.07, 0.1)
        return [_profile_block([(y0, z), (y1, z), (y1 - run1, z + h), (y0 + run0, z + h)], 0.9 * width)]
    if kind == "pickup":
        y0, y1 = front + length * uniform(rng, 0.22, 0.27), front + length * uniform(rng, 0.47, 0.52)
        h = length * uniform(rng, 0.11, 0.13)
        cab = _profile_block([(y0, z), (y1, z), (y1, z + h), (y0 + length * 0.07, z + h)], 0.92 * width)
        wall_h, t = h * uniform(rng, 0.3, 0.4), 0.05 * width
        bed0, bed1 = y1 + 0.01 * length, length / 2
        walls = [
            box_between((-width / 2, bed0, z), (-width / 2 + t, bed1, z + wall_h)),
            box_between((width / 2 - t, bed0, z), (width / 2, bed1, z + wall_h)),
            box_between((-width / 2, bed1 - t, z), (width / 2, bed1, z + wall_h)),
        ]
        return [cab, *walls]
    y0 = front + length * uniform(rng, 0.12, 0.18)
    h = length * uniform(rng, 0.2, 0.24)
    nose = length * uniform(rng, 0.08, 0.12)
    return [_profile_block([(y0, z), (length / 2, z), (length / 2, z + h), (y0 + nose, z + h)], width)]


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a car mesh (+z up, front -y) for ``body`` and ``wheels`` values.

    Part labels: the upper body (cabin, pickup bed walls, van box) -> ``body``; wheels -> ``wheels``; the
    lower body, the same for every silhouette, expresses none.
    """
    length = uniform(rng, 4.2, 4.8)
    width = length * uniform(rng, 0.38, 0.42)
    wheel_r, tyre = length * uniform(rng, 0.075, 0.085), length * uniform(rng, 0.06, 0.07)
    clearance = wheel_r * uniform(rng, 0.8, 0.95)
    lower_h = wheel_r * uniform(rng, 1.6, 1.9)
    parts = [box_between((-width / 2, -length / 2, clearance), (width / 2, length / 2, clearance + lower_h))]
    parts += [tag(p, "body") for p in _top(attributes["body"], length, width, clearance + lower_h, rng)]

    axles = [-length / 2 + length * uniform(rng, 0.17, 0.2)]
    rear = length / 2 - length * uniform(rng, 0.17, 0.21)
    if attributes["wheels"] == "6":
        axles += [rear - 2.0 * wheel_r * uniform(rng, 1.45, 1.6), rear]
    else:
        axles.append(rear)
    x_out = width / 2 + 0.3 * tyre  # tyres stick out of the body sides
    for y in axles:
        for side in (1.0, -1.0):
            p0, p1 = (side * (x_out - tyre), y, wheel_r), (side * x_out, y, wheel_r)
            parts.append(tag(cylinder_between(p0, p1, wheel_r, sections=20), "wheels"))
    return merge(parts)
