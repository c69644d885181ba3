"""House: 1 to 3 storeys (each a row of protruding windows, with floor bands between), a flat or gabled
roof, with or without a chimney."""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box, box_between, merge, tag, uniform, without_faces


def gable(half_w: float, y0: float, y1: float, z_eave: float, z_ridge: float) -> trimesh.Trimesh:
    """A triangular prism roof, ridge along y at x=0."""
    pts = [(sx * half_w, y, z_eave) for sx in (-1.0, 1.0) for y in (y0, y1)] + [(0.0, y0, z_ridge), (0.0, y1, z_ridge)]
    return without_faces(trimesh.convex.convex_hull(np.array(pts)), (0.0, 0.0, -1.0))


def facade_openings(w: float, y_wall: float, out: float, storeys: int, s: float, rng: np.random.Generator) -> list:
    """A row of windows per storey protruding by ``out`` from the wall at ``y_wall``; on the front (y < 0) one
    ground-floor slot holds a door that stands out only a little, so the window rows mark the storeys."""
    k = int(rng.integers(3, 5))
    slot = w / k
    ww, wh = min(uniform(rng, 0.16, 0.24), 0.65 * slot), s * uniform(rng, 0.42, 0.5)
    sill = s * uniform(rng, 0.3, 0.36)  # rows span [0.3, 0.86] of a storey: clear gaps between storeys
    sign = float(np.sign(y_wall))
    door = int(rng.integers(0, k)) if sign < 0 else -1

    def slab(x0: float, x1: float, z0: float, z1: float, depth: float) -> trimesh.Trimesh:
        y0, y1 = sorted((y_wall - sign * 0.01, y_wall + sign * depth))
        return box_between((x0, y0, z0), (x1, y1, z1))

    parts = []
    for f in range(storeys):
        for i in range(k):
            x = -w / 2.0 + (i + 0.5) * slot
            if f == 0 and i == door:
                dw = min(uniform(rng, 0.18, 0.26), 0.75 * slot)
                parts.append(slab(x - dw / 2.0, x + dw / 2.0, 0.0, s * uniform(rng, 0.65, 0.8), out * 0.3))
            else:
                parts.append(tag(slab(x - ww / 2.0, x + ww / 2.0, f * s + sill, f * s + sill + wh, out), "floors"))
    return parts


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a house mesh (+z up, front door and window rows facing -y).

    Part labels: window rows and floor bands (what counts the storeys) -> ``floors``; roof (gable, or slab
    and parapet) -> ``roof``; chimney -> ``chimney``; the walls and the door express none.
    """
    n = int(attributes["floors"])
    w, d = uniform(rng, 0.9, 1.4), uniform(rng, 0.7, 1.0)
    s = uniform(rng, 0.3, 0.4)  # storey height
    h = n * s
    out = uniform(rng, 0.05, 0.07)  # window protrusion
    # Walls only: the floor and the ceiling under the roof are hidden and would only soak up samples.
    parts = [without_faces(without_faces(box((0.0, 0.0, h / 2.0), (w, d, h)), (0, 0, 1)), (0, 0, -1))]
    parts += facade_openings(w, -d / 2.0, out, n, s, rng)
    parts += facade_openings(w, d / 2.0, out, n, s, rng)

    # Floor bands between storeys: a thin ledge around the walls, protruding less than the windows.
    bh, bp = uniform(rng, 0.025, 0.045), uniform(rng, 0.01, 0.02)
    for f in range(1, n):
        z = f * s
        for sy in (-1.0, 1.0):
            parts.append(tag(box((0.0, sy * (d / 2.0 + bp / 2.0), z), (w + 2.0 * bp, bp, bh)), "floors"))
        for sx in (-1.0, 1.0):
            parts.append(tag(box((sx * (w / 2.0 + bp / 2.0), 0.0, z), (bp, d, bh)), "floors"))

    if attributes["roof"] == "gabled":
        eave = uniform(rng, 0.04, 0.1)
        ridge = h + (w / 2.0 + eave) * np.tan(np.radians(uniform(rng, 28.0, 42.0)))
        parts.append(tag(gable(w / 2.0 + eave, -d / 2.0, d / 2.0, h, ridge), "roof"))
        roof_top = ridge
    else:
        slab = uniform(rng, 0.04, 0.08)
        parts.append(tag(without_faces(box((0.0, 0.0, h + slab / 2.0), (w, d, slab)), (0.0, 0.0, -1.0)), "roof"))
        roof_top = h + slab
        if rng.random() < 0.6:
            ph, pt = uniform(rng, 0.06, 0.12), uniform(rng, 0.025, 0.04)
            z = roof_top + ph / 2.0
            for sy in (-1.0, 1.0):
                parts.append(tag(box((0.0, sy * (d - pt) / 2.0, z), (w, pt, ph)), "roof"))
            for sx in (-1.0, 1.0):
                parts.append(tag(box((sx * (w - pt) / 2.0, 0.0, z), (pt, d, ph)), "roof"))

    if attributes["chimney"] == "yes":
        cx, cy = uniform(rng, 0.1, 0.15), uniform(rng, 0.1, 0.16)
        x = rng.choice([-1.0, 1.0]) * w * uniform(rng, 0.2, 0.3)
        y = d * uniform(rng, -0.2, 0.2)
        extra = uniform(rng, 0.12, 0.25) if attributes["roof"] == "gabled" else uniform(rng, 0.25, 0.4)
        stack = box_between((x - cx / 2.0, y - cy / 2.0, h), (x + cx / 2.0, y + cy / 2.0, roof_top + extra))
        parts.append(tag(stack, "chimney"))
    return merge(parts)
