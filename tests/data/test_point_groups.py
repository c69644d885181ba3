"""Stored FPS/kNN groups: written by the synth build and the importers, equal to the encoder's own grouping,
matched to a model's config, absent from old data sets, and refused when damaged."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from daer.data.build import build_synth
from daer.data.dataset import ShapeTextDataset
from daer.data.formats import RejectLog
from daer.data.importer import write_records
from daer.data.point_groups import GroupSpec, default_specs, stored_sets, stored_spec, unpack
from daer.data.sampling import fixed_subset
from daer.data.shards import iter_group_rows, iter_records, load_groups, load_points, read_manifest
from daer.errors import BadInputError, IntegrityError
from daer.models.config import load_config
from daer.models.pointops import PointGroups, normalize_batch, precompute_groups
from daer.utils.hashing import sha256_file

TINY, SMALL = (GroupSpec.of(load_config(name)) for name in ("tiny", "small"))


def encoder_groups(points: np.ndarray, spec: GroupSpec) -> PointGroups:
    """What the encoder computes on the fly for a model fed ``spec.n_points`` of these (M, N, 3) points."""
    subset = fixed_subset(points.shape[1], spec.n_points)
    x = torch.from_numpy(points if subset is None else points[:, subset])
    return precompute_groups(normalize_batch(x), spec.level_sizes, spec.level_k)


def assert_same_groups(a: PointGroups, b: PointGroups) -> None:
    for u, v in zip(a.centers + a.neighbors, b.centers + b.neighbors, strict=True):
        assert u.shape == v.shape and torch.equal(u.long(), v.long())


def rewrite_shards(src: Path, dst: Path, edit: Callable[[pa.Table], pa.Table], **manifest_changes) -> Path:
    """Copy a data set, passing every shard through ``edit``; checksums stay right (only the content changes)."""
    shutil.copytree(src, dst)
    manifest = read_manifest(dst)
    for entry in manifest["shards"]:
        path = dst / entry["file"]
        pq.write_table(edit(pq.read_table(path)), path, compression="zstd")
        entry["sha256"] = sha256_file(path)
    manifest.update(manifest_changes)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def without_groups(src: Path, dst: Path) -> Path:
    """The same data set as written before groups were stored: schema 2, no ``groups_*`` columns."""
    drop = lambda t: t.drop_columns([c for c in t.column_names if c.startswith("groups_")])  # noqa: E731
    out = rewrite_shards(src, dst, drop, schema_version=2)
    manifest = read_manifest(out)
    manifest.pop("point_groups")
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def with_group_values(src: Path, dst: Path, spec: GroupSpec, change: Callable[[np.ndarray], np.ndarray]) -> Path:
    """A copy whose stored set ``spec`` is passed, as an (R, width) block per shard, through ``change``."""

    def edit(table: pa.Table) -> pa.Table:
        arr = table[spec.column].combine_chunks()
        block = change(arr.values.to_numpy().reshape(len(arr), -1).copy())
        column = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), block.shape[1])
        return table.set_column(table.column_names.index(spec.column), spec.column, column)

    return rewrite_shards(src, dst, edit)


def spy_groups(model) -> list[bool]:
    """Record, per ``encode_points`` call, whether it was handed stored groups."""
    calls: list[bool] = []
    encode = model.encode_points

    def spy(points, groups=None):
        calls.append(groups is not None)
        return encode(points, groups)

    model.encode_points = spy
    return calls


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("groups") / "set"
    build_synth(out, 12, n_points=2048, workers=1, shard_size=5, progress=False)
    return out


def test_build_stores_the_encoders_groups_of_the_builtin_configs(built: Path) -> None:
    manifest = read_manifest(built)
    assert manifest["schema_version"] == 3 and default_specs() == (TINY, SMALL)
    assert stored_sets(manifest) == (TINY, SMALL)
    assert [s["config"] for s in manifest["point_groups"]["sets"]] == ["tiny", "small"]
    ids, points = load_points(built)
    for spec in (TINY, SMALL):
        assert pq.read_schema(built / "shard-000000.parquet").field(spec.column).type.value_type == pa.uint16()
        group_ids, block = load_groups(built, None, spec)
        assert group_ids == ids and block.dtype == np.uint16 and block.shape == (12, spec.width)
        assert_same_groups(unpack(block, spec), encoder_groups(points, spec))
        rows = list(iter_group_rows(built, "train", spec))  # streamed, one split, in iter_records' order
        assert [i for i, _ in rows] == [r.id for r in iter_records(built, "train", columns=[])]
        assert np.array_equal(np.stack([r for _, r in rows]), block[[ids.index(i) for i, _ in rows]])


def test_sets_a_data_set_cannot_serve_are_skipped(tmp_path: Path) -> None:
    manifest = build_synth(tmp_path / "b", 3, n_points=128, workers=1, progress=False)
    assert manifest["point_groups"]["sets"] == [] and stored_sets(manifest) == ()
    assert not [c for c in pq.read_schema(tmp_path / "b" / "shard-000000.parquet").names if c.startswith("groups_")]
    none = build_synth(tmp_path / "none", 3, n_points=2048, workers=1, progress=False, groups=())
    assert stored_sets(none) == ()


def test_parallel_build_stores_the_same_groups(tmp_path: Path) -> None:
    spec = GroupSpec(128, (16, 8, 4), (8, 4, 4))  # a small set of its own, to keep the build cheap
    kw = {"n_points": 128, "shard_size": 4, "progress": False, "groups": (spec,)}
    one, two = (build_synth(tmp_path / str(w), 10, workers=w, **kw) for w in (1, 2))
    assert stored_sets(one) == (spec,) and [e["sha256"] for e in one["shards"]] == [e["sha256"] for e in two["shards"]]


def test_import_stores_groups_of_the_points_as_stored(built: Path, tmp_path: Path) -> None:
    """The importers' writer stores the groups too, computed from the points as read back (float16 here)."""
    records = list(iter_records(built))
    for r in records:
        r.points, r.point_attrs = r.points[:256], None  # 256 points per shape: only the tiny set fits
    summary = write_records(iter(records), tmp_path / "imp", "import:test", RejectLog(), points_dtype="float16")
    assert summary.manifest is not None and stored_sets(summary.manifest) == (TINY,)
    ids, points = load_points(tmp_path / "imp")
    assert not np.array_equal(points, np.stack([r.points for r in records]))  # float16 rounding happened
    assert_same_groups(unpack(load_groups(tmp_path / "imp", None, TINY)[1], TINY), encoder_groups(points, TINY))


def test_a_set_is_used_only_for_the_config_it_was_made_for(built: Path) -> None:
    manifest = read_manifest(built)
    tiny = load_config("tiny")
    assert stored_spec(manifest, tiny, 256) == TINY
    assert stored_spec(manifest, load_config("small"), 2048) == SMALL
    assert stored_spec(manifest, tiny, 200) is None  # fed another point count
    assert stored_spec(manifest, load_config("tiny", level_k=[8, 4, 2]), 256) is None
    assert stored_spec(manifest, load_config("tiny", level_sizes=[32, 8, 4]), 256) is None
    assert stored_spec(manifest, load_config("base"), 2048) is None  # not stored
    assert stored_spec(manifest, None, 256) is None  # not a point model
    assert stored_spec({**manifest, "point_groups": {**manifest["point_groups"], "version": 99}}, tiny, 256) is None
    with pytest.raises(IntegrityError, match="malformed set"):
        stored_sets({"point_groups": {"version": 1, "sets": [{"column": "groups_x", "n_points": "many"}]}})
    with pytest.raises(IntegrityError, match="names column"):
        stored_sets({"point_groups": {"version": 1, "sets": [{**TINY.to_json(), "column": SMALL.column}]}})
    with pytest.raises(BadInputError, match="centres"):
        GroupSpec(16, (32, 8, 4), (8, 4, 4))


def test_data_set_without_groups_still_loads(built: Path, tmp_path: Path) -> None:
    old = without_groups(built, tmp_path / "old")
    manifest = read_manifest(old)
    assert stored_sets(manifest) == () and stored_spec(manifest, load_config("tiny"), 256) is None
    assert [r.id for r in iter_records(old, verify=True)] == [r.id for r in iter_records(built)]
    assert np.array_equal(load_points(old)[1], load_points(built)[1])


def set_column(col: int, value: int) -> Callable[[np.ndarray], np.ndarray]:
    """A change that writes ``value`` into column ``col`` of every shape's stored groups."""

    def change(block: np.ndarray) -> np.ndarray:
        block[:, col] = value
        return block

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (set_column(TINY.width - 1, 16), "at level 3 is outside 0..15;"),  # last neighbour of the 16 level-2 centres
        (set_column(0, 256), "at level 1 is outside 0..255;"),  # first centre, among the 256 points
        (lambda b: b[:, :-1], "expected 388 uint16 per shape"),
        (lambda b: b.astype(np.int32), "expected 388 uint16 per shape"),
    ],
)
def test_damaged_groups_are_refused_naming_the_shard(built: Path, tmp_path: Path, change, message: str) -> None:
    bad = with_group_values(built, tmp_path / "bad", TINY, change)
    with pytest.raises(IntegrityError, match=r"shard-000000\.parquet: stored point groups groups_256_.*" + message):
        load_groups(bad, None, TINY)
    with pytest.raises(IntegrityError, match=r"shard-000000\.parquet"):
        next(iter_group_rows(bad, None, TINY))


def test_shard_without_the_listed_groups_is_refused(built: Path, tmp_path: Path) -> None:
    drop = lambda t: t.drop_columns([TINY.column])  # noqa: E731
    bad = rewrite_shards(built, tmp_path / "bad", drop)
    with pytest.raises(IntegrityError, match=r"shard-000000\.parquet: lacks the stored point groups groups_256_"):
        load_groups(bad, "train", TINY)


def test_training_set_serves_stored_groups_without_computing(built: Path, tmp_path: Path) -> None:
    """The per-run groups cache is filled from the shards: nothing is grouped, no computed-groups file is written
    (only the split's memory-mapped arrays), and a batch carries the groups that computing them gives (the
    encoder's own, and the cache's on raw points)."""
    calls: list[int] = []
    cfg = load_config("tiny")

    def groups_fn(points: torch.Tensor) -> PointGroups:
        calls.append(len(points))
        return precompute_groups(points, cfg.level_sizes, cfg.level_k)

    kw = {"n_points": 256, "groups_fn": groups_fn, "cache_dir": tmp_path / "cache"}
    ds = ShapeTextDataset.from_folder(built, "train", group_config=cfg, **kw)
    assert calls == [] and not list((tmp_path / "cache").glob("groups-*"))
    assert ds.groups.centers[0].dtype == torch.int16  # held compactly
    batch = ds.__getitems__(list(range(len(ds))))
    raw = ds.points  # the fixed subset, not augmented
    assert_same_groups(batch.groups, encoder_groups(raw, TINY))
    assert_same_groups(batch.groups, precompute_groups(torch.from_numpy(raw), cfg.level_sizes, cfg.level_k))
    # no stored set for this config, or a data set without groups: computed (and cached) as before
    other = load_config("tiny", level_k=[8, 4, 2])
    fn = partial(precompute_groups, level_sizes=other.level_sizes, level_k=other.level_k)
    ds2 = ShapeTextDataset.from_folder(built, "train", group_config=other, **{**kw, "groups_fn": fn})
    assert ds2.groups.neighbors[2].shape[-1] == 2 and list((tmp_path / "cache").glob("groups-*.safetensors"))
    old = without_groups(built, tmp_path / "old")
    ds3 = ShapeTextDataset.from_folder(old, "train", group_config=cfg, **{**kw, "cache_dir": None})
    assert calls and ds3.groups is not None
    assert_same_groups(ds3.__getitems__(list(range(len(ds3)))).groups, batch.groups)


def test_stored_groups_memory_mapped_from_a_cache(tmp_path: Path) -> None:
    """A cached split's groups equal the in-memory ones, and their compact form is a view of the map (no copy)."""
    build_synth(tmp_path / "s", 12, n_points=TINY.n_points, seed=3, workers=1)
    ids, block = load_groups(tmp_path / "s", "train", TINY)
    cached_ids, mapped = load_groups(tmp_path / "s", "train", TINY, cache=tmp_path / "cache")
    assert cached_ids == ids and isinstance(mapped, np.memmap) and np.array_equal(mapped, block)
    compact = unpack(mapped, TINY, compact=True)
    assert np.shares_memory(compact.neighbors[0].numpy(), mapped)
    assert_same_groups(compact, unpack(block, TINY))
