"""Stool: a round or square seat on 3 or 4 splayed legs, low (footstool) or tall (bar stool)."""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box, cylinder_between, merge, tag, uniform


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a stool mesh (+z up); the seat has no back, the legs stay separate near the floor.

    Part labels: seat -> ``seat``; legs -> ``legs``, ``height`` (their length sets the height); the footrest
    (tall stools only) -> ``height``.
    """
    n_legs = int(attributes["legs"])
    size = uniform(rng, 0.32, 0.44)  # seat diameter or side
    t = uniform(rng, 0.035, 0.06)
    h = uniform(rng, 0.66, 0.82) if attributes["height"] == "tall" else uniform(rng, 0.28, 0.42)
    r_leg = size * uniform(rng, 0.045, 0.06)
    splay = uniform(rng, 0.0, 0.06)  # how much further out the feet are than the leg tops

    if attributes["seat"] == "round":
        seat = cylinder_between((0.0, 0.0, h - t), (0.0, 0.0, h), size / 2.0, sections=40)
        top_r = size / 2.0 * uniform(rng, 0.62, 0.75)
    else:
        seat = box((0.0, 0.0, h - t / 2.0), (size, size, t))
        top_r = size / 2.0 * np.sqrt(2.0) * uniform(rng, 0.62, 0.75)
    # Legs on the seat diagonals (4) or every 120 degrees (3), the first one at the back.
    angles = np.pi / 2.0 + 2.0 * np.pi * np.arange(n_legs) / n_legs + (np.pi / 4.0 if n_legs == 4 else 0.0)
    tops = [(top_r * np.cos(a), top_r * np.sin(a), h - t) for a in angles]
    feet = [((top_r + splay) * np.cos(a), (top_r + splay) * np.sin(a), 0.0) for a in angles]
    legs = [tag(cylinder_between(f, p, r_leg, sections=16), "legs", "height") for f, p in zip(feet, tops, strict=True)]
    parts = [tag(seat, "seat"), *legs]

    if attributes["height"] == "tall" and rng.random() < 0.6:
        # Footrest: stretchers joining neighbouring legs, well above the floor.
        k = uniform(rng, 0.38, 0.5)
        ring = [np.add(np.multiply(f, 1.0 - k), np.multiply(p, k)) for f, p in zip(feet, tops, strict=True)]
        r_bar = r_leg * uniform(rng, 0.6, 0.9)
        parts += [
            tag(cylinder_between(ring[i], ring[(i + 1) % n_legs], r_bar, sections=12), "height") for i in range(n_legs)
        ]
    return merge(parts)
