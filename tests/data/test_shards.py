"""Parquet shards and manifest: round trip, refusal of bad input, damage detection, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from daer.data import shards
from daer.data.record import SPLITS, ShapeRecord
from daer.data.shards import (
    DatasetWriter,
    iter_records,
    load_point_attrs,
    load_points,
    load_split,
    read_manifest,
    verify_dataset,
)
from daer.errors import BadInputError, IntegrityError


def make_records(count: int, n_points: int = 64, seed: int = 0) -> list[ShapeRecord]:
    rng = np.random.default_rng(seed)
    cats = ["chair", "table", "lamp"]
    out = []
    for i in range(count):
        out.append(
            ShapeRecord(
                id=f"r{i:03d}",
                category=cats[i % 3],
                attributes={"legs": str(3 + i % 2), "height": "tall", "ünïcode": "ok"},
                captions=[f"a {cats[i % 3]} number {i}", "a shape with 3 legs"],
                split=SPLITS[i % 3],
                points=rng.standard_normal((n_points, 3)).astype(np.float32),
                normals=rng.standard_normal((n_points, 3)).astype(np.float32) if i % 2 == 0 else None,
                source=f"file_{i}.obj",
                extra={"note": str(i)},
            )
        )
    return out


def write_set(out: Path, recs: list[ShapeRecord], shard_size: int = 4, **kw) -> dict:
    with DatasetWriter(out, source="test", shard_size=shard_size, seed=7, **kw) as w:
        for r in recs:
            w.add(r)
    return read_manifest(out)


def assert_same(a: ShapeRecord, b: ShapeRecord) -> None:
    assert (a.id, a.category, a.attributes, a.captions, a.split, a.source, a.extra) == (
        b.id,
        b.category,
        b.attributes,
        b.captions,
        b.split,
        b.source,
        b.extra,
    )
    assert b.points.dtype == np.float32
    assert np.array_equal(a.points, b.points)  # bit-equal: float32 stored as float32
    if a.normals is None:
        assert b.normals is None
    else:
        assert np.array_equal(a.normals, b.normals)


def test_round_trip(tmp_path: Path) -> None:
    recs = make_records(11)
    manifest = write_set(tmp_path, recs)
    assert manifest["n"] == 11 and manifest["n_points"] == 64 and manifest["seed"] == 7
    assert manifest["counts"] == {"train": 4, "val": 4, "test": 3}
    assert manifest["categories"] == {"chair": 4, "lamp": 3, "table": 4}
    assert [s["rows"] for s in manifest["shards"]] == [4, 4, 3]
    assert [s["file"] for s in manifest["shards"]] == [shards.shard_name(i) for i in range(3)]
    back = list(iter_records(tmp_path, verify=True))
    assert len(back) == 11
    for a, b in zip(recs, back, strict=True):
        assert_same(a, b)
    val = load_split(tmp_path, "val")
    assert [r.id for r in val] == [r.id for r in recs if r.split == "val"]
    ids, pts = load_points(tmp_path, "test")
    want = [r for r in recs if r.split == "test"]
    assert ids == [r.id for r in want]
    assert pts.shape == (3, 64, 3) and pts.dtype == np.float32
    assert np.array_equal(pts, np.stack([r.points for r in want]))
    ids_all, pts_all = load_points(tmp_path)
    assert ids_all == [r.id for r in recs] and np.array_equal(pts_all, np.stack([r.points for r in recs]))
    light = list(iter_records(tmp_path, columns=["captions"]))
    assert [r.captions for r in light] == [r.captions for r in recs] and light[0].points.shape == (0, 3)


def test_float16_storage(tmp_path: Path) -> None:
    recs = make_records(5)
    manifest = write_set(tmp_path, recs, points_dtype="float16")
    assert manifest["points_dtype"] == "float16"
    back = list(iter_records(tmp_path))
    for a, b in zip(recs, back, strict=True):
        assert b.points.dtype == np.float32
        assert np.array_equal(a.points.astype(np.float16).astype(np.float32), b.points)
    assert pq.read_schema(tmp_path / manifest["shards"][0]["file"]).field("points").type.value_type == "halffloat"


def test_skips_shards_without_the_split(tmp_path: Path) -> None:
    recs = make_records(6)
    for r in recs:
        r.split = "train"
    recs[5].split = "test"
    manifest = write_set(tmp_path, recs, shard_size=3)
    (tmp_path / manifest["shards"][0]["file"]).unlink()  # never opened: it holds no test rows
    assert [r.id for r in iter_records(tmp_path, split="test")] == ["r005"]
    with pytest.raises(IntegrityError, match="shard-000000"):
        list(iter_records(tmp_path, split="train"))


def test_duplicate_ids_refused(tmp_path: Path) -> None:
    recs = make_records(3)
    recs[2].id = recs[0].id
    with pytest.raises(BadInputError, match="duplicate id 'r000'"):
        write_set(tmp_path / "a", recs, shard_size=2)  # the duplicate lands in another shard
    with pytest.raises(BadInputError, match="duplicate id"):
        shards.write_shard(tmp_path / "b", 0, recs)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("split", "training", "split 'training'"),
        ("points", np.full((64, 3), np.nan, np.float32), "NaN"),
        ("points", np.zeros((64, 2), np.float32), r"shape \(N, 3\)"),
        ("points", np.zeros((32, 3), np.float32), "has 32 points"),
        ("captions", [], "caption"),
        ("attributes", {"legs": 3}, "attributes"),
        ("id", "", "id"),
        ("point_attrs", np.zeros(63, np.uint16), "point_attrs shape"),
        ("point_attrs", np.full(64, -1, np.int32), "0..65535"),
        ("point_attrs", np.zeros(64, np.float32), "0..65535"),
    ],
)
def test_bad_records_refused(tmp_path: Path, field: str, value: object, message: str) -> None:
    recs = make_records(3)
    setattr(recs[1], field, value)
    with pytest.raises(BadInputError, match=message):
        write_set(tmp_path, recs)
    assert not list(tmp_path.iterdir())  # nothing left behind: no shard, no manifest, no temp file


def test_failure_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_write(table, where, **kw):  # a disk-full error halfway through writing a shard
        Path(where).write_bytes(b"PAR1 partial")
        raise OSError("No space left on device")

    recs = make_records(9)
    writer = DatasetWriter(tmp_path, source="test", shard_size=4)
    for r in recs[:5]:
        writer.add(r)
    assert (tmp_path / "shard-000000.parquet").is_file()
    monkeypatch.setattr(shards.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="No space"), writer:
        for r in recs[5:]:
            writer.add(r)
    assert not list(tmp_path.iterdir())


def test_existing_data_set_not_overwritten(tmp_path: Path) -> None:
    write_set(tmp_path, make_records(3))
    with pytest.raises(BadInputError, match="already holds a data set"):
        DatasetWriter(tmp_path, source="test")
    manifest = write_set(tmp_path, make_records(2), overwrite=True)
    assert manifest["n"] == 2 and len(list(tmp_path.glob("shard-*.parquet"))) == 1


def test_damaged_shard_detected(tmp_path: Path) -> None:
    manifest = write_set(tmp_path, make_records(9))
    verify_dataset(tmp_path)
    victim = tmp_path / manifest["shards"][1]["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="shard-000001.parquet: shard is damaged"):
        verify_dataset(tmp_path)
    with pytest.raises(IntegrityError, match="shard-000001"):
        list(iter_records(tmp_path, verify=True))
    victim.write_bytes(b"not parquet at all")
    with pytest.raises(IntegrityError, match="shard-000001.parquet: unreadable shard"):
        load_points(tmp_path, "train")
    victim.unlink()
    with pytest.raises(IntegrityError, match="shard-000001.parquet: shard listed in the manifest is missing"):
        verify_dataset(tmp_path)


def test_bad_manifest_refused(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="no such data set folder"):
        read_manifest(tmp_path / "nowhere")
    write_set(tmp_path, make_records(3))
    path = tmp_path / "manifest.json"
    good = json.loads(path.read_text())
    path.write_text(json.dumps({**good, "schema_version": 99}))
    with pytest.raises(IntegrityError, match="unknown schema_version 99"):
        read_manifest(tmp_path)
    path.write_text('{"schema_version": 1, "shards": [')
    with pytest.raises(IntegrityError, match="unreadable manifest"):
        list(iter_records(tmp_path))
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "shards"}))
    with pytest.raises(IntegrityError, match="lacks shards"):
        read_manifest(tmp_path)
    path.unlink()
    with pytest.raises(IntegrityError, match="manifest.json: missing"):
        load_points(tmp_path, "train")


def test_point_attrs_round_trip_and_mixed_rows(tmp_path: Path) -> None:
    recs = make_records(7)
    rng = np.random.default_rng(1)
    for i, r in enumerate(recs):
        if i not in (1, 4, 5):  # shard 1 (rows 4..6) holds one labelled row, shard 0 two unlabelled
            r.point_attrs = rng.integers(0, 1 << 16, 64).astype(np.uint16)
    manifest = write_set(tmp_path, recs)
    assert manifest["schema_version"] == shards.SCHEMA_VERSION == 3 and manifest["point_attrs"] == 4
    back = list(iter_records(tmp_path, verify=True))
    for a, b in zip(recs, back, strict=True):
        assert_same(a, b)
        if a.point_attrs is None:
            assert b.point_attrs is None
        else:
            assert b.point_attrs.dtype == np.uint16 and np.array_equal(a.point_attrs, b.point_attrs)
    assert all(r.point_attrs is None for r in iter_records(tmp_path, columns=["points"]))
    ids, labels, has = load_point_attrs(tmp_path)
    assert ids == [r.id for r in recs] and labels.shape == (7, 64) and labels.dtype == np.uint16
    assert has.tolist() == [r.point_attrs is not None for r in recs]
    for r, row in zip(recs, labels, strict=True):
        assert np.array_equal(row, r.point_attrs if r.point_attrs is not None else np.zeros(64, np.uint16))
    ids, labels, has = load_point_attrs(tmp_path, "val")  # rows 1 and 4: neither labelled
    assert ids == ["r001", "r004"] and not has.any() and not labels.any()


def test_shards_written_before_point_attrs_still_load(tmp_path: Path) -> None:
    """A schema-1 data set (no ``point_attrs`` column, no manifest count) reads as shapes without labels."""
    recs = make_records(6)
    for r in recs:
        r.point_attrs = np.ones(64, np.uint16)
    manifest = write_set(tmp_path, recs, shard_size=3)
    for entry in manifest["shards"]:
        path = tmp_path / entry["file"]
        pq.write_table(pq.read_table(path).drop_columns(["point_attrs"]), path, compression="zstd")
        entry["sha256"] = shards.sha256_file(path)
    old = {k: v for k, v in manifest.items() if k != "point_attrs"}
    (tmp_path / "manifest.json").write_text(json.dumps({**old, "schema_version": 1}))
    assert "point_attrs" not in pq.read_schema(tmp_path / "shard-000000.parquet").names
    back = list(iter_records(tmp_path, verify=True))
    assert [r.id for r in back] == [r.id for r in recs] and all(r.point_attrs is None for r in back)
    for a, b in zip(recs, back, strict=True):
        assert_same(a, b)
    assert [r.id for r in iter_records(tmp_path, "test", columns=["points", "point_attrs"])] == ["r002", "r005"]
    ids, labels, has = load_point_attrs(tmp_path, "train")
    assert ids == ["r000", "r003"] and not has.any() and labels.shape == (2, 64)
    assert load_points(tmp_path, "train")[1].shape == (2, 64, 3)


def test_split_arrays_memory_mapped_from_a_cache(tmp_path: Path) -> None:
    """With a cache folder, points and labels come from .npy maps equal to the in-memory arrays; the file is
    reused while the manifest holds, rebuilt when damaged or when the data set changes, never half-written."""
    recs = make_records(9)
    for i, r in enumerate(recs):
        r.point_attrs = np.full(64, i, np.uint16) if i % 2 else None
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_set(data, recs)
    for split in (None, "train"):
        want_ids, want = load_points(data, split)
        ids, got = load_points(data, split, cache=cache)
        assert ids == want_ids and isinstance(got, np.memmap) and np.array_equal(got, want)
        want_l = load_point_attrs(data, split)
        got_l = load_point_attrs(data, split, cache=cache)
        assert got_l[0] == want_l[0] and isinstance(got_l[1], np.memmap)
        assert np.array_equal(got_l[1], want_l[1]) and np.array_equal(got_l[2], want_l[2])
        again = load_point_attrs(data, split, cache=cache)  # from the finished file
        assert again[0] == want_l[0] and np.array_equal(again[1], want_l[1]) and np.array_equal(again[2], want_l[2])
    files = sorted(p.name for p in cache.iterdir())
    assert all(not name.startswith(".") for name in files)  # no temporary file left
    (path,) = [p for p in cache.glob("points-all-*.npy")]
    stamp = path.stat().st_mtime_ns
    got = load_points(data, cache=cache)[1]
    got[0, 0, 0] = 99.0  # copy-on-write: the file keeps its values
    assert path.stat().st_mtime_ns == stamp and np.array_equal(load_points(data, cache=cache)[1], load_points(data)[1])
    path.write_bytes(path.read_bytes()[:100])  # damaged: rebuilt, not trusted
    assert np.array_equal(load_points(data, cache=cache)[1], load_points(data)[1])
    write_set(data, make_records(6, seed=3), overwrite=True)  # another data set: another file
    ids, got = load_points(data, cache=cache)
    assert len(ids) == 6 and np.array_equal(got, load_points(data)[1])
