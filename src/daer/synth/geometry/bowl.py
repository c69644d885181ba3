"""Bowl: a hollow rounded vessel, shallow (depth about a third of the rim radius) or deep (about the rim
radius), standing on its flat bottom or raised on a foot ring.
"""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import merge, tag, uniform
from daer.synth.geometry.revolve import open_shell, vessel


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build a bowl mesh (+z up, front -y) for ``depth`` and ``foot`` values.

    Part labels: the basin -> ``depth``; foot ring -> ``foot``.
    """
    rim_r = uniform(rng, 0.9, 1.1)
    depth = rim_r * (uniform(rng, 0.28, 0.4) if attributes["depth"] == "shallow" else uniform(rng, 0.75, 0.95))
    flat_r = rim_r * uniform(rng, 0.38, 0.5)
    wall = rim_r * uniform(rng, 0.04, 0.07)
    phi = np.linspace(0.0, np.pi / 2, 14)
    # an elliptic quarter: flat at the bottom, vertical at the rim
    outer = np.stack([flat_r + (rim_r - flat_r) * np.sin(phi), depth * (1.0 - np.cos(phi))], axis=1)
    parts = [tag(vessel(np.concatenate([[(0.0, 0.0)], outer]), wall, sections=48), "depth")]
    if attributes["foot"] == "yes":
        foot_r = flat_r * uniform(rng, 0.8, 0.95)
        foot_h = rim_r * uniform(rng, 0.13, 0.2)
        ring = open_shell([(foot_r * 1.08, -foot_h), (foot_r, 0.02 * rim_r)], rim_r * uniform(rng, 0.06, 0.09))
        parts.append(tag(ring, "foot"))
    return merge(parts)
