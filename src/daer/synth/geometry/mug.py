"""Mug: a hollow thin-walled cup, straight or tapered (clearly wider at the rim), short or tall, with or
without a C-shaped handle on its +x side.
"""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import merge, tag, uniform
from daer.synth.geometry.revolve import tube, vessel


def _handle(bottom_r: float, top_r: float, height: float, rng: np.random.Generator) -> trimesh.Trimesh:
    """A C-shaped tube whose ends sink into the wall at about a quarter and three quarters of the height."""
    tube_r = bottom_r * uniform(rng, 0.1, 0.14)
    reach = bottom_r * uniform(rng, 0.5, 0.7)
    half_span = height * uniform(rng, 0.25, 0.32)
    z_mid = height * uniform(rng, 0.48, 0.55)
    t = np.linspace(np.pi / 2, -np.pi / 2, 20)
    z = z_mid + half_span * np.sin(t)
    wall = bottom_r + (top_r - bottom_r) * z / height
    x = wall - 0.5 * tube_r + reach * np.cos(t)
    return tube(np.stack([x, np.zeros_like(x), z], axis=1), tube_r, sections=10)


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a mug mesh (+z up, front -y) for ``handle``, ``shape`` and ``height`` values.

    Part labels: the cup -> ``shape``, ``height``; handle -> ``handle``.
    """
    bottom_r = uniform(rng, 0.9, 1.1)
    top_r = bottom_r * (uniform(rng, 1.3, 1.45) if attributes["shape"] == "tapered" else uniform(rng, 0.98, 1.03))
    ratio = uniform(rng, 0.7, 0.9) if attributes["height"] == "short" else uniform(rng, 1.4, 1.75)
    height = ratio * (bottom_r + top_r)
    wall = bottom_r * uniform(rng, 0.05, 0.08)
    body = vessel([(0.0, 0.0), (bottom_r, 0.0), (top_r, height)], wall, sections=40)
    parts = [tag(body, "shape", "height")]
    if attributes["handle"] == "yes":
        parts.append(tag(_handle(bottom_r, top_r, height, rng), "handle"))
    return merge(parts)
