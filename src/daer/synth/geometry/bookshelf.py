"""Bookshelf: an open-front case with N storage levels, narrow or wide, with or without a back panel.

``shelves: N`` means N levels to put books on: the bottom board and N-1 boards above it, then the top,
so N+1 horizontal boards are visible through the open front.
"""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box, box_between, merge, tag, uniform


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a bookshelf mesh (+z up, open front facing -y).

    Part labels: horizontal boards -> ``shelves``, ``width``; plinth board -> ``width``; back panel ->
    ``back_panel``, ``width``; the side panels express none.
    """
    n = int(attributes["shelves"])
    w = uniform(rng, 0.95, 1.4) if attributes["width"] == "wide" else uniform(rng, 0.4, 0.6)
    d = uniform(rng, 0.26, 0.34)
    level = uniform(rng, 0.25, 0.42)  # nominal height of one storage level
    t = uniform(rng, 0.018, 0.03)  # board thickness
    plinth = uniform(rng, 0.0, 0.08)
    h = plinth + n * level + t

    parts = []
    for sx in (-1.0, 1.0):
        parts.append(box((sx * (w / 2.0 - t / 2.0), 0.0, h / 2.0), (t, d, h)))
    # Boards: bottom, n-1 inner boards with a little jitter in spacing, top.
    zs = plinth + level * np.arange(n + 1)
    zs[1:-1] += level * rng.uniform(-0.12, 0.12, size=n - 1)
    for z in zs:
        parts.append(tag(box((0.0, 0.0, z + t / 2.0), (w - 2.0 * t, d, t)), "shelves", "width"))
    if plinth > 0.02:
        recess = uniform(rng, 0.0, 0.03)
        board = box_between((-w / 2.0 + t, -d / 2.0 + recess, 0.0), (w / 2.0 - t, -d / 2.0 + recess + t, plinth))
        parts.append(tag(board, "width"))
    if attributes["back_panel"] == "yes":
        pt = uniform(rng, 0.006, 0.015)
        panel = box_between((-w / 2.0 + t, d / 2.0 - pt, plinth), (w / 2.0 - t, d / 2.0, h))
        parts.append(tag(panel, "back_panel", "width"))
    return merge(parts)
