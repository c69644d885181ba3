"""Cabinet: a chest of 2, 3 or 4 drawers whose fronts protrude with gaps and bar handles, on legs or not."""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box, box_between, cylinder_between, merge, tag, uniform, without_faces


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a cabinet mesh (+z up, drawers facing -y).

    Part labels: drawer fronts, handles and standoffs -> ``drawers``; legs -> ``legs``; the body, top and
    plinth express none.
    """
    n = int(attributes["drawers"])
    w, d = uniform(rng, 0.5, 0.9), uniform(rng, 0.4, 0.55)
    body_h = uniform(rng, 0.6, 1.1)
    legs = attributes["legs"] == "yes"
    plinth = not legs and rng.random() < 0.5  # a recessed kick plinth (still one solid footprint)
    z0 = uniform(rng, 0.15, 0.28) if legs else (uniform(rng, 0.04, 0.08) if plinth else 0.0)
    top_t = uniform(rng, 0.02, 0.04)
    # The body's front and top faces hide behind the drawers and the top board: left out to save samples.
    body = box_between((-w / 2.0, -d / 2.0, z0), (w / 2.0, d / 2.0, z0 + body_h))
    parts = [without_faces(without_faces(body, (0.0, -1.0, 0.0)), (0.0, 0.0, 1.0))]
    overhang = uniform(rng, 0.0, 0.03)
    parts.append(box((0.0, -overhang / 2.0, z0 + body_h + top_t / 2.0), (w + 2.0 * overhang, d + overhang, top_t)))

    # Drawer fronts: protruding slabs separated by gaps, each with a bar handle on two standoffs.
    margin, gap = uniform(rng, 0.02, 0.04), uniform(rng, 0.02, 0.035)
    front_t = uniform(rng, 0.02, 0.03)
    dh = (body_h - 2.0 * margin - (n - 1) * gap) / n
    bar_len = w * uniform(rng, 0.45, 0.7)
    bar_r = uniform(rng, 0.014, 0.02)
    standoff = uniform(rng, 0.035, 0.05)
    y_front = -d / 2.0 - front_t
    for i in range(n):
        zc = z0 + margin + dh / 2.0 + i * (dh + gap)
        front = box_between((-w / 2.0 + margin, y_front, zc - dh / 2.0), (w / 2.0 - margin, -d / 2.0, zc + dh / 2.0))
        parts.append(tag(front, "drawers"))
        yh = y_front - standoff
        bar = cylinder_between((-bar_len / 2.0, yh, zc), (bar_len / 2.0, yh, zc), bar_r, sections=12)
        parts.append(tag(bar, "drawers"))
        for sx in (-1.0, 1.0):
            x = sx * bar_len * 0.4
            parts.append(tag(cylinder_between((x, y_front, zc), (x, yh, zc), bar_r * 0.8, sections=8), "drawers"))

    if plinth:
        r = uniform(rng, 0.02, 0.05)
        parts.append(box_between((-w / 2.0 + r, -d / 2.0 + r, 0.0), (w / 2.0 - r, d / 2.0 - r, z0)))
    if legs:
        lt = uniform(rng, 0.055, 0.08)
        inset = lt / 2.0 + uniform(rng, 0.0, 0.04)
        for sx in (-1.0, 1.0):
            for sy in (-1.0, 1.0):
                parts.append(tag(box((sx * (w / 2.0 - inset), sy * (d / 2.0 - inset), z0 / 2.0), (lt, lt, z0)), "legs"))
    return merge(parts)
