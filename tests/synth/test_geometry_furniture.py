"""Furniture and structure builders: every attribute value is recovered by a geometric probe from 2,048 points.

Each probe reads one attribute back from a normalised point cloud (leg clusters in a slice under the seat,
board levels seen through an open front, window rows on a facade, ...). Every probe is run on every full
attribute combination over several seeds, so it must hold whatever the other attributes and the nuisance
draws are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from daer.data.sampling import normalize_unit_sphere, sample_surface
from daer.synth.geometry_registry import builder_for
from daer.synth.taxonomy import combinations

CATEGORIES = ("chair", "stool", "table", "bench", "bed", "sofa", "bookshelf", "cabinet", "house", "ladder")
SEEDS = (0, 1, 2)
N_POINTS = 2048


def cloud(category: str, attributes: dict[str, str], seed: int) -> np.ndarray:
    """2,048 area-weighted surface points of one built shape, normalised to the unit sphere."""
    mesh = builder_for(category)(attributes, np.random.default_rng(seed))
    points, _ = sample_surface(mesh, N_POINTS, np.random.default_rng(10_000 + seed))
    return normalize_unit_sphere(points)


# ---------------------------------------------------------------------------------------------- helpers


def clusters(points: np.ndarray, eps: float, min_size: int = 3) -> list[np.ndarray]:
    """Groups of points linked by chains of neighbours closer than ``eps`` (groups under ``min_size`` dropped)."""
    if len(points) == 0:
        return []
    pairs = cKDTree(points).query_pairs(eps, output_type="ndarray")  # (P, 2)
    graph = np.zeros((len(points), len(points)), dtype=bool)
    graph[pairs[:, 0], pairs[:, 1]] = True
    _, labels = connected_components(graph, directed=False)
    groups = [points[labels == k] for k in np.unique(labels)]
    return [g for g in groups if len(g) >= min_size]


def groups_1d(values: np.ndarray, gap: float, min_size: int = 3) -> int:
    """How many runs of sorted values are separated by more than ``gap`` (runs under ``min_size`` dropped)."""
    if len(values) == 0:
        return 0
    v = np.sort(values)
    runs = np.split(v, np.nonzero(np.diff(v) > gap)[0] + 1)
    return sum(len(r) >= min_size for r in runs)


def z_slice(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Points whose height lies between fractions ``lo`` and ``hi`` of the z extent."""
    z0, zr = p[:, 2].min(), np.ptp(p[:, 2])
    return p[(p[:, 2] >= z0 + lo * zr) & (p[:, 2] <= z0 + hi * zr)]


def highest_big_level(p: np.ndarray, frac: float = 0.4, bin_: float = 0.02) -> float:
    """Height of the highest z-histogram bin holding at least ``frac`` of the fullest bin (a mattress top)."""
    edges = np.arange(p[:, 2].min(), p[:, 2].max() + bin_, bin_)
    counts, _ = np.histogram(p[:, 2], edges)
    k = int(np.nonzero(counts >= frac * counts.max())[0].max())
    return float((edges[k] + edges[k + 1]) / 2.0)


def corner_fraction(xy: np.ndarray) -> float:
    """Share of points in the corners of their bounding box (|u|+|v| > 1.55): about 0.08 for a square, 0 for a disk."""
    centre = (xy.min(0) + xy.max(0)) / 2.0
    uv = (xy - centre) / (np.ptp(xy, axis=0) / 2.0)
    return float(np.mean(np.abs(uv).sum(1) > 1.55))


def roundness(group_xy: np.ndarray) -> float:
    """Spread of the Euclidean radius minus spread of the max-norm radius: < 0 for a circle, > 0 for a square."""
    d = group_xy - (group_xy.min(0) + group_xy.max(0)) / 2.0
    r2, rinf = np.linalg.norm(d, axis=1), np.abs(d).max(1)
    return float(r2.std() / r2.mean() - rinf.std() / rinf.mean())


def count_legs(p: np.ndarray, lo: float, hi: float, eps: float = 0.08) -> str:
    """Number of separate supports crossing a horizontal slice."""
    return str(len(clusters(z_slice(p, lo, hi)[:, :2], eps)))


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


# ---------------------------------------------------------------------------------------------- probes


def chair_leg_shape(p: np.ndarray) -> str:
    legs = [g for g in clusters(z_slice(p, 0.04, 0.26)[:, :2], 0.08) if len(g) >= 8]
    return "square" if np.mean([roundness(g) for g in legs]) > 0.0 else "round"


def chair_seat_top(p: np.ndarray) -> float:
    """Seat top: the highest large horizontal surface in the central strip of x (armrests lie outside it)."""
    return highest_big_level(p[np.abs(p[:, 0] - (p[:, 0].min() + p[:, 0].max()) / 2.0) < 0.25 * np.ptp(p[:, 0])], 0.5)


def chair_back(p: np.ndarray) -> str:
    """Back height above the seat top over the seat height."""
    zs = chair_seat_top(p)
    return "tall" if (p[:, 2].max() - zs) / (zs - p[:, 2].min()) > 0.8 else "short"


def chair_arms(p: np.ndarray) -> str:
    """Anything above the seat in its front half is an armrest (the back stands at the rear)."""
    zs, ymid = chair_seat_top(p), (p[:, 1].min() + p[:, 1].max()) / 2.0
    return yes(np.sum((p[:, 2] > zs + 0.06) & (p[:, 1] < ymid)) >= 10)


def stool_seat(p: np.ndarray) -> str:
    top = p[p[:, 2] > p[:, 2].max() - 0.03]
    return "square" if corner_fraction(top[:, :2]) > 0.03 else "round"


def stool_height(p: np.ndarray) -> str:
    top = p[p[:, 2] > p[:, 2].max() - 0.03]
    return "tall" if np.ptp(p[:, 2]) / np.ptp(top[:, 0]) > 1.4 else "low"


def table_top(p: np.ndarray) -> str:
    top = p[p[:, 2] > p[:, 2].max() - 0.02][:, :2]
    if corner_fraction(top) < 0.03:
        return "round"
    ext = np.ptp(top, axis=0)
    return "rectangular" if ext.max() / ext.min() > 1.3 else "square"


def table_height(p: np.ndarray) -> str:
    return "tall" if np.ptp(p[:, 2]) / np.ptp(p[:, :2], axis=0).max() > 0.44 else "low"


def above_seat_share(p: np.ndarray, margin: float) -> float:
    """Share of the points higher than ``margin`` above the seat top (the highest large horizontal surface)."""
    return float(np.mean(p[:, 2] > highest_big_level(p, frac=0.5) + margin))


def bed_board(p: np.ndarray, head: bool) -> str:
    zt, ymid = highest_big_level(p), (p[:, 1].min() + p[:, 1].max()) / 2.0
    high = p[p[:, 2] > zt + 0.1]
    return yes(np.sum(high[:, 1] > ymid if head else high[:, 1] < ymid) >= 15)


def sofa_seat_top(p: np.ndarray) -> float:
    """Top of the seat cushions: the highest point in the front-centre column (arms and back excluded)."""
    front = p[:, 1] < p[:, 1].min() + 0.4 * np.ptp(p[:, 1])
    centre = np.abs(p[:, 0] - (p[:, 0].min() + p[:, 0].max()) / 2.0) < 0.15 * np.ptp(p[:, 0])
    return float(p[front & centre, 2].max())


def sofa_seats(p: np.ndarray) -> str:
    """Two seats leave a seam between cushions at the middle; three put a cushion there."""
    zs = sofa_seat_top(p)
    front = p[:, 1] < p[:, 1].min() + 0.45 * np.ptp(p[:, 1])
    band = p[front & (p[:, 2] > zs - 0.1) & (p[:, 2] < zs + 0.01), 0]
    return "2" if np.sum(np.abs(band - (p[:, 0].min() + p[:, 0].max()) / 2.0) < 0.045) == 0 else "3"


def sofa_arms(p: np.ndarray) -> str:
    front = p[:, 1] < p[:, 1].min() + 0.4 * np.ptp(p[:, 1])
    return yes(np.sum(front & (p[:, 2] > sofa_seat_top(p) + 0.05)) >= 20)


def sofa_back(p: np.ndarray) -> str:
    zs = sofa_seat_top(p)
    return "high" if (p[:, 2].max() - zs) / (zs - p[:, 2].min()) > 0.8 else "low"


def bookshelf_shelves(p: np.ndarray) -> str:
    """Boards seen through the open front, away from the side panels and the back: shelves = boards - 1."""
    inner = np.abs(p[:, 0] - (p[:, 0].min() + p[:, 0].max()) / 2.0) < 0.3 * np.ptp(p[:, 0])
    y = (p[:, 1] - p[:, 1].min()) / np.ptp(p[:, 1])
    return str(groups_1d(p[inner & (y > 0.25) & (y < 0.7), 2], gap=0.1) - 1)


def bookshelf_back(p: np.ndarray) -> str:
    """A back panel fills the back plane at every height; without it only board edges reach it."""
    inner = np.abs(p[:, 0] - (p[:, 0].min() + p[:, 0].max()) / 2.0) < 0.3 * np.ptp(p[:, 0])
    back = p[inner & (p[:, 1] > p[:, 1].max() - 0.02), 2]
    counts, _ = np.histogram(back, np.arange(p[:, 2].min(), p[:, 2].max() + 0.02, 0.02))
    return yes(np.mean(counts > 0) > 0.5)


def cabinet_drawers(p: np.ndarray) -> str:
    """One bar handle per drawer: the front-most points form one height group per handle."""
    return str(groups_1d(p[p[:, 1] < p[:, 1].min() + 0.045, 2], gap=0.08))


def cabinet_legs(p: np.ndarray) -> str:
    """On legs the body floats: nothing near the floor under its middle, and four supports at the corners."""
    low = p[p[:, 2] < p[:, 2].min() + 0.05]
    uv = np.abs(low[:, :2] - (p[:, :2].min(0) + p[:, :2].max(0)) / 2.0) / np.ptp(p[:, :2], axis=0)
    under_middle = np.sum((uv < 0.25).all(1))
    legs = z_slice(p, 0.0, 0.12 / np.ptp(p[:, 2]))[:, :2]
    return yes(under_middle == 0 and len(clusters(legs, eps=0.12, min_size=1)) == 4)


def house_floors(p: np.ndarray) -> str:
    """Window rows: the points furthest out front and back (protruding windows) form one height group per storey."""
    outer = (p[:, 1] < p[:, 1].min() + 0.02) | (p[:, 1] > p[:, 1].max() - 0.02)
    return str(groups_1d(p[outer, 2], gap=0.07))


def house_roof(p: np.ndarray) -> str:
    """A gable narrows steadily with height; walls and a flat roof keep the full width up to the top."""
    upper = p[p[:, 2] > p[:, 2].min() + 0.5 * np.ptp(p[:, 2])]
    width, narrowing = np.ptp(p[:, 0]), 0
    for lo in np.arange(upper[:, 2].min(), upper[:, 2].max(), 0.025):
        layer = upper[(upper[:, 2] >= lo) & (upper[:, 2] < lo + 0.025), 0]
        narrowing += len(layer) >= 3 and 0.25 < np.ptp(layer) / width < 0.85
    return "gabled" if narrowing >= 3 else "flat"


def house_chimney(p: np.ndarray) -> str:
    top = p[p[:, 2] > p[:, 2].max() - 0.06]
    return yes(np.ptp(top[:, 1]) / np.ptp(p[:, 1]) < 0.4)


def ladder_rungs(p: np.ndarray) -> str:
    """Points well inside the rails (the rail spacing is read off the bottom and top) group by rung height."""
    z0, zr, xc = p[:, 2].min(), np.ptp(p[:, 2]), (p[:, 0].min() + p[:, 0].max()) / 2.0
    hb = np.ptp(z_slice(p, 0.0, 0.1)[:, 0]) / 2.0
    ht = np.ptp(z_slice(p, 0.9, 1.0)[:, 0]) / 2.0
    half = hb + (ht - hb) * (p[:, 2] - z0) / zr
    return str(groups_1d(p[np.abs(p[:, 0] - xc) < 0.45 * half, 2], gap=0.03))


def ladder_rails(p: np.ndarray) -> str:
    ratio = np.ptp(z_slice(p, 0.88, 1.0)[:, 0]) / np.ptp(z_slice(p, 0.0, 0.12)[:, 0])
    return "tapered" if ratio < 0.85 else "parallel"


PROBES: dict[str, dict[str, Callable[[np.ndarray], str]]] = {
    "chair": {
        "legs": lambda p: count_legs(p, 0.04, 0.26),
        "back": chair_back,
        "armrests": chair_arms,
        "leg_shape": chair_leg_shape,
    },
    "stool": {"legs": lambda p: count_legs(p, 0.05, 0.26, eps=0.12), "seat": stool_seat, "height": stool_height},
    "table": {"legs": lambda p: count_legs(p, 0.3, 0.55, eps=0.25), "top": table_top, "height": table_height},
    "bench": {
        "legs": lambda p: count_legs(p, 0.05, 0.3),
        "backrest": lambda p: yes(above_seat_share(p, 0.06) > 0.05),
        "length": lambda p: "long" if np.ptp(p[:, 0]) / np.ptp(p[:, 1]) > 4.1 else "short",
    },
    "bed": {
        "headboard": lambda p: bed_board(p, head=True),
        "footboard": lambda p: bed_board(p, head=False),
        "width": lambda p: "single" if np.ptp(p[:, 1]) / np.ptp(p[:, 0]) > 1.7 else "double",
    },
    "sofa": {"seats": sofa_seats, "armrests": sofa_arms, "back": sofa_back},
    "bookshelf": {
        "shelves": bookshelf_shelves,
        "back_panel": bookshelf_back,
        "width": lambda p: "wide" if np.ptp(p[:, 0]) / np.ptp(p[:, 1]) > 2.7 else "narrow",
    },
    "cabinet": {"drawers": cabinet_drawers, "legs": cabinet_legs},
    "house": {"floors": house_floors, "roof": house_roof, "chimney": house_chimney},
    "ladder": {"rungs": ladder_rungs, "rails": ladder_rails},
}


# ---------------------------------------------------------------------------------------------- tests


def test_probe_helpers_against_obvious_cases() -> None:
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 0.01, size=(20, 2)) for c in ((0, 0), (1, 0), (0, 1))])
    assert len(clusters(blobs, eps=0.1)) == 3
    assert len(clusters(blobs, eps=2.0)) == 1
    assert groups_1d(np.array([0.0, 0.01, 0.02, 0.5, 0.51, 0.52, 0.9]), gap=0.1) == 2
    theta = rng.uniform(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(theta), np.sin(theta)], 1)
    square = rng.uniform(-1, 1, (200, 2))
    square[np.arange(200), rng.integers(0, 2, 200)] = rng.choice([-1.0, 1.0], 200)  # push onto the edges
    assert roundness(circle) < 0.0 < roundness(square)
    disk = circle * np.sqrt(rng.uniform(0, 1, 200))[:, None]
    assert corner_fraction(disk) == 0.0 < corner_fraction(rng.uniform(-1, 1, (400, 2)))


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_combination_builds_a_valid_deterministic_mesh(category: str) -> None:
    build = builder_for(category)
    for attributes in combinations(category):
        mesh = build(attributes, np.random.default_rng(7))
        assert len(mesh.faces) > 0 and mesh.area > 0.0, attributes
        assert np.isfinite(mesh.vertices).all(), attributes
        again = build(attributes, np.random.default_rng(7))
        np.testing.assert_array_equal(mesh.vertices, again.vertices)
        other = build(attributes, np.random.default_rng(8))
        assert not np.allclose(np.ptp(mesh.vertices, 0), np.ptp(other.vertices, 0)), "no nuisance variation"


@pytest.mark.parametrize("category", CATEGORIES)
def test_probes_recover_every_attribute_value(category: str) -> None:
    failures = []
    for attributes in combinations(category):
        for seed in SEEDS:
            points = cloud(category, attributes, seed)
            for name, probe in PROBES[category].items():
                got = probe(points)
                if got != attributes[name]:
                    failures.append(f"{attributes} seed={seed}: {name} read as {got!r}")
    assert not failures, "\n".join(failures)
