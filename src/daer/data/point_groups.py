"""FPS/kNN point groups stored with the shards, so that evaluation, indexing and training do not group on the fly.

Farthest-point sampling and kNN grouping depend only on a shape's points, yet every evaluation pass, index
build and training run used to compute them again. A data set written by :func:`daer.data.build.build_synth`
or an importer therefore stores them once per shape, for the model configs it is likely to meet (the built-in
``tiny`` and ``small`` by default), as one shard column per group set::

    groups_<n>_<N1>x<N2>x<N3>_<k1>x<k2>x<k3>   per shape a fixed-size list of uint16: for each level l in
                                               order, its N_l centre indices, then its N_l x k_l neighbour
                                               indices (row-major); level 1 indexes the shape's n served
                                               points, level l the centres of level l-1

The grouped points are exactly what a model with ``n_points = n`` is fed: the fixed subset of the stored
points (:func:`daer.data.sampling.fixed_subset`), as read back (float16 storage rounded first), centred and
scaled by :func:`daer.models.pointops.normalize_batch` as ``DaerModel.encode_points`` does, so the stored
groups are the ones the encoder computes for itself on the CPU, index for index.

The manifest lists the sets (schema version 3): ``"point_groups": {"version": 1, "dtype": "uint16",
"sets": [{"column", "n_points", "level_sizes", "level_k", "config"}]}``. A reader takes a set only when its
``(n_points, level_sizes, level_k)`` equal the ones its model is fed (:func:`stored_spec`); otherwise, and
for every data set written before the column existed, it groups on the fly as before. Every block read is
checked (width, nulls, and each index against the size of the level it indexes, :func:`check_block`), so a
damaged array is refused with an error naming its shard instead of gathering someone else's points.

Augmentation: yaw rotation about the origin and isotropic scaling leave FPS and kNN unchanged; the jitter of
training (a few thousandths of the unit sphere) can move a point across a neighbourhood's boundary. Training
serves the groups of the clean stored shape with every augmented copy, the policy its per-run cache always
had (:class:`daer.data.dataset.ShapeTextDataset`); stored groups only move where that cache comes from.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from daer.errors import BadInputError, IntegrityError

if TYPE_CHECKING:
    from daer.models.pointops import PointGroups

GROUPS_VERSION = 1
DEFAULT_CONFIGS: tuple[str, ...] = ("tiny", "small")  # built-in configs whose groups a data set stores
MAX_POINTS = 1 << 16  # indices are stored as uint16


@dataclass(frozen=True)
class GroupSpec:
    """What one stored group set is computed for: the served point count and the levels' sizes and k.

    Attributes:
        n_points: points the model is fed (the fixed subset of a shape's stored points).
        level_sizes: centres per level.
        level_k: neighbours per centre per level.
        config: name of the built-in config it serves (for people reading the manifest; not compared).
    """

    n_points: int
    level_sizes: tuple[int, ...]
    level_k: tuple[int, ...]
    config: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        sizes, ks = tuple(int(v) for v in self.level_sizes), tuple(int(v) for v in self.level_k)
        object.__setattr__(self, "level_sizes", sizes)
        object.__setattr__(self, "level_k", ks)
        object.__setattr__(self, "n_points", int(self.n_points))
        if not sizes or len(sizes) != len(ks):
            raise BadInputError(f"point groups: level_sizes {sizes} and level_k {ks} need one entry per level")
        if not 1 <= self.n_points <= MAX_POINTS:
            raise BadInputError(f"point groups: n_points must be in 1..{MAX_POINTS}, got {self.n_points}")
        prev = self.n_points
        for m, k in zip(sizes, ks, strict=True):
            if not (1 <= m <= prev and 1 <= k <= prev):
                raise BadInputError(f"point groups: level of {m} centres x {k} neighbours among {prev} points")
            prev = m

    @classmethod
    def of(cls, config: Any, n_points: int | None = None) -> GroupSpec:
        """The set a model config is fed (``n_points`` overrides the config's, e.g. a data set with fewer)."""
        n = int(config.n_points if n_points is None else n_points)
        return cls(n, tuple(config.level_sizes), tuple(config.level_k), getattr(config, "name", "") or "")

    @property
    def column(self) -> str:
        """The shard column that holds this set."""
        sizes, ks = "x".join(map(str, self.level_sizes)), "x".join(map(str, self.level_k))
        return f"groups_{self.n_points}_{sizes}_{ks}"

    @property
    def width(self) -> int:
        """uint16 values per shape."""
        return sum(m * (1 + k) for m, k in zip(self.level_sizes, self.level_k, strict=True))

    @functools.cached_property
    def bounds(self) -> np.ndarray:
        """(width,) exclusive upper bound of every stored index: the size of the level it indexes."""
        parts, prev = [], self.n_points
        for m, k in zip(self.level_sizes, self.level_k, strict=True):
            parts.append(np.full(m * (1 + k), prev, dtype=np.int32))
            prev = m
        return np.concatenate(parts)

    def to_json(self) -> dict[str, Any]:
        """The manifest entry of this set."""
        return {
            "column": self.column,
            "n_points": self.n_points,
            "level_sizes": list(self.level_sizes),
            "level_k": list(self.level_k),
            "config": self.config,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GroupSpec:
        """Inverse of :meth:`to_json` (raises IntegrityError on a malformed entry)."""
        try:
            spec = cls(int(d["n_points"]), tuple(d["level_sizes"]), tuple(d["level_k"]), str(d.get("config", "")))
            column = d["column"]
        except (KeyError, TypeError, ValueError, BadInputError) as e:
            raise IntegrityError(f"manifest point_groups: malformed set {d!r} ({e})") from e
        if column != spec.column:
            raise IntegrityError(f"manifest point_groups: set {d!r} names column {column!r}, not {spec.column!r}")
        return spec


@functools.cache
def default_specs() -> tuple[GroupSpec, ...]:
    """The group sets of the built-in configs in :data:`DEFAULT_CONFIGS`, as their JSON files define them."""
    from daer.models.config import load_config

    specs: dict[GroupSpec, None] = {}
    for name in DEFAULT_CONFIGS:
        specs.setdefault(GroupSpec.of(load_config(name)))
    return tuple(specs)


def applicable(specs: Iterable[GroupSpec], n_stored: int) -> tuple[GroupSpec, ...]:
    """The sets a data set of ``n_stored`` points per shape can hold (a model is fed at most that many), once each.

    A set for more points than are stored is left out: such a model is fed all ``n_stored`` points, which
    another set (for ``n_stored``) would describe.
    """
    return tuple(dict.fromkeys(s for s in specs if s.n_points <= n_stored))


def manifest_entry(specs: Sequence[GroupSpec]) -> dict[str, Any]:
    """The manifest's ``point_groups`` value for these stored sets."""
    return {"version": GROUPS_VERSION, "dtype": "uint16", "sets": [s.to_json() for s in specs]}


def stored_sets(manifest: dict[str, Any]) -> tuple[GroupSpec, ...]:
    """The sets a data set stores (none for data sets written before schema version 3, or of another groups
    version, which are then grouped on the fly)."""
    entry = manifest.get("point_groups")
    if not entry:
        return ()
    if not isinstance(entry, dict) or not isinstance(entry.get("sets", []), list):
        raise IntegrityError(f"manifest point_groups: expected an object with a list of sets, got {entry!r}")
    if entry.get("version") != GROUPS_VERSION or entry.get("dtype", "uint16") != "uint16":
        return ()
    return tuple(GroupSpec.from_json(d) for d in entry["sets"])


def stored_spec(manifest: dict[str, Any], config: Any, n_served: int | None) -> GroupSpec | None:
    """The stored set matching what a model with ``config`` is fed: ``n_served`` points (the fixed subset of
    each shape's stored points), grouped at ``config.level_sizes`` / ``config.level_k``; None where the data
    set stores no such set (or ``config`` is not a point model's), so the caller groups on the fly."""
    sizes, ks = getattr(config, "level_sizes", None), getattr(config, "level_k", None)
    if n_served is None or sizes is None or ks is None:
        return None
    try:
        want = GroupSpec(int(n_served), tuple(sizes), tuple(ks))
    except BadInputError:
        return None
    for spec in stored_sets(manifest):
        if spec == want:
            return spec
    return None


def served_points(n_stored: int, n_model: int | None) -> int:
    """Points a model taking ``n_model`` is fed from shapes of ``n_stored`` (all of them when it takes more)."""
    return n_stored if n_model is None else min(int(n_stored), int(n_model))


def compute_block(points: np.ndarray, spec: GroupSpec, chunk: int = 64) -> np.ndarray:
    """The groups of every shape as stored: (R, N, 3) points (as read back) -> (R, width) uint16.

    The encoder's own path, chunk by chunk: the fixed subset of ``spec.n_points``, ``normalize_batch``,
    ``precompute_groups``.
    """
    import torch

    from daer.data.sampling import fixed_subset  # here: sampling loads trimesh, which readers never need
    from daer.models.pointops import normalize_batch, precompute_groups

    points = np.asarray(points)
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[1] < spec.n_points:
        raise BadInputError(f"point groups for {spec.n_points} points: got points of shape {points.shape}")
    subset = fixed_subset(points.shape[1], spec.n_points)
    out = np.empty((len(points), spec.width), dtype=np.uint16)
    with torch.no_grad():
        for s in range(0, len(points), chunk):
            block = points[s : s + chunk] if subset is None else points[s : s + chunk, subset]
            x = normalize_batch(torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)))  # (b, n, 3)
            out[s : s + len(block)] = pack(precompute_groups(x, spec.level_sizes, spec.level_k))
    return out


def pack(groups: PointGroups) -> np.ndarray:
    """Batched groups -> (B, width) uint16 in the column layout (module docstring)."""
    import torch

    b = groups.centers[0].shape[0]
    parts = []
    for c, nb in zip(groups.centers, groups.neighbors, strict=True):
        parts += [c.reshape(b, -1), nb.reshape(b, -1)]
    return torch.cat(parts, dim=1).cpu().numpy().astype(np.uint16)


def unpack(block: np.ndarray, spec: GroupSpec, compact: bool = False) -> PointGroups:
    """(B, width) stored groups -> batched :class:`PointGroups`: int64 tensors, or with ``compact`` int16 (int32
    past 32,768 points) views of one buffer, to hold a whole split. Check data read from disk with
    :func:`check_block` first."""
    import torch

    from daer.models.pointops import PointGroups

    block = np.asarray(block)
    if block.ndim != 2 or block.shape[1] != spec.width:
        raise BadInputError(f"point groups block of shape {block.shape}; {spec.column} needs (B, {spec.width})")
    dtype = (np.int16 if spec.n_points <= 1 << 15 else np.int32) if compact else np.int64
    # uint16 indices below 32,768 read the same as int16: a view, so a memory-mapped split is not copied
    same_bits = block.dtype == np.uint16 and dtype == np.int16
    t = torch.from_numpy(block.view(np.int16) if same_bits else block.astype(dtype))  # (B, width)
    b, at = len(block), 0
    centers, neighbors = [], []
    for m, k in zip(spec.level_sizes, spec.level_k, strict=True):
        c, nb = t[:, at : at + m], t[:, at + m : at + m * (1 + k)].view(b, m, k)  # (B, m), (B, m, k)
        centers.append(c if compact else c.contiguous())
        neighbors.append(nb if compact else nb.contiguous())
        at += m * (1 + k)
    return PointGroups(centers, neighbors)


def check_block(block: np.ndarray, spec: GroupSpec, where: str, ids: Sequence[str] | None = None) -> None:
    """Raise IntegrityError (naming ``where``, a shard file) unless ``block`` holds valid groups of ``spec``:
    (R, width) with every index inside the level it indexes."""
    if block.ndim != 2 or block.shape[1] != spec.width:
        raise IntegrityError(
            f"{where}: stored point groups {spec.column} hold {block.shape[1:]} values per shape, expected {spec.width}"
        )
    bad = block >= spec.bounds  # (R, width); uint16 cannot be negative
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        ends = np.cumsum([m * (1 + k) for m, k in zip(spec.level_sizes, spec.level_k, strict=True)])
        level = int(np.searchsorted(ends, col, side="right"))
        shape = ids[row] if ids is not None else f"row {row}"
        raise IntegrityError(
            f"{where}: stored point groups {spec.column} of shape {shape!r}: index {int(block[row, col])} at "
            f"level {level + 1} is outside 0..{int(spec.bounds[col]) - 1}; the shard is damaged (build or import "
            "it again)"
        )
