"""Bed: a frame and mattress (single or double width), optional headboard (+y end) and footboard (-y end)."""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box, box_between, merge, tag, uniform


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a bed mesh (+z up, length along y, head at +y, foot facing -y).

    Part labels: frame and mattress -> ``width``; headboard -> ``headboard``; footboard -> ``footboard``;
    legs, pillows and blanket express none.
    """
    double = attributes["width"] == "double"
    w = uniform(rng, 1.4, 1.8) if double else uniform(rng, 0.9, 1.05)
    length = uniform(rng, 1.95, 2.15)
    leg_h = uniform(rng, 0.05, 0.15)
    frame_h = uniform(rng, 0.15, 0.25)
    mat_h = uniform(rng, 0.15, 0.25)
    inset = uniform(rng, 0.0, 0.03)
    z_frame, z_mat = leg_h + frame_h, leg_h + frame_h + mat_h

    parts = [tag(box_between((-w / 2.0, -length / 2.0, leg_h), (w / 2.0, length / 2.0, z_frame)), "width")]
    mattress = box_between(
        (-w / 2.0 + inset, -length / 2.0 + inset, z_frame), (w / 2.0 - inset, length / 2.0 - inset, z_mat)
    )
    parts.append(tag(mattress, "width"))
    lt = uniform(rng, 0.05, 0.08)
    for sx in (-1.0, 1.0):
        for sy in (-1.0, 1.0):
            x, y = sx * (w / 2.0 - lt / 2.0), sy * (length / 2.0 - lt / 2.0)
            parts.append(box((x, y, leg_h / 2.0), (lt, lt, leg_h)))

    # Pillows at the head (one on a single bed, one or two on a double) and sometimes a blanket.
    n_pillows = 1 if not double else int(rng.integers(1, 3))
    pw = (w - 2.0 * inset) / n_pillows * uniform(rng, 0.75, 0.9)
    pd, ph = uniform(rng, 0.3, 0.42), uniform(rng, 0.05, 0.08)
    py = length / 2.0 - inset - pd / 2.0 - uniform(rng, 0.02, 0.06)
    for i in range(n_pillows):
        px = -w / 2.0 + inset + (i + 0.5) * (w - 2.0 * inset) / n_pillows
        parts.append(box((px, py, z_mat + ph / 2.0), (pw, pd, ph)))
    if rng.random() < 0.5:
        cover = length * uniform(rng, 0.55, 0.7)
        bt = uniform(rng, 0.015, 0.03)
        lo = (-w / 2.0 + inset - bt, -length / 2.0 + inset - bt, z_mat - mat_h * 0.5)
        parts.append(box_between(lo, (w / 2.0 - inset + bt, -length / 2.0 + cover, z_mat + bt)))

    bt = uniform(rng, 0.04, 0.08)
    if attributes["headboard"] == "yes":
        top = z_mat + uniform(rng, 0.45, 0.7)
        parts.append(tag(box_between((-w / 2.0, length / 2.0, 0.0), (w / 2.0, length / 2.0 + bt, top)), "headboard"))
    if attributes["footboard"] == "yes":
        top = z_mat + uniform(rng, 0.28, 0.4)
        parts.append(tag(box_between((-w / 2.0, -length / 2.0 - bt, 0.0), (w / 2.0, -length / 2.0, top)), "footboard"))
    return merge(parts)
