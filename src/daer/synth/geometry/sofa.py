"""Sofa: 2 or 3 separate seat cushions on a base, a low or high back, optional armrests."""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box, box_between, merge, tag, uniform


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a sofa mesh (+z up, front -y, length along x); cushions are split by clear seams.

    Part labels: seat cushions -> ``seats``; back cushions (one per seat) -> ``seats``, ``back``; the back
    -> ``back``; arms -> ``armrests``; the base and feet express none.
    """
    n = int(attributes["seats"])
    cw = uniform(rng, 0.5, 0.62)  # cushion width
    gap = uniform(rng, 0.14, 0.18)  # seam between cushions, wide enough to read in a sparse cloud
    span = n * cw + (n - 1) * gap
    seat_d = uniform(rng, 0.5, 0.6)
    back_t = uniform(rng, 0.15, 0.25)
    d = seat_d + back_t
    foot_h = uniform(rng, 0.05, 0.12)
    ch = uniform(rng, 0.15, 0.2)  # cushion thickness
    zs = uniform(rng, 0.40, 0.50)  # seat top
    zb = zs - ch  # base top
    back_h = uniform(rng, 0.46, 0.62) if attributes["back"] == "high" else uniform(rng, 0.2, 0.28)
    arms = attributes["armrests"] == "yes"
    aw = uniform(rng, 0.12, 0.22) if arms else 0.0
    x0 = span / 2.0  # inner face of the arms / end of the cushions

    y_back = d / 2.0 - back_t  # front face of the back
    parts = [box_between((-x0, -d / 2.0, foot_h), (x0, d / 2.0, zb))]
    parts.append(tag(box_between((-x0, y_back, foot_h), (x0, d / 2.0, zs + back_h)), "back"))
    for i in range(n):
        xc = -x0 + cw / 2.0 + i * (cw + gap)
        parts.append(tag(box((xc, (-d / 2.0 + y_back) / 2.0, zb + ch / 2.0), (cw, seat_d, ch)), "seats"))
        if rng.random() < 0.8:  # back cushion
            bd = uniform(rng, 0.08, 0.14)
            bh = back_h * uniform(rng, 0.7, 0.9)
            parts.append(tag(box((xc, y_back - bd / 2.0, zs + bh / 2.0), (cw, bd, bh)), "seats", "back"))
    if arms:
        arm_top = zs + uniform(rng, 0.14, min(0.24, back_h))
        for sx in (-1.0, 1.0):
            lo, hi = sorted((sx * x0, sx * (x0 + aw)))
            parts.append(tag(box_between((lo, -d / 2.0, foot_h), (hi, d / 2.0, arm_top)), "armrests"))
    # Short feet under the corners.
    half = x0 + aw
    ft = uniform(rng, 0.04, 0.07)
    for sx in (-1.0, 1.0):
        for sy in (-1.0, 1.0):
            parts.append(box((sx * (half - ft), sy * (d / 2.0 - ft), foot_h / 2.0), (ft, ft, foot_h)))
    return merge(parts)
