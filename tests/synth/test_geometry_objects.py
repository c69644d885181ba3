"""Align3D-Synth object builders: every attribute value is recoverable from a 2,048-point cloud.

Each probe reads one attribute back from a normalised, area-weighted sample with plain geometry (slice
widths, radial profiles, clusters) and must return the value the builder was given, over several seeds
and with the other attributes varying.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from daer.data.sampling import normalize_unit_sphere, sample_surface
from daer.synth.geometry import revolve
from daer.synth.geometry_registry import builder_for
from daer.synth.taxonomy import TAXONOMY, combinations

OBJECTS = ("lamp", "mug", "bowl", "vase", "bottle", "rocket", "tree", "airplane", "car")
SEEDS = (0, 1, 2)
DIRS = np.stack([np.cos(np.linspace(0, np.pi, 36, endpoint=False)), np.sin(np.linspace(0, np.pi, 36, endpoint=False))])


def cloud(category: str, attributes: dict[str, str], seed: int, n: int = 2048) -> np.ndarray:
    """Build, sample and normalise one shape, as the generator does."""
    mesh = builder_for(category)(attributes, np.random.default_rng(seed))
    points, _ = sample_surface(mesh, n, np.random.default_rng(seed + 7919))
    return normalize_unit_sphere(points).astype(np.float64)


# ---------------------------------------------------------------- generic measurements


def widths(xy: np.ndarray) -> np.ndarray:
    """Extent of 2D points along 36 directions over a half turn."""
    proj = xy @ DIRS  # (n, 36)
    return proj.max(axis=0) - proj.min(axis=0)


def radial(points: np.ndarray, axis: np.ndarray | None = None) -> np.ndarray:
    """Distance from a vertical axis through ``axis`` (x, y); default the bounding-box centre (the origin)."""
    return np.linalg.norm(points[:, :2] - (0.0 if axis is None else axis), axis=1)


def band(points: np.ndarray, lo: float, hi: float, axis: int = 2) -> np.ndarray:
    """Points whose coordinate along ``axis`` lies in [lo, hi)."""
    return points[(points[:, axis] >= lo) & (points[:, axis] < hi)]


def hull_fill(xy: np.ndarray) -> float:
    """Convex-hull area over the area of the circle through the farthest point: ~1 round, ~0.64 square."""
    centre = (xy.min(axis=0) + xy.max(axis=0)) / 2
    r = np.linalg.norm(xy - centre, axis=1).max()
    return float(ConvexHull(xy).volume / (np.pi * r**2))


def clusters_1d(values: np.ndarray, gap: float, min_size: int = 3) -> list[np.ndarray]:
    """Split sorted values wherever consecutive ones are more than ``gap`` apart; drop tiny groups."""
    v = np.sort(values)
    groups = np.split(v, np.nonzero(np.diff(v) > gap)[0] + 1) if len(v) else []
    return [g for g in groups if len(g) >= min_size]


def angular_clusters(xy: np.ndarray, bins: int = 36) -> int:
    """Number of separate angular sectors (circular runs of occupied 10-degree bins) that 2D points fall in.

    Single empty bins inside a run are filled first, so a sparsely sampled part is not split in two.
    """
    ang = np.arctan2(xy[:, 1], xy[:, 0])
    occ = np.histogram(ang, bins=bins, range=(-np.pi, np.pi))[0] > 0
    occ = occ | (np.roll(occ, 1) & np.roll(occ, -1))
    if occ.all():
        return 1
    return int(np.sum(occ & ~np.roll(occ, 1)))


def z_profile(points: np.ndarray, step: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Slice centres from the bottom up and the largest distance from the axis in each (0 if empty)."""
    z = points[:, 2]
    edges = np.arange(z.min(), z.max() + step, step)
    idx = np.clip(np.digitize(z, edges) - 1, 0, len(edges) - 2)
    r = np.zeros(len(edges) - 1)
    np.maximum.at(r, idx, radial(points))
    return (edges[:-1] + edges[1:]) / 2, r


def slabs(p: np.ndarray, step: float = 0.04, min_points: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal slabs with enough points: their centre z, and min and max width over directions."""
    out = []
    for z in np.arange(p[:, 2].min(), p[:, 2].max(), step):
        xy = band(p, z, z + step)[:, :2]
        if len(xy) >= min_points:
            w = widths(xy)
            out.append((z + step / 2, w.min(), w.max()))
    zc, wmin, wmax = np.array(out).T
    return zc, wmin, wmax


# ---------------------------------------------------------------- probes, one per attribute


def lamp_shade(p: np.ndarray) -> str:
    zc, r = z_profile(p)
    upper = zc > np.median(zc)
    widest = int(np.argmax(np.where(upper, r, 0.0)))
    thin = np.nonzero(r[:widest] < 0.3 * r[widest])[0]
    z_lo = zc[thin[-1]] if len(thin) else zc[0]  # the highest thin slice under the shade is the pole
    shade = p[p[:, 2] > z_lo + 0.01]
    z0, z1 = shade[:, 2].min(), shade[:, 2].max()
    bands = ((0.0, 0.15), (0.4, 0.6), (0.85, 1.01))
    bot, mid, top = (radial(band(shade, z0 + a * (z1 - z0), z0 + b * (z1 - z0))).mean() for a, b in bands)
    if mid > 1.3 * max(top, bot):
        return "sphere"
    return "cone" if top < 0.7 * bot else "cylinder"


def lamp_base(p: np.ndarray) -> str:
    bottom = p[p[:, 2] < p[:, 2].min() + 0.01]
    return "round" if hull_fill(bottom[:, :2]) > 0.8 else "square"


def lamp_height(p: np.ndarray) -> str:
    ext = np.ptp(p, axis=0)
    return "floor" if ext[2] / max(ext[0], ext[1]) > 3.5 else "desk"


def height_band(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Points between fractions ``lo`` and ``hi`` of the cloud's height."""
    z0, z1 = p[:, 2].min(), p[:, 2].max()
    return band(p, z0 + lo * (z1 - z0), z0 + hi * (z1 - z0))


def mug_handle(p: np.ndarray) -> str:
    w = widths(height_band(p, 0.3, 0.7)[:, :2])
    return "yes" if w.max() / w.min() > 1.1 else "no"


def mug_shape(p: np.ndarray) -> str:
    bottom = widths(height_band(p, 0.05, 0.15)[:, :2]).min()
    top = widths(height_band(p, 0.85, 0.97)[:, :2]).min()
    return "tapered" if top / bottom > 1.15 else "straight"


def mug_height(p: np.ndarray) -> str:
    return "tall" if np.ptp(p[:, 2]) / widths(height_band(p, 0.4, 0.6)[:, :2]).min() > 1.15 else "short"


def _bowl_axis(p: np.ndarray) -> tuple[np.ndarray, float]:
    diameter = widths(p[:, :2]).min()
    return p[radial(p) < 0.25 * diameter / 2], diameter


def bowl_depth(p: np.ndarray) -> str:
    axis, diameter = _bowl_axis(p)
    return "deep" if (p[:, 2].max() - axis[:, 2].max()) / diameter > 0.27 else "shallow"


def bowl_foot(p: np.ndarray) -> str:
    axis, diameter = _bowl_axis(p)
    return "yes" if (axis[:, 2].min() - p[:, 2].min()) / diameter > 0.03 else "no"


def median_radius(p: np.ndarray, step: float = 0.03, q: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Slab centres (bottom up) and the ``q``-th percentile distance from the axis in each non-empty slab.

    The median follows the main surface and ignores thin parts (handles) that hold fewer points.
    """
    zc, r = [], []
    for z in np.arange(p[:, 2].min(), p[:, 2].max(), step):
        s = band(p, z, z + step)
        if len(s) >= 5:
            zc.append(z + step / 2)
            r.append(np.percentile(radial(s), q))
    return np.array(zc), np.array(r)


def _z_span(zc: np.ndarray, mask: np.ndarray) -> float:
    return float(np.ptp(zc[mask])) if mask.any() else 0.0


def vase_body(p: np.ndarray) -> str:
    zc, r = median_radius(p)
    flat = _z_span(zc, r > 0.95 * r.max()) / _z_span(zc, r > 0.75 * r.max())
    return "cylindrical" if flat > 0.7 else "round"


def _vase_neck(p: np.ndarray) -> tuple[np.ndarray, float, float]:
    """z of the neck slabs, neck radius, body radius.

    The neck runs from the lowest to the highest narrow upper slab, less its lowest two (the shoulder's
    edge and the well floor); slabs in between whose median the handles inflate stay in.
    """
    zc, r = median_radius(p)
    upper = zc > np.median(p[:, 2])
    neck_r = float(np.median(np.sort(r[upper])[: upper.sum() // 3]))  # the neck fills over a third of them
    narrow = np.nonzero(upper & (r < 1.35 * neck_r))[0]
    return zc[narrow[0] + 2 : narrow[-1] + 1], neck_r, r.max()


def vase_neck(p: np.ndarray) -> str:
    _, neck_r, body_r = _vase_neck(p)
    return "wide" if neck_r / body_r > 0.38 else "narrow"


def vase_handles(p: np.ndarray) -> str:
    neck_z, neck_r, _ = _vase_neck(p)
    near = band(p, neck_z.min() - 0.015, neck_z.max() + 0.015)
    far = near[radial(near) > 1.55 * neck_r]
    return str(angular_clusters(far[:, :2])) if len(far) >= 10 else "0"


def longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of consecutive True values."""
    best = run = 0
    for m in mask:
        run = run + 1 if m else 0
        best = max(best, run)
    return best


def bottle_body(p: np.ndarray) -> str:
    return "round" if hull_fill(height_band(p, 0.1, 0.35)[:, :2]) > 0.8 else "square"


def _bottle_neck(p: np.ndarray, step: float = 0.03) -> tuple[np.ndarray, float]:
    """Per-slab outer radius (80th percentile: the outer wall, not the mouth's inner one) and the neck's."""
    zc, r = median_radius(p, step, q=80)
    upper = r[zc > np.median(p[:, 2])]
    return r, float(np.median(upper[upper < 1.25 * upper.min()]))


def bottle_neck(p: np.ndarray, step: float = 0.03) -> str:
    r, neck_r = _bottle_neck(p, step)
    body_w = widths(height_band(p, 0.1, 0.35)[:, :2]).min()
    return "long" if longest_run(r < 1.15 * neck_r) * step / body_w > 0.45 else "short"


def bottle_cap(p: np.ndarray) -> str:
    _, neck_r = _bottle_neck(p)
    top = p[p[:, 2] > p[:, 2].max() - 0.03]
    return "yes" if np.percentile(radial(top), 90) / neck_r > 1.15 else "no"


def _rocket_axis(p: np.ndarray) -> tuple[np.ndarray, float]:
    """Body axis (x, y) and radius from the middle of the body, where only the body and boosters are.

    The narrowest width misses the boosters (they widen the body along one direction only).
    """
    mid = height_band(p, 0.4, 0.6)[:, :2]
    return (mid.min(axis=0) + mid.max(axis=0)) / 2, widths(mid).min() / 2


def rocket_fins(p: np.ndarray) -> str:
    axis, radius = _rocket_axis(p)
    far = p[radial(p, axis) > 2.15 * radius]  # beyond the boosters: only fins reach that far
    return str(angular_clusters(far[:, :2] - axis))


def rocket_boosters(p: np.ndarray) -> str:
    axis, radius = _rocket_axis(p)
    s = height_band(p, 0.3, 0.45)  # above the fins, below the booster tops
    far = s[radial(s, axis) > 1.25 * radius]
    return str(angular_clusters(far[:, :2] - axis)) if len(far) >= 10 else "0"


def rocket_nose(p: np.ndarray) -> str:
    axis, radius = _rocket_axis(p)
    top = p[:, 2].max()
    tip = radial(band(p, top - 0.65 * radius, top - 0.35 * radius), axis)  # a sharp tip holds few points
    return "round" if len(tip) and tip.max() > 0.58 * radius else "pointed"


def _crown_bottom(p: np.ndarray) -> float:
    """Height of the lowest slab at least 40% as wide as the widest: where the crown starts."""
    zc, r = z_profile(p)
    return float(zc[np.argmax(r > 0.4 * r.max())])


def tree_trunk(p: np.ndarray) -> str:
    return "tall" if (_crown_bottom(p) - p[:, 2].min()) / np.ptp(p[:, 2]) > 0.38 else "short"


def tree_crown(p: np.ndarray) -> str:
    z0, z1 = _crown_bottom(p), p[:, 2].max()
    upper = radial(band(p, z0 + 0.75 * (z1 - z0), z0 + 0.85 * (z1 - z0))).max()
    return "sphere" if upper / radial(p).max() > 0.5 else "cone"


def _airplane_frame(p: np.ndarray) -> tuple[float, float, float, float]:
    """Fuselage centre height and radius (mid-fuselage cross-section), wing height (at the tips), half span."""
    y0, y1 = p[:, 1].min(), p[:, 1].max()
    mid = p[(np.abs(p[:, 0]) < 0.04) & (np.abs(p[:, 1] - (y0 + y1) / 2) < 0.15 * (y1 - y0))]
    half_span = np.abs(p[:, 0]).max()
    wing_z = float(np.median(p[np.abs(p[:, 0]) > 0.8 * half_span, 2]))
    return (mid[:, 2].max() + mid[:, 2].min()) / 2, np.ptp(mid[:, 2]) / 2, wing_z, half_span


def airplane_engines(p: np.ndarray) -> str:
    _, fus_r, wing_z, _ = _airplane_frame(p)
    below = p[(p[:, 2] < wing_z - 0.3 * fus_r) & (np.abs(p[:, 0]) > 1.1 * fus_r)]  # nacelles, not the fuselage
    return str(len(clusters_1d(below[:, 0], gap=0.045)))


def airplane_wings(p: np.ndarray) -> str:
    _, fus_r, wing_z, half_span = _airplane_frame(p)
    wing = p[(np.abs(p[:, 0]) > 0.45 * half_span) & (np.abs(p[:, 2] - wing_z) < 0.3 * fus_r)]
    slope = np.polyfit(np.abs(wing[:, 0]), wing[:, 1], 1)[0]  # backward (+y) drift of the chord per unit span
    return "swept" if slope > 0.25 else "straight"


def airplane_tail(p: np.ndarray) -> str:
    fus_z, fus_r, _, half_span = _airplane_frame(p)
    y0, y1 = p[:, 1].min(), p[:, 1].max()
    ax = np.abs(p[:, 0])
    stab = p[(p[:, 1] > y1 - 0.2 * (y1 - y0)) & (ax > 1.3 * fus_r) & (ax < 0.45 * half_span)]
    return "t_tail" if np.median(stab[:, 2]) - fus_z > 1.5 * fus_r else "conventional"


def car_body(p: np.ndarray, step: float = 0.05) -> str:
    """Roof line along the length: how much of it is at full height (van), and where (pickup: in front)."""
    y0 = p[:, 1].min()
    idx = ((p[:, 1] - y0) / step).astype(int)
    top = np.full(idx.max() + 1, -np.inf)
    np.maximum.at(top, idx, p[:, 2])
    tall = (top - p[:, 2].min()) / np.ptp(p[:, 2]) > 0.85
    pos = (np.nonzero(tall)[0] + 0.5) / len(tall)  # 0 at the nose, 1 at the rear
    if tall.mean() > 0.55:
        return "van"
    return "pickup" if pos.mean() < 0.47 else "sedan"


def _under_body(p: np.ndarray) -> np.ndarray:
    """Points below the body's underside (the densest horizontal plane in the lower half): the tyres."""
    z = p[:, 2]
    hist, edges = np.histogram(z[z < np.median(z)], bins=np.arange(z.min(), np.median(z), 0.005))
    underside = edges[np.argmax(hist)]
    return p[z < z.min() + 0.85 * (underside - z.min())]


def car_wheels(p: np.ndarray) -> str:
    """Axles are clusters of tyre bottoms along the length; each must show a tyre on both sides."""
    ground = _under_body(p)
    order = np.argsort(ground[:, 1])
    y, x = ground[order, 1], ground[order, 0]
    axles = np.split(np.arange(len(y)), np.nonzero(np.diff(y) > 0.1)[0] + 1)
    wheels = sum(int((x[a] > 0).sum() >= 3) + int((x[a] < 0).sum() >= 3) for a in axles)
    return str(wheels)


PROBES = {
    "lamp": {"shade": lamp_shade, "base": lamp_base, "height": lamp_height},
    "bowl": {"depth": bowl_depth, "foot": bowl_foot},
    "vase": {"body": vase_body, "neck": vase_neck, "handles": vase_handles},
    "bottle": {"body": bottle_body, "neck": bottle_neck, "cap": bottle_cap},
    "rocket": {"fins": rocket_fins, "boosters": rocket_boosters, "nose": rocket_nose},
    "tree": {"crown": tree_crown, "trunk": tree_trunk},
    "airplane": {"engines": airplane_engines, "wings": airplane_wings, "tail": airplane_tail},
    "car": {"body": car_body, "wheels": car_wheels},
    "mug": {"handle": mug_handle, "shape": mug_shape, "height": mug_height},
}


# ---------------------------------------------------------------- tests


def test_revolve_helpers_match_closed_form_volumes() -> None:
    r, h, t, n = 1.0, 2.0, 0.1, 256
    cup = revolve.vessel([(0.0, 0.0), (r, 0.0), (r, h)], t, sections=n)
    assert cup.is_watertight
    assert cup.volume == pytest.approx(np.pi * (r**2 * h - (r - t) ** 2 * (h - t)), rel=1e-2)
    ring = revolve.open_shell([(r, 0.0), (r, h)], t, sections=n)
    assert ring.is_watertight
    assert ring.volume == pytest.approx(np.pi * (r**2 - (r - t) ** 2) * h, rel=1e-2)
    rod = revolve.tube(np.stack([np.zeros(5), np.zeros(5), np.linspace(0.0, h, 5)], axis=1), 0.2, sections=64)
    assert rod.is_watertight
    assert rod.volume == pytest.approx(np.pi * 0.2**2 * h, rel=1e-2)
    column = [(0.0, 0.0), (r, 0.0), (r, h), (0.0, h)]
    assert revolve.loft(column, [0.0] * 4, sections=n).volume == pytest.approx(np.pi * r**2 * h, rel=1e-2)
    # superellipse |x|^20 + |y|^20 = 1 has area 4 G(1.05)^2 / G(1.1) = 3.985
    assert revolve.loft(column, [1.0] * 4, sections=n).volume == pytest.approx(3.985 * r**2 * h, rel=1e-2)
    slab = revolve.plate([(0, 0), (2, 0), (2, 1), (0, 1)], 0.1, (0, 0, 0), (1, 0, 0), (0, 1, 0))
    assert slab.volume == pytest.approx(2 * 1 * 0.1)


def test_offset_profile_keeps_the_wall_thickness_at_corners() -> None:
    inner = revolve.offset_profile([(0.0, 0.0), (1.0, 0.0), (1.0, 2.0)], 0.1)
    np.testing.assert_allclose(inner, [(0.0, 0.1), (0.9, 0.1), (0.9, 2.0)], atol=1e-12)


@pytest.mark.parametrize("category", OBJECTS)
def test_every_combination_builds_a_finite_mesh(category: str) -> None:
    for i, attributes in enumerate(combinations(category)):
        mesh = builder_for(category)(attributes, np.random.default_rng(i))
        assert len(mesh.faces) > 0, attributes
        assert np.isfinite(mesh.vertices).all(), attributes
        assert mesh.area > 0, attributes


@pytest.mark.parametrize("category", OBJECTS)
def test_build_is_deterministic_given_the_rng(category: str) -> None:
    attributes = combinations(category)[-1]
    a = builder_for(category)(attributes, np.random.default_rng(5))
    b = builder_for(category)(attributes, np.random.default_rng(5))
    c = builder_for(category)(attributes, np.random.default_rng(6))
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    assert a.vertices.shape != c.vertices.shape or not np.allclose(a.vertices, c.vertices)


@pytest.mark.parametrize("category", [c for c in OBJECTS if c in PROBES])
def test_probes_recover_every_attribute(category: str) -> None:
    """Every full combination, several seeds: each attribute's probe reads back the given value."""
    assert set(PROBES[category]) == set(TAXONOMY[category])
    wrong = []
    for attributes in combinations(category):
        for seed in SEEDS:
            p = cloud(category, attributes, seed)
            for name, probe in PROBES[category].items():
                got = probe(p)
                if got != attributes[name]:
                    wrong.append((attributes, seed, name, got))
    assert not wrong, wrong
