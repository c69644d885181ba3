"""Chair: a seat on 3 or 4 separate legs (round or square), a short or tall back, optional armrests."""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box, box_between, cylinder_between, merge, tag, uniform


def leg(x: float, y: float, z0: float, z1: float, thickness: float, round_: bool) -> trimesh.Trimesh:
    """A vertical leg of the given cross-section from ``z0`` to ``z1``."""
    if round_:
        return cylinder_between((x, y, z0), (x, y, z1), thickness / 2.0, sections=20)
    half = thickness / 2.0
    return box_between((x - half, y - half, z0), (x + half, y + half, z1))


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a chair mesh (+z up, front -y); legs stay separate below the seat so they can be counted.

    Part labels: legs -> ``legs``, ``leg_shape``; back panel, posts and rail -> ``back``; armrests and their
    supports -> ``armrests``; the seat expresses none.
    """
    n_legs = int(attributes["legs"])
    w, d = uniform(rng, 0.42, 0.56), uniform(rng, 0.40, 0.52)
    t = uniform(rng, 0.04, 0.07)  # seat thickness
    h = uniform(rng, 0.42, 0.50)  # seat top height
    lt = uniform(rng, 0.04, 0.06)  # leg diameter / side
    inset = uniform(rng, 0.0, 0.04)
    back_h = uniform(rng, 0.48, 0.70) if attributes["back"] == "tall" else uniform(rng, 0.15, 0.26)
    back_t = uniform(rng, 0.03, 0.05)

    parts = [box((0.0, 0.0, h - t / 2.0), (w, d, t))]
    x, y = w / 2.0 - inset - lt / 2.0, d / 2.0 - inset - lt / 2.0
    spots = [(-x, -y), (x, -y), (-x, y), (x, y)] if n_legs == 4 else [(-x, -y), (x, -y), (0.0, y)]
    round_ = attributes["leg_shape"] == "round"
    parts += [tag(leg(px, py, 0.0, h - t, lt, round_), "legs", "leg_shape") for px, py in spots]

    # Back: either a solid panel or two posts carrying a top rail.
    yb = d / 2.0 - back_t / 2.0
    if rng.random() < 0.5:
        parts.append(tag(box((0.0, yb, h + back_h / 2.0), (w * uniform(rng, 0.85, 1.0), back_t, back_h)), "back"))
    else:
        post = uniform(rng, 0.035, 0.05)
        for sx in (-1.0, 1.0):
            parts.append(tag(box((sx * (w - post) / 2.0, yb, h + back_h / 2.0), (post, back_t, back_h)), "back"))
        rail_h = back_h * uniform(rng, 0.4, 0.65)
        parts.append(tag(box((0.0, yb, h + back_h - rail_h / 2.0), (w, back_t, rail_h)), "back"))

    if attributes["armrests"] == "yes":
        arm_h = min(back_h, 0.26) * uniform(rng, 0.75, 1.0)  # armrest height above the seat
        aw, at = uniform(rng, 0.04, 0.07), uniform(rng, 0.03, 0.05)
        y_front = -d / 2.0 + uniform(rng, 0.0, 0.06)
        for sx in (-1.0, 1.0):
            ax = sx * (w / 2.0 - aw / 2.0)
            rest = box_between((ax - aw / 2.0, y_front, h + arm_h - at), (ax + aw / 2.0, yb, h + arm_h))
            parts.append(tag(rest, "armrests"))
            parts.append(tag(leg(ax, y_front + aw / 2.0, h, h + arm_h - at, aw * 0.8, round_), "armrests"))
    return merge(parts)
