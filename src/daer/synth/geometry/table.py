"""Table: a round, square or rectangular top on 1 pedestal, 3 or 4 legs; low (coffee) or tall (dining)."""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box, box_between, cylinder_between, merge, tag, uniform


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a table mesh (+z up); the height is a ratio of the top's longest side, so it reads at any size.

    Part labels: top -> ``top``; legs, or the pedestal's column and base -> ``legs``, ``height``.
    """
    top = attributes["top"]
    major = uniform(rng, 0.8, 1.6)
    hx, hy = major / 2.0, major / 2.0
    if top == "rectangular":
        hy = hx / uniform(rng, 1.5, 2.2)
    h = major * (uniform(rng, 0.5, 0.75) if attributes["height"] == "tall" else uniform(rng, 0.25, 0.38))
    t = major * uniform(rng, 0.025, 0.05)

    if top == "round":
        parts = [tag(cylinder_between((0.0, 0.0, h - t), (0.0, 0.0, h), hx, sections=48), "top")]
    else:
        parts = [tag(box((0.0, 0.0, h - t / 2.0), (2.0 * hx, 2.0 * hy, t)), "top")]

    n_legs = int(attributes["legs"])
    if n_legs == 1:
        # Pedestal: a central column on a flat base.
        col_r = major * uniform(rng, 0.05, 0.08)
        base_t = h * uniform(rng, 0.04, 0.08)
        base_r = min(hx, hy) * uniform(rng, 0.45, 0.7)
        parts.append(tag(cylinder_between((0.0, 0.0, 0.0), (0.0, 0.0, h - t), col_r, sections=24), "legs", "height"))
        if rng.random() < 0.5:
            foot = cylinder_between((0.0, 0.0, 0.0), (0.0, 0.0, base_t), base_r, sections=32)
        else:
            foot = box((0.0, 0.0, base_t / 2.0), (2.0 * base_r, 2.0 * base_r, base_t))
        parts.append(tag(foot, "legs", "height"))
        return merge(parts)

    lt = major * uniform(rng, 0.045, 0.07)  # leg side / diameter
    round_legs = rng.random() < 0.5
    if n_legs == 4 and top != "round":
        inset = lt / 2.0 + major * uniform(rng, 0.02, 0.06)
        spots = [(sx * (hx - inset), sy * (hy - inset)) for sx in (-1, 1) for sy in (-1, 1)]
    else:
        # On an inscribed ellipse: every 90 degrees on the diagonals (4) or every 120 degrees (3).
        k = uniform(rng, 0.6, 0.72) if top == "round" else uniform(rng, 0.75, 0.85)
        start = np.pi / 4.0 if n_legs == 4 else np.pi / 2.0
        angles = start + 2.0 * np.pi * np.arange(n_legs) / n_legs
        spots = [(k * hx * np.cos(a), k * hy * np.sin(a)) for a in angles]
    for x, y in spots:
        if round_legs:
            one = cylinder_between((x, y, 0.0), (x, y, h - t), lt / 2.0, sections=16)
        else:
            one = box_between((x - lt / 2.0, y - lt / 2.0, 0.0), (x + lt / 2.0, y + lt / 2.0, h - t))
        parts.append(tag(one, "legs", "height"))
    return merge(parts)
