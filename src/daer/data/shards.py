"""Data sets on disk: Parquet shards (pyarrow) plus a ``manifest.json`` that checksums every shard.

A data set is a folder::

    manifest.json           schema version, source, seed, n_points, counts, categories, shards + sha256
    shard-000000.parquet    rows: id, category, attributes (JSON), captions, split, points, normals, source, extra,
                            point_attrs, groups_* (stored FPS/kNN groups, one column per group set)
    shard-000001.parquet    ...

``points`` and ``normals`` are fixed-size lists of N*3 floats (float32, or float16 when asked for);
every shape of one data set has the same N. Readers stream shard by shard, so memory stays bounded
by one shard whatever the size of the data set.

Schema versions: 2 added ``point_attrs`` (N uint16 part labels per shape, null where a shape has none;
SYNTH_SPEC.md "Part labels") and the manifest's ``point_attrs`` count of labelled shapes. Version 1
shards lack the column and still load: their records simply have ``point_attrs = None``. Version 3 added the
stored FPS/kNN groups (:mod:`daer.data.point_groups`: ``groups_*`` columns and the manifest's ``point_groups``);
older data sets have none and are grouped on the fly.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from daer.data.point_groups import GroupSpec, applicable, check_block, compute_block, manifest_entry
from daer.data.record import SPLITS, ShapeRecord
from daer.errors import BadInputError, IntegrityError
from daer.utils.atomic import atomic_path, write_json
from daer.utils.hashing import sha256_file

SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
MANIFEST = "manifest.json"
SHARD_PATTERN = re.compile(r"^shard-(\d{6})\.parquet$")
POINT_DTYPES = ("float32", "float16")
COLUMNS = ("id", "category", "attributes", "captions", "split", "points", "normals", "source", "extra", "point_attrs")
OPTIONAL_COLUMNS = ("point_attrs",)  # absent from shards older than the schema version that added them
_REQUIRED_MANIFEST_KEYS = ("schema_version", "source", "n_points", "n", "counts", "categories", "shards")


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``shard-000042.parquet``)."""
    if index < 0:
        raise BadInputError(f"shard index must be >= 0, got {index}")
    return f"shard-{index:06d}.parquet"


def _check_record(rec: ShapeRecord, n_points: int | None) -> np.ndarray:
    """Validate one record; return its points as (N, 3)."""
    where = f"record {rec.id!r}"
    if not isinstance(rec.id, str) or not rec.id:
        raise BadInputError(f"record with empty or non-string id: {rec.id!r}")
    if rec.split not in SPLITS:
        raise BadInputError(f"{where}: split {rec.split!r} is not one of {', '.join(SPLITS)}")
    if not isinstance(rec.attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in rec.attributes.items()
    ):
        raise BadInputError(f"{where}: attributes must map strings to strings, got {rec.attributes!r}")
    if not rec.captions or not all(isinstance(c, str) and c.strip() for c in rec.captions):
        raise BadInputError(f"{where}: needs at least one caption and no empty captions")
    pts = np.asarray(rec.points)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise BadInputError(f"{where}: points must have shape (N, 3), got {pts.shape}")
    if n_points is not None and len(pts) != n_points:
        raise BadInputError(f"{where}: has {len(pts)} points but this data set holds {n_points} per shape")
    if not np.isfinite(pts).all():
        raise BadInputError(f"{where}: points contain NaN or infinite values")
    if rec.normals is not None and np.shape(rec.normals) != pts.shape:
        raise BadInputError(f"{where}: normals shape {np.shape(rec.normals)} differs from points {pts.shape}")
    if rec.point_attrs is not None:
        labels = np.asarray(rec.point_attrs)
        if labels.shape != (len(pts),):
            raise BadInputError(f"{where}: point_attrs shape {labels.shape} differs from one label per point")
        if labels.dtype.kind not in "ui" or (labels.size and (labels.min() < 0 or labels.max() > 0xFFFF)):
            raise BadInputError(f"{where}: point_attrs must be integers in 0..65535 (uint16 bit masks)")
    return pts


def _float_lists(blocks: np.ndarray, dtype: str, mask: np.ndarray | None = None) -> pa.Array:
    """(R, N, 3) array -> fixed-size list array of N*3 values per row (rows where ``mask`` is True are null)."""
    values = pa.array(np.ascontiguousarray(blocks, dtype=dtype).reshape(-1))
    if mask is not None and mask.any():
        return pa.FixedSizeListArray.from_arrays(values, blocks.shape[1] * 3, mask=pa.array(mask))
    return pa.FixedSizeListArray.from_arrays(values, blocks.shape[1] * 3)


def records_to_table(
    records: Sequence[ShapeRecord], points_dtype: str = "float32", groups: Sequence[GroupSpec] = ()
) -> pa.Table:
    """Validate records and pack them into one Arrow table (the shard row layout), with a column of FPS/kNN
    groups per set in ``groups`` (computed from the points as stored, i.e. after rounding to ``points_dtype``)."""
    if points_dtype not in POINT_DTYPES:
        raise BadInputError(f"points dtype must be one of {POINT_DTYPES}, got {points_dtype!r}")
    if not records:
        raise BadInputError("a shard needs at least one record")
    n_points = len(np.asarray(records[0].points))
    seen: set[str] = set()
    pts = np.empty((len(records), n_points, 3), dtype=points_dtype)  # (R, N, 3)
    nrm = np.zeros_like(pts)
    missing = np.ones(len(records), dtype=bool)
    labels = np.zeros((len(records), n_points), dtype=np.uint16)  # (R, N)
    unlabelled = np.ones(len(records), dtype=bool)
    for i, rec in enumerate(records):
        pts[i] = _check_record(rec, n_points)
        if rec.id in seen:
            raise BadInputError(f"duplicate id {rec.id!r} in one shard")
        seen.add(rec.id)
        if rec.normals is not None:
            nrm[i] = rec.normals
            missing[i] = False
        if rec.point_attrs is not None:
            labels[i] = rec.point_attrs
            unlabelled[i] = False
    normals = _float_lists(nrm, points_dtype, mask=missing)
    if missing.all():
        normals = pa.nulls(len(records), normals.type)
    label_values = pa.array(labels.reshape(-1), pa.uint16())
    point_attrs = pa.FixedSizeListArray.from_arrays(
        label_values, n_points, mask=pa.array(unlabelled) if unlabelled.any() else None
    )
    if unlabelled.all():
        point_attrs = pa.nulls(len(records), point_attrs.type)
    group_columns = {}
    for spec in groups:
        block = compute_block(pts.astype(np.float32), spec)  # (R, width) uint16
        group_columns[spec.column] = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), spec.width)
    return pa.table(
        {
            "id": pa.array([r.id for r in records], pa.string()),
            "category": pa.array([r.category for r in records], pa.string()),
            "attributes": pa.array([json.dumps(r.attributes) for r in records], pa.string()),
            "captions": pa.array([list(r.captions) for r in records], pa.list_(pa.string())),
            "split": pa.array([r.split for r in records], pa.string()),
            "points": _float_lists(pts, points_dtype),
            "normals": normals,
            "source": pa.array([r.source for r in records], pa.string()),
            "extra": pa.array([json.dumps(r.extra) for r in records], pa.string()),
            "point_attrs": point_attrs,
            **group_columns,
        }
    )


def write_shard(
    out_dir: str | os.PathLike[str],
    shard_index: int,
    records: Sequence[ShapeRecord],
    points_dtype: str = "float32",
    groups: Sequence[GroupSpec] = (),
) -> dict[str, Any]:
    """Write one shard atomically (temporary file, checksum, rename), with the FPS/kNN groups of each set in
    ``groups`` (every one must fit the records' point count: see :func:`daer.data.point_groups.applicable`).

    Returns:
        the shard entry ``{"file", "rows", "sha256", "n_points", "splits": {split: count},
        "categories": {name: count}, "point_attrs": rows with part labels}``.
    """
    table = records_to_table(records, points_dtype, groups)
    path = Path(out_dir) / shard_name(shard_index)
    with atomic_path(path) as tmp:
        # Byte-stream-split float coordinates compress with zstd (~16% smaller) and decode faster than zstd alone;
        # group indices too (uint16 is stored as int32: split, its zero and near-constant bytes vanish, -28%).
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            row_group_size=len(records),
            use_dictionary=["category", "split"],
            use_byte_stream_split=["points.list.element", "normals.list.element"]
            + [f"{spec.column}.list.element" for spec in groups],
        )
        digest = sha256_file(tmp)
    splits = Counter(r.split for r in records)
    return {
        "file": path.name,
        "rows": len(records),
        "sha256": digest,
        "n_points": len(np.asarray(records[0].points)),
        "splits": {s: splits.get(s, 0) for s in SPLITS},
        "categories": dict(sorted(Counter(r.category for r in records).items())),
        "point_attrs": sum(r.point_attrs is not None for r in records),
    }


def assemble_manifest(
    source: str,
    entries: Sequence[dict[str, Any]],
    created: str | None = None,
    groups: Sequence[GroupSpec] = (),
    **extra: Any,
) -> dict[str, Any]:
    """Build a manifest from shard entries (as ``write_shard`` returns them), in the given order; ``groups``: the
    stored group sets (every shard holds them)."""
    counts = {s: 0 for s in SPLITS}
    categories: Counter[str] = Counter()
    labelled = 0
    n_points = {e["n_points"] for e in entries}
    if len(n_points) > 1:
        raise BadInputError(f"shards hold different point counts per shape: {sorted(n_points)}")
    for e in entries:
        for s in SPLITS:
            counts[s] += e["splits"].get(s, 0)
        categories.update(e["categories"])
        labelled += int(e.get("point_attrs", 0))
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "n_points": n_points.pop() if n_points else extra.pop("n_points", 0),
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    extra.pop("n_points", None)
    manifest.update(extra)
    manifest.update(
        {
            "n": sum(counts.values()),
            "counts": counts,
            "categories": dict(sorted(categories.items())),
            "point_attrs": labelled,
            "point_groups": manifest_entry(groups),
            "shards": [{k: e[k] for k in ("file", "rows", "sha256", "splits")} for e in entries],
        }
    )
    return manifest


def write_manifest(out_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically; returns its path."""
    path = Path(out_dir) / MANIFEST
    write_json(path, manifest)
    return path


def read_manifest(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a data set's manifest.

    Raises:
        IntegrityError: no manifest, unreadable JSON, unknown schema version or missing keys.
    """
    path = Path(data_dir) / MANIFEST
    if not Path(data_dir).is_dir():
        raise IntegrityError(f"{data_dir}: no such data set folder")
    if not path.is_file():
        raise IntegrityError(f"{path}: missing; {data_dir} is not a daer data set (or its build did not finish)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntegrityError(f"{path}: unreadable manifest ({e})") from e
    if not isinstance(manifest, dict):
        raise IntegrityError(f"{path}: manifest is not a JSON object")
    version = manifest.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
        raise IntegrityError(f"{path}: unknown schema_version {version!r} (this daer reads versions {readable})")
    missing = [k for k in _REQUIRED_MANIFEST_KEYS if k not in manifest]
    if missing:
        raise IntegrityError(f"{path}: manifest lacks {', '.join(missing)}")
    return manifest


def verify_dataset(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every shard's SHA-256 against the manifest; returns the manifest.

    Raises:
        IntegrityError: naming the first missing or damaged shard.
    """
    manifest = read_manifest(data_dir)
    for entry in manifest["shards"]:
        _verify_shard(Path(data_dir), entry)
    return manifest


def _verify_shard(data_dir: Path, entry: dict[str, Any]) -> None:
    path = data_dir / entry["file"]
    if not path.is_file():
        raise IntegrityError(f"{path}: shard listed in the manifest is missing")
    if sha256_file(path) != entry["sha256"]:
        raise IntegrityError(f"{path}: shard is damaged (sha256 differs from the manifest)")


def read_shard(data_dir: Path, entry: dict[str, Any], columns: list[str], verify: bool = False) -> pa.Table:
    """One shard's columns (optional columns it lacks are left out), its row count checked against ``entry``.

    Raises:
        IntegrityError: the shard is missing, unreadable, damaged (with ``verify``) or of the wrong length.
    """
    if verify:
        _verify_shard(data_dir, entry)
    path = data_dir / entry["file"]
    try:
        if any(c in OPTIONAL_COLUMNS for c in columns):
            present = set(pq.read_schema(path).names)
            columns = [c for c in columns if c in present or c not in OPTIONAL_COLUMNS]
        table = pq.read_table(path, columns=columns)
    except FileNotFoundError as e:
        raise IntegrityError(f"{path}: shard listed in the manifest is missing") from e
    except (pa.ArrowException, OSError) as e:
        raise IntegrityError(f"{path}: unreadable shard ({e})") from e
    if table.num_rows != entry["rows"]:
        raise IntegrityError(f"{path}: holds {table.num_rows} rows, manifest says {entry['rows']}")
    return table


def _shards_for(manifest: dict[str, Any], split: str | None) -> list[dict[str, Any]]:
    if split is None:
        return list(manifest["shards"])
    if split not in SPLITS:
        raise BadInputError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    # Entries carry per-split counts, so shards without any row of the split are never opened.
    return [e for e in manifest["shards"] if e.get("splits", {}).get(split, 1) > 0]


def float_block(column: pa.ChunkedArray, n_points: int) -> np.ndarray:
    """Fixed-size-list column -> writable (R, N, 3) float32 (null rows become NaN)."""
    arr = column.combine_chunks()
    rows, width = len(arr), n_points * 3
    if arr.null_count == rows:
        return np.full((rows, n_points, 3), np.nan, dtype=np.float32)
    # Child values keep a slot for every row, null or not; slice by the array's own offset.
    values = arr.values.slice(arr.offset * width, rows * width)
    block = np.array(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(rows, n_points, 3)
    if arr.null_count:
        block[np.asarray(arr.is_null())] = np.nan
    return block


def iter_records(
    data_dir: str | os.PathLike[str],
    split: str | None = None,
    columns: Iterable[str] | None = None,
    verify: bool = False,
) -> Iterator[ShapeRecord]:
    """Stream records shard by shard (memory bounded by one shard).

    Args:
        data_dir: data set folder.
        split: keep only this split (None: all).
        columns: columns to read (default all); ``points`` left out gives (0, 3) arrays, which makes
            caption-only passes cheap. ``point_attrs`` is None on records without labels, on shards
            written before the column existed, and when the column is not read.
        verify: check each shard's SHA-256 before reading it.
    """
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    wanted = list(COLUMNS) if columns is None else list(dict.fromkeys(["id", "split", *columns]))
    unknown = [c for c in wanted if c not in COLUMNS]
    if unknown:
        raise BadInputError(f"unknown column(s) {', '.join(unknown)}; shards hold {', '.join(COLUMNS)}")
    n_points = int(manifest["n_points"])
    for entry in _shards_for(manifest, split):
        table = read_shard(data_dir, entry, wanted, verify)
        if split is not None:
            table = table.filter(pc.equal(table["split"], split))
        if table.num_rows == 0:
            continue
        cols = {name: table[name] for name in wanted if name in table.column_names}
        pts = float_block(cols["points"], n_points) if "points" in cols else None
        labels, labelled = _label_block(cols.get("point_attrs"), n_points)
        nrm = None
        if "normals" in cols and cols["normals"].null_count < table.num_rows:
            nrm_null = np.asarray(cols["normals"].is_null())
            nrm = float_block(cols["normals"], n_points)
        py = {name: cols[name].to_pylist() for name in cols if name not in ("points", "normals", "point_attrs")}
        empty = np.zeros((0, 3), dtype=np.float32)
        for i in range(table.num_rows):
            yield ShapeRecord(
                id=py["id"][i],
                category=py["category"][i] if "category" in py else "",
                attributes=json.loads(py["attributes"][i]) if "attributes" in py else {},
                captions=list(py["captions"][i]) if "captions" in py else [],
                split=py["split"][i],
                points=pts[i] if pts is not None else empty,
                normals=None if nrm is None or nrm_null[i] else nrm[i],
                source=py["source"][i] if "source" in py else "",
                extra=json.loads(py["extra"][i]) if "extra" in py else {},
                point_attrs=labels[i] if labels is not None and labelled[i] else None,
            )


def _label_block(column: pa.ChunkedArray | None, n_points: int) -> tuple[np.ndarray | None, np.ndarray]:
    """``point_attrs`` column -> ((R, N) uint16 or None when no row has labels, (R,) bool: row has labels)."""
    if column is None:
        return None, np.zeros(0, dtype=bool)
    arr = column.combine_chunks()
    rows = len(arr)
    labelled = ~np.asarray(arr.is_null(), dtype=bool) if arr.null_count else np.ones(rows, dtype=bool)
    if not labelled.any():
        return None, labelled
    values = arr.values.slice(arr.offset * n_points, rows * n_points)
    if values.null_count:  # the child slots of null rows read back as nulls
        values = pc.fill_null(values, 0)
    block = np.array(values.to_numpy(zero_copy_only=False), dtype=np.uint16).reshape(rows, n_points)
    block[~labelled] = 0
    return block, labelled


def load_split(data_dir: str | os.PathLike[str], split: str) -> list[ShapeRecord]:
    """All records of one split, in data set order."""
    return list(iter_records(data_dir, split=split))


class SplitArray:
    """Where a split's column array lives: in memory (``cache=None``), or in a ``.npy`` file under ``cache``
    that is filled shard by shard and then memory-mapped, so a training set larger than memory is
    paged in as batches ask for it. The file is named by the data set's manifest hash, reused while that
    hash holds, written under a temporary name and renamed when complete (a half-written file is never
    opened), and rebuilt when damaged; its ids sit beside it in a JSON file written first."""

    def __init__(self, data_dir: Path, cache: str | os.PathLike[str] | None, kind: str, split: str | None) -> None:
        self.path: Path | None = None
        if cache is not None:
            digest = sha256_file(data_dir / MANIFEST)[:16]
            self.path = Path(cache) / f"{kind}-{split or 'all'}-{digest}.npy"

    def cached(self, shape: tuple[int, ...], dtype: Any) -> tuple[list[str], np.ndarray] | None:
        """The finished file's ids and map, when it exists and matches ``shape`` and ``dtype`` (copy-on-write:
        writes stay in this process, the file is never changed)."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            arr = np.load(self.path, mmap_mode="c")
            ids = json.loads(self.path.with_suffix(".ids.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # damaged: rebuilt
        if arr.shape != shape or arr.dtype != np.dtype(dtype) or not isinstance(ids, list) or len(ids) != shape[0]:
            return None
        return ids, arr

    def fill(self, shape: tuple[int, ...], dtype: Any, rows: Iterator[tuple[int, list[str], np.ndarray]]) -> Any:
        """Write ``(first row, ids, block)`` blocks into a new array; (ids, array), mapped from the cache file
        (copy-on-write) when there is one."""
        if self.path is None:
            return _fill_rows(np.zeros(shape, dtype=dtype), rows)
        with atomic_path(self.path) as tmp:
            ids, out = _fill_rows(np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape), rows)
            out.flush()
            del out
            write_json(self.path.with_suffix(".ids.json"), ids)
        return ids, np.load(self.path, mmap_mode="c")


def _fill_rows(out: np.ndarray, rows: Iterator[tuple[int, list[str], np.ndarray]]) -> tuple[list[str], np.ndarray]:
    """Copy ``(first row, ids, block)`` blocks into ``out``; (ids in row order, ``out``)."""
    ids: list[str] = []
    for start, block_ids, block in rows:
        out[start : start + len(block)] = block
        ids.extend(block_ids)
    return ids, out


def load_points(
    data_dir: str | os.PathLike[str], split: str | None = None, cache: str | os.PathLike[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Fast path for training and indexing: ids and one (M, N, 3) float32 array of a split.

    Reads only the id, split and points columns and fills the array shard by shard: in memory, or with
    ``cache`` a memory-mapped file in that folder (:class:`SplitArray`).
    """
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    n_points = int(manifest["n_points"])
    shape = (_split_count(manifest, split), n_points, 3)  # (M, N, 3)
    where = SplitArray(data_dir, cache, "points", split)
    found = where.cached(shape, np.float32)
    if found is not None:
        return found
    blocks = (
        (start, table["id"].to_pylist(), float_block(table["points"], n_points))
        for start, table in _split_tables(data_dir, manifest, split, "points")
        if table.num_rows
    )
    return where.fill(shape, np.float32, blocks)


def _split_count(manifest: dict[str, Any], split: str | None) -> int:
    return int(manifest["n"] if split is None else manifest["counts"].get(split, 0))


def _split_tables(
    data_dir: Path, manifest: dict[str, Any], split: str | None, column: str
) -> Iterator[tuple[int, pa.Table]]:
    """(first row, table with ``id`` and ``column``) of each shard's rows of ``split``, in order; the row
    counts are checked against the manifest (IntegrityError when they differ)."""
    total = _split_count(manifest, split)
    done = 0
    for entry in _shards_for(manifest, split):
        table = read_shard(data_dir, entry, ["id", "split", column], verify=False)
        if split is not None:
            table = table.filter(pc.equal(table["split"], split))
        if done + table.num_rows > total:
            raise IntegrityError(f"{data_dir}: shards hold more {split or 'all'} rows than the manifest counts")
        yield done, table
        done += table.num_rows
    if done != total:
        raise IntegrityError(f"{data_dir}: shards hold {done} {split or 'all'} rows, manifest counts {total}")


def load_point_attrs(
    data_dir: str | os.PathLike[str], split: str | None = None, cache: str | os.PathLike[str] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Part labels of a split, in the order of :func:`load_points`: ids, (M, N) uint16 ``point_attrs`` (zeros
    where a shape has none; with ``cache``, memory-mapped as :func:`load_points` does) and (M,) bool, True where
    it has labels (False everywhere for data sets written before the column existed, or imported without
    labels)."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    n_points = int(manifest["n_points"])
    total = _split_count(manifest, split)
    has = np.zeros(total, dtype=bool)

    def blocks() -> Iterator[tuple[int, list[str], np.ndarray]]:
        for start, table in _split_tables(data_dir, manifest, split, "point_attrs"):
            rows = table.num_rows
            block = None
            if rows and "point_attrs" in table.column_names:
                block, labelled = _label_block(table["point_attrs"], n_points)
                if block is not None:
                    has[start : start + rows] = labelled
            yield start, table["id"].to_pylist(), np.zeros((rows, n_points), np.uint16) if block is None else block

    where = SplitArray(data_dir, cache, "point_attrs", split)
    flags = SplitArray(data_dir, cache, "point_attrs_present", split)  # ``has``, beside the labels
    found, found_has = where.cached((total, n_points), np.uint16), flags.cached((total,), bool)
    if found is not None and found_has is not None:
        return found[0], found[1], found_has[1]
    ids, out = where.fill((total, n_points), np.uint16, blocks())
    return ids, out, flags.fill((total,), bool, iter([(0, ids, has)]))[1]


def _group_blocks(data_dir: Path, split: str | None, spec: GroupSpec) -> Iterator[tuple[int, list[str], np.ndarray]]:
    """(first row, ids, (R, width) uint16 groups) of each shard's rows of ``split``, in data set order, each
    block checked against ``spec`` (IntegrityError naming the shard)."""
    manifest = read_manifest(data_dir)
    entries = _shards_for(manifest, split)  # the shards _split_tables reads, in its order
    at = 0  # the entry being read or checked
    try:
        for start, table in _split_tables(data_dir, manifest, split, spec.column):
            path, rows = data_dir / entries[at]["file"], table.num_rows
            arr = table[spec.column].combine_chunks()
            fits = pa.types.is_fixed_size_list(arr.type) and arr.type.list_size == spec.width
            if not fits or arr.type.value_type != pa.uint16() or arr.null_count:
                raise IntegrityError(
                    f"{path}: stored point groups {spec.column} are {arr.type} with {arr.null_count} null rows; "
                    f"expected {spec.width} uint16 per shape"
                )
            values = arr.values.slice(arr.offset * spec.width, rows * spec.width).to_numpy(zero_copy_only=False)
            ids = table["id"].to_pylist()
            block = values.reshape(rows, spec.width)
            check_block(block, spec, str(path), ids)
            at += 1
            yield start, ids, block
    except IntegrityError:  # a shard without the column: say so, rather than relay the reader's error
        if at < len(entries) and _lacks_column(data_dir / entries[at]["file"], spec.column):
            raise IntegrityError(
                f"{data_dir / entries[at]['file']}: lacks the stored point groups {spec.column} that the manifest lists"
            ) from None
        raise


def _lacks_column(path: Path, column: str) -> bool:
    """Whether a readable shard's schema lacks ``column`` (False when the schema cannot be read either)."""
    try:
        return column not in pq.read_schema(path).names
    except (pa.ArrowException, OSError):
        return False


def iter_group_rows(
    data_dir: str | os.PathLike[str], split: str | None, spec: GroupSpec
) -> Iterator[tuple[str, np.ndarray]]:
    """(id, (width,) uint16 groups) of every shape of ``split``, in the order of :func:`iter_records`, streamed
    shard by shard from the stored set ``spec`` (which the manifest must list: see
    :func:`daer.data.point_groups.stored_spec`). Every shard's block is checked on load (IntegrityError naming
    the shard: a wrong width, nulls, or an index outside the level it indexes)."""
    for _, ids, block in _group_blocks(Path(data_dir), split, spec):
        yield from zip(ids, block, strict=True)


def iter_records_with_groups(
    data_dir: str | os.PathLike[str], split: str | None, spec: GroupSpec | None, columns: Iterable[str] | None = None
) -> Iterator[tuple[ShapeRecord, np.ndarray | None]]:
    """:func:`iter_records`, each record with its stored groups of set ``spec`` ((width,) uint16; None for every
    record without a ``spec``); the two streams are checked to stay in step (IntegrityError where they part)."""
    rows = iter_group_rows(data_dir, split, spec) if spec is not None else None
    for rec in iter_records(data_dir, split, columns=columns):
        if rows is None:
            yield rec, None
            continue
        row = next(rows, None)
        if row is None or row[0] != rec.id:
            raise IntegrityError(f"{data_dir}: stored point groups of split {split!r} are out of its shapes' order")
        yield rec, row[1]


def load_groups(
    data_dir: str | os.PathLike[str], split: str | None, spec: GroupSpec, cache: str | os.PathLike[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """A split's stored groups of set ``spec`` in the order of :func:`load_points`: ids and (M, width) uint16
    (checked as :func:`iter_group_rows` checks them; with ``cache``, memory-mapped as :func:`load_points` does)."""
    data_dir = Path(data_dir)
    shape = (_split_count(read_manifest(data_dir), split), spec.width)  # (M, width)
    where = SplitArray(data_dir, cache, spec.column, split)
    found = where.cached(shape, np.uint16)
    return found if found is not None else where.fill(shape, np.uint16, _group_blocks(data_dir, split, spec))


class DatasetWriter:
    """Write records into shards of ``shard_size`` and a manifest at the end.

    Use as a context manager: on error the shards written so far are removed and no manifest is
    written, so a half-written folder never looks like a data set.

    Args:
        out_dir: target folder (created); must not already hold a data set unless ``overwrite``.
        source: what produced the records ("synth", "import:meshes", "modelnet40-h5", ...).
        shard_size: records per shard.
        points_dtype: "float32" (default) or "float16".
        overwrite: replace an existing data set in ``out_dir``.
        groups: FPS/kNN group sets to store with every shape (:mod:`daer.data.point_groups`; the importers pass
            ``default_specs()``); sets for more points than the records hold are skipped.
        **manifest_extra: more manifest keys (seed, generator, n_points for an empty set, ...).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        source: str,
        shard_size: int = 1000,
        *,
        points_dtype: str = "float32",
        overwrite: bool = False,
        groups: Sequence[GroupSpec] = (),
        **manifest_extra: Any,
    ) -> None:
        if shard_size < 1:
            raise BadInputError(f"shard_size must be >= 1, got {shard_size}")
        if points_dtype not in POINT_DTYPES:
            raise BadInputError(f"points dtype must be one of {POINT_DTYPES}, got {points_dtype!r}")
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise BadInputError(f"{self.out_dir}: exists and is not a folder")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        old = [p for p in self.out_dir.iterdir() if p.name == MANIFEST or SHARD_PATTERN.match(p.name)]
        if old and not overwrite:
            raise BadInputError(f"{self.out_dir}: already holds a data set; choose an empty folder")
        for p in old:
            p.unlink()
        self.source = source
        self.shard_size = shard_size
        self.points_dtype = points_dtype
        self.groups = tuple(groups)
        self.manifest_extra = manifest_extra
        self._buffer: list[ShapeRecord] = []
        self._entries: list[dict[str, Any]] = []
        self._ids: set[str] = set()
        self._n_points: int | None = None
        self._closed = False

    def add(self, record: ShapeRecord) -> None:
        """Queue one record; a shard is written each time ``shard_size`` records are queued."""
        if self._closed:
            raise BadInputError("DatasetWriter is already finished")
        pts = _check_record(record, self._n_points)
        if record.id in self._ids:
            raise BadInputError(f"duplicate id {record.id!r}")
        self._ids.add(record.id)
        self._n_points = len(pts)
        self._buffer.append(record)
        if len(self._buffer) >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            entry = write_shard(self.out_dir, len(self._entries), self._buffer, self.points_dtype, self._groups())
            self._entries.append(entry)
            self._buffer = []

    def finish(self) -> dict[str, Any]:
        """Write the last shard and the manifest; returns the manifest."""
        if self._closed:
            raise BadInputError("DatasetWriter is already finished")
        self._flush()
        if not self._entries:
            raise BadInputError(f"{self.out_dir}: no records were written")
        manifest = assemble_manifest(
            self.source, self._entries, groups=self._groups(), points_dtype=self.points_dtype, **self.manifest_extra
        )
        write_manifest(self.out_dir, manifest)
        self._closed = True
        return manifest

    def _groups(self) -> tuple[GroupSpec, ...]:
        """The group sets stored: those that fit the records' point count."""
        return applicable(self.groups, self._n_points or 0)

    def abort(self) -> None:
        """Remove the shards written so far; no manifest is written."""
        for e in self._entries:
            (self.out_dir / e["file"]).unlink(missing_ok=True)
        self._entries, self._buffer, self._closed = [], [], True

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.finish()
