"""Airplane: a lathed fuselage along y (nose at -y), low wings, engine nacelles hung under the wings on
pylons, a vertical fin and a horizontal stabiliser.

``wings``: ``straight`` wings have an unswept quarter-chord line, ``swept`` ones a leading edge swept back
30-38 degrees. ``engines``: one or two nacelles per wing, well clear of the fuselage and of each other.
``tail``: ``conventional`` puts the stabiliser on the fuselage, ``t_tail`` on top of the fin.
"""

from __future__ import annotations

import numpy as np
import trimesh

from daer.synth.geometry.parts import box_between, merge, tag, uniform
from daer.synth.geometry.revolve import plate, solid

_ALONG_Y = trimesh.transformations.rotation_matrix(-np.pi / 2, [1.0, 0.0, 0.0])  # lathe axis +z -> +y


def _along_y(profile: list[tuple[float, float]], start: tuple[float, float, float]) -> trimesh.Trimesh:
    """A solid of revolution whose axis runs along +y from ``start``."""
    mesh = solid(profile, sections=24)
    mesh.apply_transform(_ALONG_Y)
    mesh.apply_translation(start)
    return mesh


def _wing_pair(
    root_le: float, root_c: float, tip_le: float, tip_c: float, span: float, z: float, t: float, inner: float = 0.0
):
    """Left and right trapezoidal plates in the horizontal plane at height ``z``, from ``inner`` to ``span``.

    ``inner`` cuts off the part of the trapezoid hidden inside the fuselage, where samples would be wasted.
    """
    f = inner / span
    le, c = root_le + f * (tip_le - root_le), root_c + f * (tip_c - root_c)
    outline = [(inner, le), (inner, le + c), (span, tip_le + tip_c), (span, tip_le)]
    return [plate(outline, t, (0, 0, z), (side, 0.0, 0.0), (0.0, 1.0, 0.0)) for side in (1.0, -1.0)]


def build(attributes: dict[str, str], rng: np.random.Generator) -> trimesh.Trimesh:
    """Build an airplane mesh (+z up, front -y) for ``engines``, ``wings`` and ``tail`` values.

    Part labels: wings -> ``wings``; nacelles and pylons -> ``engines``; fin and stabiliser -> ``tail``;
    the fuselage expresses none.
    """
    fus_r = uniform(rng, 0.9, 1.1)
    fus_len = fus_r * uniform(rng, 10.0, 13.0)
    nose = 1.6 * fus_r
    s = np.linspace(0.0, 1.0, 8)
    profile = [(0.0, 0.0)] + [(fus_r * np.sqrt(1 - (1 - u) ** 2), nose * u) for u in s[1:]]
    profile += [(fus_r, 0.72 * fus_len), (0.3 * fus_r, fus_len), (0.0, fus_len)]
    parts = [_along_y(profile, (0.0, -fus_len / 2, 0.0))]

    # wings
    span = fus_r * uniform(rng, 5.5, 6.5)
    root_c = fus_r * uniform(rng, 2.5, 3.2)
    tip_c = root_c * uniform(rng, 0.3, 0.45)
    wing_z = -0.35 * fus_r
    wing_t = fus_r * uniform(rng, 0.15, 0.22)
    if attributes["wings"] == "swept":
        root_le = -fus_len * uniform(rng, 0.18, 0.24)
        sweep = np.tan(np.radians(uniform(rng, 30.0, 38.0)))
    else:
        root_le = -fus_len * uniform(rng, 0.08, 0.14)
        sweep = (root_c - tip_c) / (4.0 * span) + np.tan(np.radians(uniform(rng, -2.0, 3.0)))
    wings = _wing_pair(root_le, root_c, root_le + sweep * span, tip_c, span, wing_z, wing_t, 0.75 * fus_r)
    parts += [tag(w, "wings") for w in wings]

    # engines under the wings
    fractions = (
        [uniform(rng, 0.33, 0.42)]
        if attributes["engines"] == "2"
        else [
            uniform(rng, 0.3, 0.35),
            uniform(rng, 0.6, 0.7),
        ]
    )
    eng_r, eng_len = fus_r * uniform(rng, 0.4, 0.5), fus_r * uniform(rng, 1.8, 2.4)
    pylon = fus_r * uniform(rng, 0.2, 0.3)
    nacelle = [(0.0, 0.0), (0.85 * eng_r, 0.0), (eng_r, 0.15 * eng_len), (eng_r, 0.8 * eng_len), (0.8 * eng_r, eng_len)]
    nacelle.append((0.0, eng_len))
    for f in fractions:
        x = f * span
        le = root_le + sweep * x
        z_top = wing_z - wing_t / 2 - pylon
        for side in (1.0, -1.0):
            parts.append(tag(_along_y(nacelle, (side * x, le - 0.55 * eng_len, z_top - eng_r)), "engines"))
            lo, hi = (
                (side * x - 0.06 * fus_r, le, z_top - 0.2 * eng_r),
                (side * x + 0.06 * fus_r, le + 0.35 * eng_len, wing_z),
            )
            parts.append(tag(box_between(lo, hi), "engines"))

    # tail: vertical fin, then the stabiliser on the fuselage or on top of the fin
    fin_h, fin_c = fus_r * uniform(rng, 2.6, 3.4), fus_r * uniform(rng, 2.0, 2.6)
    fin_root = fus_len / 2 - fin_c - 0.1 * fus_r
    fin_sweep, fin_tip = fin_c * uniform(rng, 0.5, 0.7), fin_c * uniform(rng, 0.45, 0.6)
    fin = [(fin_root, 0.5 * fus_r), (fin_root + fin_c, 0.5 * fus_r)]
    fin += [(fin_root + fin_sweep + fin_tip, fus_r + fin_h), (fin_root + fin_sweep, fus_r + fin_h)]
    parts.append(tag(plate(fin, 0.14 * fus_r, (0, 0, 0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), "tail"))
    stab_span = span * uniform(rng, 0.3, 0.38)
    stab_c = fus_r * uniform(rng, 1.5, 1.9)
    if attributes["tail"] == "t_tail":
        stab_le, stab_z = fin_root + fin_sweep - 0.1 * fus_r, fus_r + fin_h - 0.05 * fus_r
    else:
        stab_le, stab_z = fus_len / 2 - stab_c - 0.3 * fus_r, 0.1 * fus_r
    stab_sweep = stab_span * uniform(rng, 0.45, 0.65)
    stabiliser = _wing_pair(stab_le, stab_c, stab_le + stab_sweep, 0.45 * stab_c, stab_span, stab_z, 0.12 * fus_r)
    parts += [tag(s, "tail") for s in stabiliser]
    return merge(parts)
