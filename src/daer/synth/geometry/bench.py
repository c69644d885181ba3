"""Bench: a long seat board on 4 or 6 legs, short or long, with or without a backrest."""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box, box_between, cylinder_between, merge, tag, uniform


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a bench mesh (+z up, front -y, length along x); 6 legs add a middle pair.

    Part labels: seat board -> ``length``; legs -> ``legs``; backrest board -> ``backrest``, ``length``;
    backrest posts -> ``backrest``.
    """
    length = uniform(rng, 1.75, 2.3) if attributes["length"] == "long" else uniform(rng, 0.85, 1.2)
    d = uniform(rng, 0.33, 0.42)
    h = uniform(rng, 0.40, 0.48)
    t = uniform(rng, 0.04, 0.07)
    parts = [tag(box((0.0, 0.0, h - t / 2.0), (length, d, t)), "length")]

    lt = uniform(rng, 0.045, 0.065)
    inset_x = lt / 2.0 + uniform(rng, 0.02, 0.1)
    inset_y = lt / 2.0 + uniform(rng, 0.0, 0.04)
    xs = [-length / 2.0 + inset_x, length / 2.0 - inset_x]
    if attributes["legs"] == "6":
        xs.insert(1, uniform(rng, -0.04, 0.04) * length)
    round_legs = rng.random() < 0.4
    for x in xs:
        for y in (-d / 2.0 + inset_y, d / 2.0 - inset_y):
            if round_legs:
                one = cylinder_between((x, y, 0.0), (x, y, h - t), lt / 2.0, sections=16)
            else:
                one = box_between((x - lt / 2.0, y - lt / 2.0, 0.0), (x + lt / 2.0, y + lt / 2.0, h - t))
            parts.append(tag(one, "legs"))

    if attributes["backrest"] == "yes":
        top = uniform(rng, 0.32, 0.45)  # backrest top above the seat
        board_h = top * uniform(rng, 0.4, 0.65)
        bt = uniform(rng, 0.03, 0.05)
        yb = d / 2.0 - bt / 2.0
        parts.append(tag(box((0.0, yb, h + top - board_h / 2.0), (length, bt, board_h)), "backrest", "length"))
        post = uniform(rng, 0.04, 0.06)
        for x in xs:
            post_mesh = box_between((x - post / 2.0, yb - bt / 2.0, h), (x + post / 2.0, yb + bt / 2.0, h + top))
            parts.append(tag(post_mesh, "backrest"))
    return merge(parts)
