"""Import users' meshes with captions (a CSV) into a sharded data set; bad rows are rejected, not fatal.

CSV columns: ``file`` and ``caption`` required; ``category``, ``attributes`` (JSON object), ``split``
and ``id`` optional. Several rows naming the same file merge their captions. Each file is loaded in
a worker process with a time limit (a file that hangs or crashes its loader is rejected, the import
goes on). Every rejected row is written to ``OUT/rejected.jsonl`` as ``{row, file, reason, code}``.
"""

from __future__ import annotations

import json
import os
import posixpath
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from daer.data.formats import (
    Rejection,
    RejectLog,
    clean_caption,
    get_loader,
    load_task,
    read_csv_rows,
    seeded_split,
)
from daer.data.mesh_io import DEFAULT_MAX_BYTES, load_points, up_axis
from daer.data.point_groups import GroupSpec, default_specs
from daer.data.record import SPLITS, ShapeRecord
from daer.data.shards import DatasetWriter
from daer.data.timed_pool import TaskFailed, TimedPool
from daer.errors import BadInputError

Loader = Callable[..., tuple[np.ndarray, "np.ndarray | None"]]
REJECTED = "rejected.jsonl"


@dataclass
class ImportSummary:
    """What an import did: shapes written, rows rejected per code, where the reasons are."""

    imported: int
    rejected: dict[str, int]
    out_dir: str
    rejected_path: str
    manifest: dict[str, Any] | None = None

    def format(self) -> str:
        """Two human-readable lines."""
        n_rej = sum(self.rejected.values())
        by = ", ".join(f"{k}: {v}" for k, v in self.rejected.items())
        return f"imported {self.imported} shapes into {self.out_dir}\nrejected {n_rej} rows" + (
            f" ({by}); reasons in {self.rejected_path}" if n_rej else ""
        )


@dataclass
class _Entry:
    """One file with everything its CSV rows say about it."""

    file: str  # normalised POSIX path relative to the meshes folder
    id: str
    rows: list[int]
    captions: list[str] = field(default_factory=list)
    category: str = ""
    attributes: dict[str, str] | None = None
    split: str = ""


def parse_attributes(text: str) -> dict[str, str]:
    """``attributes`` cell -> dict of strings ("" -> {}); numbers and booleans become strings.

    Raises:
        BadInputError: not a JSON object, or a nested value.
    """
    if not text.strip():
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInputError(f"attributes are not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise BadInputError("attributes must be a JSON object")
    out: dict[str, str] = {}
    for k, v in obj.items():
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, str | int | float):
            out[k] = str(v)
        else:
            raise BadInputError(f"attribute {k!r} must be a string, number or boolean")
    return out


def read_captions(csv_path: str | os.PathLike[str], reject: Callable[[Rejection], None]) -> list[_Entry]:
    """Parse and validate the captions CSV into one entry per file, in first-appearance order.

    Raises:
        BadInputError: the CSV is unreadable or lacks a ``file`` or ``caption`` column.
    """
    names, rows = read_csv_rows(csv_path)
    missing = [c for c in ("file", "caption") if c not in names]
    if missing:
        header = ascii(",".join(names))[1:-1][:120]
        raise BadInputError(f"{csv_path}: missing column(s) {', '.join(missing)} (header: {header})")
    by_file: dict[str, _Entry] = {}
    by_id: dict[str, str] = {}
    for line, row, error in rows:
        if row is None:
            reject(Rejection(line, "", error, "malformed-row"))
            continue
        raw_file = row["file"].strip()
        try:
            _entry_from_row(line, raw_file, row, by_file, by_id)
        except _RowRejected as r:
            reject(Rejection(line, raw_file, str(r), r.code))
    return list(by_file.values())


class _RowRejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _entry_from_row(line: int, raw_file: str, row: dict[str, str], by_file: dict, by_id: dict) -> None:
    """Validate one row and merge it into ``by_file`` (raises _RowRejected)."""
    if not raw_file:
        raise _RowRejected("no-file", "empty file name")
    if not _is_utf8(raw_file):
        raise _RowRejected("undecodable", "file name is not valid UTF-8")
    rel = posixpath.normpath(raw_file.replace("\\", "/"))
    if rel.startswith("/") or rel == ".." or rel.startswith("../") or rel == ".":
        raise _RowRejected("outside-root", f"file {raw_file!r} is not inside the meshes folder")
    try:
        caption = clean_caption(row["caption"])
    except BadInputError as e:
        raise _RowRejected("undecodable-caption" if "UTF-8" in str(e) else "empty-caption", str(e)) from None
    category = row.get("category", "").strip()
    split = row.get("split", "").strip().lower()
    shape_id = row.get("id", "").strip() or posixpath.splitext(rel)[0]
    for name, value in (("category", category), ("id", shape_id)):
        if not _is_utf8(value):
            raise _RowRejected("undecodable", f"{name} is not valid UTF-8")
    if split and split not in SPLITS:
        raise _RowRejected("bad-split", f"split {split!r} is not one of {', '.join(SPLITS)}")
    try:
        attributes = parse_attributes(row.get("attributes", ""))
    except BadInputError as e:
        raise _RowRejected("bad-attributes", str(e)) from None
    if not _is_utf8(json.dumps(attributes, ensure_ascii=False)):
        raise _RowRejected("undecodable", "attributes are not valid UTF-8")
    has_attrs = bool(row.get("attributes", "").strip())
    entry = by_file.get(rel)
    if entry is None:
        if shape_id in by_id:
            raise _RowRejected("duplicate-id", f"id {shape_id!r} is already used by {by_id[shape_id]!r}")
        by_id[shape_id] = rel
        by_file[rel] = _Entry(rel, shape_id, [line], [caption], category, attributes if has_attrs else None, split)
        return
    if row.get("id", "").strip() and shape_id != entry.id:
        raise _RowRejected("conflict", f"id {shape_id!r} differs from {entry.id!r} given earlier for this file")
    for name, new, old in (("category", category, entry.category), ("split", split, entry.split)):
        if new and old and new != old:
            raise _RowRejected("conflict", f"{name} {new!r} differs from {old!r} given earlier for this file")
    if has_attrs and entry.attributes is not None and attributes != entry.attributes:
        raise _RowRejected("conflict", "attributes differ from those given earlier for this file")
    entry.rows.append(line)
    if caption not in entry.captions:
        entry.captions.append(caption)
    entry.category = entry.category or category
    entry.split = entry.split or split
    if has_attrs and entry.attributes is None:
        entry.attributes = attributes


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def import_meshes(
    meshes_dir: str | os.PathLike[str],
    captions_csv: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    n_points: int = 2048,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 30.0,
    workers: int = 1,
    shard_size: int = 1000,
    overwrite: bool = False,
    progress: bool = True,
    loader: Loader = load_points,
) -> ImportSummary:
    """Import every file the CSV names; rows that cannot be used go to ``OUT/rejected.jsonl``.

    Args:
        meshes_dir: folder the CSV's ``file`` paths are relative to.
        captions_csv: the CSV (see module docstring).
        out_dir: data set folder to create.
        n_points: points per shape.
        seed: sampling and split seed (splits absent from the CSV are a seeded 80/10/10 by id).
        max_bytes: larger files are rejected unread.
        timeout: seconds one file may take; its worker is killed past that.
        workers: loader processes.
        shard_size: records per shard.
        overwrite: replace a data set already in ``out_dir``.
        progress: show a progress bar.
        loader: ``load_points``-compatible function (a module-level function, so workers can run it).

    Returns:
        the summary; ``imported`` is 0 (and no data set is written) when nothing could be imported.

    Raises:
        BadInputError: unusable CSV or meshes folder.
    """
    meshes_dir, out_dir = Path(meshes_dir), Path(out_dir)
    if not meshes_dir.is_dir():
        raise BadInputError(f"{meshes_dir}: meshes folder not found")
    if n_points < 1:
        raise BadInputError(f"--points must be >= 1, got {n_points}")
    log = RejectLog(sort_by_row=True)
    entries = read_captions(captions_csv, log)
    if not entries and not log.items:
        raise BadInputError(f"{captions_csv}: no rows after the header")

    def records() -> Iterator[ShapeRecord]:
        tasks = ((str(meshes_dir / e.file), n_points, seed, e.id, max_bytes) for e in entries)
        with TimedPool(load_task, loader, workers=workers, timeout=timeout) as pool:
            results = pool.map_ordered(tasks, total=len(entries), progress=progress)
            for entry, result in zip(entries, results, strict=True):
                if isinstance(result, TaskFailed):
                    for line in entry.rows:
                        log(Rejection(line, entry.file, result.reason, result.code))
                    continue
                points, normals = result
                yield ShapeRecord(
                    id=entry.id,
                    category=entry.category,
                    attributes=entry.attributes or {},
                    captions=entry.captions,
                    split=entry.split or seeded_split(entry.id, seed),
                    points=points,
                    normals=normals,
                    source=entry.file,
                )

    source = f"import:{meshes_dir.name}"
    return write_records(records(), out_dir, source, log, shard_size=shard_size, overwrite=overwrite, seed=seed)


def import_format(
    name: str,
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    captions: str | os.PathLike[str] | None = None,
    shape_names: str | os.PathLike[str] | None = None,
    n_points: int = 2048,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float | None = 30.0,
    workers: int = 1,
    shard_size: int = 1000,
    overwrite: bool = False,
    progress: bool = True,
    up: str | None = None,
) -> ImportSummary:
    """Import a public data set through its format loader (``daer.data.formats.FORMATS``).

    Args:
        name: format name ("modelnet40-h5", "scanobjectnn-h5", "openshape-npy", "cap3d", "text2shape").
        source: the shape data: HDF5 file or folder, folder of ``.npy`` objects, or folder of point/mesh files.
        out_dir: data set folder to create; rejected rows go to ``OUT/rejected.jsonl``.
        captions: caption file (required for cap3d and text2shape, optional for openshape-npy).
        shape_names: ModelNet40 class-name file (default ``shape_names.txt`` beside the data).
        n_points, seed, max_bytes, shard_size, overwrite, progress: as for :func:`import_meshes`.
        timeout, workers: per-file time limit and loader processes for cap3d and text2shape files.
        up: the data's up axis, turned to daer's +z; None for the format's own (``FORMAT_UP``: y for the
            ModelNet40 and ScanObjectNN HDF5 files and for Text2Shape's ShapeNet models).

    Raises:
        BadInputError: unknown format, missing or misplaced arguments, unusable source or caption file.
    """
    loader = get_loader(name)
    if n_points < 1:
        raise BadInputError(f"--points must be >= 1, got {n_points}")
    needs_captions = name in ("cap3d", "text2shape")
    if needs_captions and captions is None:
        raise BadInputError(f"format {name} needs --captions (the caption CSV)")
    if name.endswith("-h5") and captions is not None:
        raise BadInputError(f"format {name} takes its captions from the class names; drop --captions")
    if shape_names is not None and name != "modelnet40-h5":
        raise BadInputError("--shape-names applies to modelnet40-h5 only")
    log = RejectLog()
    if up is not None:
        up_axis("", up)  # refuses an unknown axis before any file is read
    common: dict[str, Any] = {"n_points": n_points, "seed": seed, "on_reject": log, "up": up}
    if name == "modelnet40-h5":
        records = loader(source, shape_names=shape_names, **common)
    elif name == "scanobjectnn-h5":
        records = loader(source, **common)
    elif name == "openshape-npy":
        records = loader(source, captions, max_bytes=max_bytes, **common)
    else:
        records = loader(captions, source, max_bytes=max_bytes, timeout=timeout, workers=workers, **common)
    bar = tqdm(records, disable=not progress, desc=f"import {name}", unit="shape", file=sys.stderr, leave=False)
    return write_records(bar, out_dir, name, log, shard_size=shard_size, overwrite=overwrite, seed=seed)


def write_records(
    records: Iterable[ShapeRecord],
    out_dir: str | os.PathLike[str],
    source: str,
    log: RejectLog,
    *,
    shard_size: int = 1000,
    overwrite: bool = False,
    groups: Sequence[GroupSpec] | None = None,
    **manifest_extra: Any,
) -> ImportSummary:
    """Write a record stream as a data set (atomic: no manifest unless complete) plus ``rejected.jsonl``.

    Records whose id repeats an earlier one are rejected ("duplicate-id"). When no record arrives,
    nothing but ``rejected.jsonl`` is written and the summary says ``imported == 0``. Every shape's FPS/kNN
    groups are stored for ``groups`` (None: the built-in configs', :func:`daer.data.point_groups.default_specs`).
    """
    out_dir = Path(out_dir)
    specs = default_specs() if groups is None else groups
    writer = DatasetWriter(out_dir, source, shard_size, overwrite=overwrite, groups=specs, **manifest_extra)
    seen: set[str] = set()
    manifest = None
    try:
        for rec in records:
            if rec.id in seen:
                log(Rejection(None, rec.source, f"id {rec.id!r} already imported", "duplicate-id"))
                continue
            seen.add(rec.id)
            writer.add(rec)
        if seen:
            manifest = writer.finish()
        else:
            writer.abort()
    except BaseException:
        writer.abort()
        close = getattr(records, "close", None)
        if close is not None:
            close()  # stops a generator's worker pool now rather than at garbage collection
        raise
    finally:
        rejected_path = log.write(out_dir / REJECTED)
    return ImportSummary(len(seen), log.counts(), str(out_dir), str(rejected_path), manifest)
