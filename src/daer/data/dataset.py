"""Torch data set over a shard folder: points, one caption per shape per epoch, category, cached groups.

Every random choice (which caption, which augmentation) is drawn from a generator seeded by
``(seed, epoch, shape index)``, and the batch order from one seeded by ``(seed, epoch)``: the data
a step sees depends on nothing but the step, so a resumed run and a run split over N ranks see
exactly the shapes and captions a single uninterrupted run sees.

Farthest-point sampling and kNN grouping do not change under yaw rotation or isotropic scaling
(and barely under small jitter), so they are computed once per shape and cached (in memory, and in
a safetensors file when a cache folder is given) instead of once per step; where the data set stores the
groups of the model's config (:mod:`daer.data.point_groups`), the cache is filled from the shards instead.

Augmentation and groups, one policy for both sources: every augmented copy of a shape is served the groups
of the clean stored shape. Yaw rotation about the origin and isotropic scaling leave them exact; the jitter
(sigma 0.005 of the unit sphere, clipped at 3 sigma) can move a point across a neighbourhood's boundary, so a
jittered copy's own kNN may differ by a few points from the groups it is served, a fixed neighbourhood of
the shape rather than of the noise; a stretched copy (``stretch``, off by default) is served them too, each
neighbourhood then stretched with its shape. Part-dropped and part-swapped views are other shapes: their groups are
computed when they are served.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from daer.data.point_groups import served_points, stored_spec, unpack
from daer.data.sampling import fixed_subset
from daer.data.shards import MANIFEST, iter_records, load_groups, load_point_attrs, load_points, read_manifest
from daer.errors import BadInputError
from daer.synth.part_drop import PartDrop
from daer.synth.part_swap import Donor, PartSwap
from daer.utils.atomic import atomic_path
from daer.utils.hashing import sha256_file

GroupsFn = Callable[[torch.Tensor], Any]  # (B, N, 3) points -> groups with batch dim 0
Key = int | tuple[int, int]  # shape index, or (epoch, shape index)


@dataclass(frozen=True)
class Augment:
    """Training augmentation; every copy is served the FPS/kNN groups of the clean shape (module docstring).

    Attributes:
        yaw: rotate by a random angle about +z (up).
        scale: isotropic scale drawn uniformly from this range ((1, 1) for none). The model's unit-sphere
            normalisation undoes it; it is kept so that runs made with it draw the same numbers.
        jitter: standard deviation of Gaussian noise per coordinate (clipped at 3 sigma; 0 for none).
        stretch: each axis scaled by its own factor drawn uniformly from [1 - stretch, 1 + stretch] (0 for
            none): proportions change, so a part's absolute size stops telling which combination it came in.
    """

    yaw: bool = True
    scale: tuple[float, float] = (0.85, 1.15)
    jitter: float = 0.005
    stretch: float = 0.0

    def apply(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Transform one (N, 3) cloud."""
        out = points
        if self.yaw:
            a = rng.uniform(0.0, 2.0 * np.pi)
            c, s = np.cos(a), np.sin(a)
            rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
            out = out @ rot.T
        lo, hi = self.scale
        if hi > lo or lo != 1.0:
            out = out * np.float32(rng.uniform(lo, hi))
        if self.stretch > 0:  # no draw at 0: runs without it see the numbers they saw before it existed
            out = out * rng.uniform(1.0 - self.stretch, 1.0 + self.stretch, size=3).astype(np.float32)
        if self.jitter > 0:
            noise = rng.normal(0.0, self.jitter, size=out.shape)
            out = out + np.clip(noise, -3 * self.jitter, 3 * self.jitter).astype(np.float32)
        return out.astype(np.float32, copy=False)


@dataclass
class Batch:
    """A collated batch.

    Attributes:
        indices: (B,) shape indices into the data set.
        points: (B, N, 3) float32.
        captions: one caption per shape.
        categories: category per shape.
        groups: the cached FPS/kNN groups of these shapes (None without a groups function).
        point_attrs: (B, N) int32 part labels (``point_attrs`` bit masks, zeros where a shape has none), or
            None when the data set serves no labels.
        attributes: each shape's attribute values (with ``point_attrs``), else None.
        defining: (B,) bool, True for a part-dropped view that lost a part its category needs (None without
            part drop).
    """

    indices: torch.Tensor
    points: torch.Tensor
    captions: list[str]
    categories: list[str]
    groups: Any = None
    point_attrs: torch.Tensor | None = None
    attributes: list[dict[str, str]] | None = None
    defining: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.captions)

    def to(self, device: torch.device | str) -> Batch:
        labels = self.point_attrs.to(device) if self.point_attrs is not None else None
        return dataclasses.replace(
            self,
            points=self.points.to(device),
            groups=map_tensors(self.groups, lambda t: t.to(device)),
            point_attrs=labels,
        )


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor in a tensor, dataclass, list/tuple or dict of them (others kept)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(
            obj, **{f.name: map_tensors(getattr(obj, f.name), fn) for f in dataclasses.fields(obj)}
        )
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    return obj


def _flatten(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a groups object by dotted name (for the cache file)."""
    if isinstance(obj, torch.Tensor):
        return {prefix or "tensor": obj}
    out: dict[str, torch.Tensor] = {}
    if dataclasses.is_dataclass(obj):
        items: Sequence[tuple[str, Any]] = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    elif isinstance(obj, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(obj)]
    elif isinstance(obj, dict):
        items = list(obj.items())
    else:
        return out
    for name, value in items:
        out.update(_flatten(value, f"{prefix}.{name}" if prefix else str(name)))
    return out


def _unflatten(template: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """Rebuild a groups object shaped like ``template`` from :func:`_flatten`'s output."""
    if isinstance(template, torch.Tensor):
        return tensors[prefix or "tensor"]
    if dataclasses.is_dataclass(template):
        return dataclasses.replace(
            template,
            **{
                f.name: _unflatten(getattr(template, f.name), tensors, f"{prefix}.{f.name}" if prefix else f.name)
                for f in dataclasses.fields(template)
            },
        )
    if isinstance(template, (list, tuple)):
        return type(template)(
            _unflatten(v, tensors, f"{prefix}.{i}" if prefix else str(i)) for i, v in enumerate(template)
        )
    if isinstance(template, dict):
        return {k: _unflatten(v, tensors, f"{prefix}.{k}" if prefix else str(k)) for k, v in template.items()}
    return template


def _compact(t: torch.Tensor) -> torch.Tensor:
    """Index tensors kept in int16 (or int32) in memory and on disk; served as int64."""
    if t.is_floating_point() or t.numel() == 0:
        return t
    return t.to(torch.int16) if int(t.max()) < 2**15 and int(t.min()) >= -(2**15) else t.to(torch.int32)


def _take(groups: Any, index: torch.Tensor | int) -> Any:
    """Rows ``index`` of every cached tensor, index tensors widened to int64."""
    return map_tensors(groups, lambda t: t[index] if t.is_floating_point() else t[index].long())


def _cat(parts: list[Any]) -> Any:
    """Concatenate groups objects along the batch dim."""
    first = parts[0]
    flat = [_flatten(p) for p in parts]
    return _unflatten(first, {k: torch.cat([f[k] for f in flat]) for k in flat[0]})


class ShapeTextDataset(torch.utils.data.Dataset):
    """Shapes of one split held in memory, with captions sampled per epoch and cached point groups.

    Args:
        ids: shape ids, one per row of ``points``.
        points: (M, N, 3) float32.
        captions: each shape's captions (at least one each).
        categories: each shape's category.
        seed: seeds caption choice and augmentation, with the epoch and shape index.
        n_points: points per shape to serve (a fixed random subset, the same for every shape and
            epoch, so cached groups stay valid); None keeps all N.
        augment: training augmentation, or None.
        groups_fn: computes FPS/kNN groups for (B, n_points, 3) points; None serves no groups.
        groups: every shape's groups at ``groups_fn``'s settings, batched in row order (what :meth:`from_folder`
            reads from the shards where they are stored): served instead of computed and cached (``groups_fn``
            still groups part-dropped and part-swapped views); needs ``groups_fn``.
        groups_key: describes ``groups_fn``'s settings; part of the cache file name and check.
        cache_dir: folder for the groups cache file (None: memory only).
        cache_tag: identifies the data (e.g. the manifest hash and split) in the cache file name.
        point_attrs: (M, N) part labels (``point_attrs`` bit masks, zeros where a shape has none), served
            with every batch for the grounding loss; None serves none.
        attributes: each shape's attribute values (required with ``point_attrs``).
        part_drop: serve some shapes with one labelled part removed and a caption of what is left (needs
            ``point_attrs``; the groups of such a view are computed when it is served).
        part_swap: serve some shapes with one labelled part taken from another shape of their category,
            captioned with the values that result (needs ``point_attrs``; drawn before ``part_drop``, and a
            swapped view is not also dropped).
    """

    def __init__(
        self,
        ids: Sequence[str],
        points: np.ndarray,
        captions: Sequence[Sequence[str]],
        categories: Sequence[str],
        *,
        seed: int = 0,
        n_points: int | None = None,
        augment: Augment | None = None,
        groups_fn: GroupsFn | None = None,
        groups: Any = None,
        groups_key: str = "",
        cache_dir: str | os.PathLike[str] | None = None,
        cache_tag: str = "",
        groups_chunk: int = 256,
        point_attrs: np.ndarray | None = None,
        attributes: Sequence[dict[str, str]] | None = None,
        part_drop: PartDrop | None = None,
        part_swap: PartSwap | None = None,
    ) -> None:
        points = np.asarray(points)
        if points.ndim != 3 or points.shape[2] != 3:
            raise BadInputError(f"points must have shape (M, N, 3), got {points.shape}")
        m = len(points)
        if not (len(ids) == len(captions) == len(categories) == m):
            raise BadInputError(
                f"ids ({len(ids)}), captions ({len(captions)}), categories ({len(categories)}) and "
                f"points ({m}) must have one entry per shape"
            )
        if m == 0:
            raise BadInputError("the data set is empty")
        for i, caps in enumerate(captions):
            if not caps:
                raise BadInputError(f"shape {ids[i]!r} has no caption")
        n_all = points.shape[1]
        if n_points is not None and not 1 <= n_points <= n_all:
            raise BadInputError(f"n_points must be in 1..{n_all} (points per stored shape), got {n_points}")
        if point_attrs is not None:
            point_attrs = np.asarray(point_attrs)
            if point_attrs.shape != points.shape[:2] or attributes is None or len(attributes) != m:
                raise BadInputError(
                    f"point_attrs must be (M, N) = {points.shape[:2]} with one attributes dict per shape, "
                    f"got {point_attrs.shape} and {None if attributes is None else len(attributes)}"
                )
        if (part_drop is not None or part_swap is not None) and point_attrs is None:
            raise BadInputError("part drop and part swap need part labels (point_attrs) and attribute values")
        subset = fixed_subset(n_all, n_points)
        if subset is not None:
            points = points[:, subset]
            if point_attrs is not None:
                point_attrs = point_attrs[:, subset]
        self.ids = list(ids)
        self.points = np.ascontiguousarray(points, dtype=np.float32)  # (M, n, 3)
        self.captions = [list(c) for c in captions]
        self.categories = list(categories)
        self.seed = int(seed)
        self.augment = augment
        self.point_attrs = np.ascontiguousarray(point_attrs) if point_attrs is not None else None  # served as int32
        self.attributes = [dict(a) for a in attributes] if point_attrs is not None and attributes is not None else None
        self.part_drop = part_drop
        self.part_swap = part_swap
        self._by_category: dict[str, np.ndarray] = {}
        if part_swap is not None:
            cats = np.asarray(self.categories)
            self._by_category = {c: np.flatnonzero(cats == c) for c in dict.fromkeys(self.categories)}
        self.groups_fn = groups_fn
        self.groups = None
        if groups is not None:
            if groups_fn is None:
                raise BadInputError("stored groups are served with a groups_fn (it groups part-dropped views)")
            rows = {t.shape[0] for t in _flatten(groups).values()}
            if rows != {m}:
                raise BadInputError(f"stored groups hold {sorted(rows)} rows for {m} shapes")
            self.groups = groups
        elif groups_fn is not None:
            self.groups = self._load_or_compute_groups(groups_fn, groups_key, cache_dir, cache_tag, groups_chunk)

    @classmethod
    def from_folder(
        cls,
        data_dir: str | os.PathLike[str],
        split: str = "train",
        labels: bool = False,
        group_config: Any = None,
        **kwargs: Any,
    ) -> ShapeTextDataset:
        """Read one split of a shard folder (points in one pass, captions and categories in another).

        ``labels``: also serve part labels and attribute values, when the data set has any (the manifest's
        ``point_attrs`` count); a set without them serves none.
        ``group_config``: the model config (``level_sizes``, ``level_k``) that ``groups_fn`` groups for; where the
        data set stores that set for the points served, the groups are read from the shards instead of computed
        (no cache file is written: the shards are the cache).
        """
        cache = kwargs.get("cache_dir")  # the split's arrays are memory-mapped from files there (SplitArray)
        ids, points = load_points(data_dir, split, cache=cache)
        if not ids:
            raise BadInputError(f"{data_dir}: split {split!r} has no shapes")
        manifest = read_manifest(data_dir)
        served = served_points(points.shape[1], kwargs.get("n_points"))
        spec = stored_spec(manifest, group_config, served) if kwargs.get("groups_fn") else None
        if spec is not None and kwargs.get("groups") is None:
            group_ids, block = load_groups(data_dir, split, spec, cache=cache)
            if group_ids != ids:
                raise BadInputError(f"{data_dir}: stored groups of split {split!r} are not in the order of its points")
            kwargs["groups"] = unpack(block, spec, compact=True)
        labelled = labels and bool(manifest.get("point_attrs"))
        columns = ["category", "captions"] + (["attributes"] if labelled else [])
        captions, categories, attributes = [], [], []
        for i, rec in enumerate(iter_records(data_dir, split, columns=columns)):
            if i >= len(ids) or rec.id != ids[i]:
                raise BadInputError(f"{data_dir}: records of split {split!r} changed order while reading")
            captions.append(rec.captions)
            categories.append(rec.category)
            attributes.append(rec.attributes)
        if labelled:
            label_ids, point_attrs, _ = load_point_attrs(data_dir, split, cache=cache)
            if label_ids != ids:
                raise BadInputError(f"{data_dir}: part labels of split {split!r} are not in the order of its points")
            kwargs.update(point_attrs=point_attrs, attributes=attributes)
        kwargs.setdefault("cache_tag", f"{split}-{sha256_file(Path(data_dir) / MANIFEST)[:16]}")
        return cls(ids, points, captions, categories, **kwargs)

    def __len__(self) -> int:
        return len(self.points)

    # ------------------------------------------------------------------------------------------
    # groups cache

    def _load_or_compute_groups(self, groups_fn: GroupsFn, key: str, cache_dir: Any, tag: str, chunk: int) -> Any:
        m, n = self.points.shape[:2]
        digest = hashlib.sha256(json.dumps([key, tag, m, n]).encode()).hexdigest()[:16]
        template = groups_fn(torch.from_numpy(self.points[:1]))
        path = Path(cache_dir) / f"groups-{digest}.safetensors" if cache_dir is not None else None
        if path is not None and path.is_file():
            try:
                tensors = load_file(str(path))
                expected = _flatten(template)
                if set(tensors) == set(expected) and all(
                    tensors[k].shape[0] == m and tensors[k].shape[1:] == expected[k].shape[1:] for k in expected
                ):
                    return _unflatten(template, tensors)
            except Exception:  # a damaged cache is recomputed, never trusted
                pass
        parts = [template]
        for start in range(1, m, chunk):
            parts.append(groups_fn(torch.from_numpy(self.points[start : start + chunk])))
        groups = map_tensors(_cat(parts), _compact)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                flat = {k: v.contiguous() for k, v in _flatten(groups).items()}
                save_file(flat, str(tmp), metadata={"key": key, "tag": tag})
        return groups

    # ------------------------------------------------------------------------------------------
    # items

    def _rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index])

    def _item(self, key: Key) -> _Item:
        epoch, index = (0, key) if isinstance(key, (int, np.integer)) else key
        epoch, index = int(epoch), int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"shape index {index} out of range 0..{len(self) - 1}")
        rng = self._rng(epoch, index)
        caps = self.captions[index]
        item = _Item(index, self.points[index], caps[int(rng.integers(len(caps)))])
        if self.point_attrs is not None and self.attributes is not None:
            item.labels, item.attributes = self.point_attrs[index], self.attributes[index]
            view, category = None, self.categories[index]
            if self.part_swap is not None:  # own streams: the augmentation stream stays unchanged
                swap_rng = np.random.default_rng([self.seed, epoch, index, 0x5A4B])
                donor = partial(self._donor, index)
                view = self.part_swap.apply(item.points, item.labels, category, item.attributes, swap_rng, donor)
            if view is None and self.part_drop is not None:
                drop_rng = np.random.default_rng([self.seed, epoch, index, 0xD809])
                view = self.part_drop.apply(item.points, item.labels, category, item.attributes, drop_rng)
            if view is not None:
                item = _Item(index, view.points, view.caption, view.labels, view.attributes, True, view.defining)
        if self.augment is not None:
            item.points = self.augment.apply(item.points, rng)
        return item

    def _donor(self, index: int, rng: np.random.Generator) -> Donor | None:
        """Another shape of ``index``'s category, for :class:`PartSwap` (None where it is the only one)."""
        same = self._by_category[self.categories[index]]
        if len(same) < 2:
            return None
        j = int(same[rng.integers(len(same))])
        while j == index:
            j = int(same[rng.integers(len(same))])
        assert self.point_attrs is not None and self.attributes is not None
        return self.points[j], self.point_attrs[j], self.attributes[j]

    def _groups(self, items: Sequence[_Item]) -> Any:
        """The batch's groups: cached rows, recomputed for part-dropped and part-swapped views."""
        if self.groups is None:
            return None
        groups = _take(self.groups, torch.tensor([it.index for it in items], dtype=torch.long))
        rows = [r for r, it in enumerate(items) if it.fresh]
        if not rows or self.groups_fn is None:
            return groups
        fresh = _flatten(self.groups_fn(torch.from_numpy(np.stack([items[r].points for r in rows]))))
        at = torch.tensor(rows, dtype=torch.long)
        flat = {k: t.index_copy(0, at, fresh[k].to(t.dtype)) for k, t in _flatten(groups).items()}
        return _unflatten(groups, flat)

    def __getitem__(self, key: Key) -> dict[str, Any]:
        """One shape: ``index``, ``points`` (N, 3), ``caption``, ``category``, ``groups``, ``point_attrs`` (N,),
        ``attributes`` and ``defining`` (each None when not served)."""
        item = self._item(key)
        groups = self._groups([item])
        return {
            "index": item.index,
            "points": torch.from_numpy(np.array(item.points)),
            "caption": item.caption,
            "category": self.categories[item.index],
            "groups": _take(groups, 0) if groups is not None else None,
            "point_attrs": torch.from_numpy(np.array(item.labels, dtype=np.int32)) if item.labels is not None else None,
            "attributes": item.attributes,
            "defining": item.defining if self.part_drop is not None else None,
        }

    def __getitems__(self, keys: Sequence[Key]) -> Batch:
        """A whole batch at once (the DataLoader calls this instead of ``__getitem__`` per key)."""
        items = [self._item(k) for k in keys]
        idx = torch.tensor([it.index for it in items], dtype=torch.long)
        pts = torch.from_numpy(np.stack([it.points for it in items]))  # (B, N, 3)
        labelled = self.point_attrs is not None
        labels = torch.from_numpy(np.stack([it.labels for it in items]).astype(np.int32)) if labelled else None
        attrs = [it.attributes for it in items] if labelled else None
        categories = [self.categories[it.index] for it in items]
        defining = torch.tensor([it.defining for it in items]) if self.part_drop is not None else None
        return Batch(idx, pts, [it.caption for it in items], categories, self._groups(items), labels, attrs, defining)


@dataclass
class _Item:
    """One served shape before collation (labels and attributes None when the data set serves none)."""

    index: int
    points: np.ndarray
    caption: str
    labels: np.ndarray | None = None
    attributes: dict[str, str] | None = None
    fresh: bool = False  # points differ from the stored shape (a dropped or swapped view): groups computed when served
    defining: bool = False


def collate(items: Batch | Sequence[dict[str, Any]]) -> Batch:
    """DataLoader ``collate_fn``: passes a :class:`Batch` through, stacks a list of items."""
    if isinstance(items, Batch):
        return items
    groups = None
    if items and items[0]["groups"] is not None:
        groups = _cat([map_tensors(it["groups"], lambda t: t[None]) for it in items])
    labelled = bool(items) and items[0].get("point_attrs") is not None
    return Batch(
        torch.tensor([it["index"] for it in items], dtype=torch.long),
        torch.stack([it["points"] for it in items]),
        [it["caption"] for it in items],
        [it["category"] for it in items],
        groups,
        torch.stack([it["point_attrs"] for it in items]) if labelled else None,
        [it["attributes"] for it in items] if labelled else None,
        torch.tensor([it["defining"] for it in items]) if items and items[0].get("defining") is not None else None,
    )


@dataclass
class EpochBatchSampler:
    """Batches of ``(epoch, index)`` keys, endless, starting at any step.

    Each epoch is a permutation seeded by ``(seed, epoch)``, cut into global batches of
    ``batch_size * world`` (the incomplete tail is dropped); rank r takes rows
    ``[r * batch_size, (r + 1) * batch_size)`` of each, so the ranks' batches concatenated in rank
    order are the single-process batch. Resuming at ``start_step`` yields exactly what an
    uninterrupted run yields from that step on.
    """

    n: int
    batch_size: int
    seed: int = 0
    rank: int = 0
    world: int = 1
    start_step: int = 0
    _perm_cache: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise BadInputError(f"batch size must be >= 1, got {self.batch_size}")
        if not 0 <= self.rank < self.world:
            raise BadInputError(f"rank {self.rank} outside world size {self.world}")
        if self.batches_per_epoch == 0:
            raise BadInputError(
                f"global batch {self.batch_size} x {self.world} ranks exceeds the {self.n} shapes of the data set"
            )

    @property
    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world)

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch within epoch) of a global step."""
        return divmod(step, self.batches_per_epoch)

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perm_cache:
            self._perm_cache.clear()
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm_cache[epoch] = torch.randperm(self.n, generator=g)
        return self._perm_cache[epoch]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This rank's keys for global step ``step``."""
        epoch, b = self.position(step)
        g = self.batch_size * self.world
        start = b * g + self.rank * self.batch_size
        rows = self._perm(epoch)[start : start + self.batch_size].tolist()
        return [(epoch, i) for i in rows]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1
