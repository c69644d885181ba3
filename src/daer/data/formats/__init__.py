"""Public 3D data sets as ``ShapeRecord`` streams, plus the pieces every importer shares.

Each format module has ``load_<name>(...) -> Iterator[ShapeRecord]``; rows or files that cannot be
used are passed to ``on_reject`` as :class:`Rejection` (and skipped), so one bad object never stops
an import. :func:`get_loader` resolves a CLI format name to its loader.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daer.data.record import SPLITS, ShapeRecord
from daer.errors import BadInputError
from daer.utils.atomic import atomic_open

FORMATS: dict[str, str] = {
    "modelnet40-h5": "daer.data.formats.modelnet40_h5:load_modelnet40_h5",
    "scanobjectnn-h5": "daer.data.formats.scanobjectnn_h5:load_scanobjectnn_h5",
    "openshape-npy": "daer.data.formats.openshape_npy:load_openshape_npy",
    "cap3d": "daer.data.formats.cap3d:load_cap3d",
    "text2shape": "daer.data.formats.text2shape:load_text2shape",
}
# Each format's up axis where its files do not say (None: each file's own, as ``load_points`` reads it).
# The PointNet ModelNet40 and ScanObjectNN HDF5 files are +y up (their reference training code turns shapes
# about y), and so are ShapeNet's models, which Text2Shape describes; daer's shapes are +z up.
FORMAT_UP: dict[str, str | None] = {
    "modelnet40-h5": "y",
    "scanobjectnn-h5": "y",
    "openshape-npy": None,
    "cap3d": None,
    "text2shape": "y",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Rejection:
    """One input that was skipped.

    Attributes:
        row: CSV line (header = line 1) or index inside a file; None when a whole file is rejected.
        file: the file the row names or comes from.
        reason: what is wrong, for a person.
        code: short kind of failure, for counting ("empty-caption", "unreadable", "timeout", ...).
    """

    row: int | None
    file: str
    reason: str
    code: str


RejectFn = Callable[[Rejection], None]


class RejectLog:
    """Collects rejections, counts them by code and writes ``rejected.jsonl``.

    Args:
        sort_by_row: write in row order (for one CSV) rather than in the order they were found.
    """

    def __init__(self, sort_by_row: bool = False) -> None:
        self.items: list[Rejection] = []
        self.sort_by_row = sort_by_row

    def __call__(self, rejection: Rejection) -> None:
        self.items.append(rejection)

    def counts(self) -> dict[str, int]:
        """Rejections per code, most frequent first."""
        return dict(Counter(r.code for r in self.items).most_common())

    def write(self, path: str | Path) -> Path:
        """Write one JSON object per line ``{row, file, reason, code}``, atomically."""
        items = self.items
        if self.sort_by_row:
            items = sorted(items, key=lambda r: (r.row is None, r.row or 0))
        with atomic_open(path, "w", encoding="utf-8") as f:
            for r in items:
                f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
        return Path(path)


def ignore_rejection(rejection: Rejection) -> None:
    """Default ``on_reject``: skip silently (importers pass a :class:`RejectLog`)."""


def seeded_split(key: str, seed: int) -> str:
    """Deterministic 80/10/10 train/val/test from a hash of (seed, key): independent of order and size."""
    h = int.from_bytes(hashlib.sha256(f"{seed}\x00{key}".encode()).digest()[:8], "big") / 2**64
    return SPLITS[0] if h < 0.8 else SPLITS[1] if h < 0.9 else SPLITS[2]


def key_rng(seed: int, key: str) -> np.random.Generator:
    """A generator seeded by (seed, key), so a shape samples the same points whatever the order or worker."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "big")])


def clean_caption(text: str | None) -> str:
    """Caption with control characters dropped and whitespace collapsed.

    Raises:
        BadInputError: empty, or not valid UTF-8 (lone surrogates from a ``surrogateescape`` decode).
    """
    if text is None:
        raise BadInputError("empty caption")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError("caption is not valid UTF-8") from None
    text = _SPACE.sub(" ", _CONTROL.sub("", text)).strip()
    if not text:
        raise BadInputError("empty caption")
    return text


def get_loader(name: str) -> Callable[..., Iterator[ShapeRecord]]:
    """The loader function of a format name (one of ``FORMATS``)."""
    if name not in FORMATS:
        raise BadInputError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}")
    module, func = FORMATS[name].split(":")
    return getattr(importlib.import_module(module), func)


def read_text_mapping(path: str | Path) -> dict[str, list[str]]:
    """uid -> captions from a JSON object (text or list of texts) or a CSV/TSV of ``uid,caption`` rows.

    A header row is skipped when its first cell is ``uid``/``id``/``object_id``/``modelId``. Rows
    with an empty uid are ignored; captions are cleaned later by the loaders.

    Raises:
        BadInputError: missing or unreadable mapping file.
    """
    import csv

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BadInputError(f"{path}: cannot read caption mapping ({e.strerror or e})") from e
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    out: dict[str, list[str]] = {}
    if path.suffix.lower() == ".json":
        try:
            doc: Any = json.loads(text)
        except json.JSONDecodeError as e:
            raise BadInputError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(doc, dict):
            raise BadInputError(f"{path}: expected a JSON object mapping uid to caption(s)")
        for uid, val in doc.items():
            texts = val if isinstance(val, list) else [val]
            out[str(uid)] = [t if isinstance(t, str) else "" for t in texts]
        return out
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        for i, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter)):
            if not row or not row[0].strip():
                continue
            if i == 0 and row[0].strip().lower() in ("uid", "id", "object_id", "modelid"):
                continue
            out.setdefault(row[0].strip(), []).append(row[1] if len(row) > 1 else "")
    except csv.Error as e:
        raise BadInputError(f"{path}: malformed CSV ({e})") from e
    return out


def read_csv_rows(
    path: str | Path, fieldnames: list[str] | None = None
) -> tuple[list[str], Iterator[tuple[int, dict[str, str] | None, str]]]:
    """Open a CSV for row-by-row import.

    Bytes that are not UTF-8 survive as lone surrogates (``surrogateescape``) so the rows holding
    them can be rejected one by one rather than failing the whole file.

    Args:
        path: the CSV (a UTF-8 BOM is skipped).
        fieldnames: column names when the file has no header row; otherwise read from line 1,
            stripped and lower-cased.

    Returns:
        the column names and an iterator of ``(line, row, error)``: ``row`` maps column -> cell
        ("" when the row is short) or is None with ``error`` saying why the line could not be parsed.

    Raises:
        BadInputError: the file cannot be read or has no header.
    """
    import csv
    import io

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    except OSError as e:
        raise BadInputError(f"{path}: cannot read CSV ({e.strerror or e})") from e
    reader = csv.reader(io.StringIO(text, newline=""))
    if fieldnames is None:
        try:
            header = next(reader, None)
        except csv.Error as e:
            raise BadInputError(f"{path}: malformed CSV header ({e})") from e
        if not header or not any(h.strip() for h in header):
            raise BadInputError(f"{path}: empty CSV (no header row)")
        fieldnames = [h.strip().lower() for h in header]
    names = list(fieldnames)

    def rows() -> Iterator[tuple[int, dict[str, str] | None, str]]:
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield start, None, f"malformed CSV row ({e})"
                start = reader.line_num + 1
                continue
            if any(c.strip() for c in cells):
                yield start, {n: (cells[i] if i < len(cells) else "") for i, n in enumerate(names)}, ""
            start = reader.line_num + 1

    return names, rows()


def index_files(folder: str | Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """Stem -> file for every file under ``folder`` with one of ``exts`` (first in sorted order wins).

    A file named ``model_normalized.*`` (ShapeNet layout ``<id>/models/model_normalized.obj``) is also
    indexed under its model folder's name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"{folder}: not a folder")
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in exts or not p.is_file():
            continue
        out.setdefault(p.stem, p)
        if p.stem == "model_normalized":
            model = p.parent.parent if p.parent.name == "models" else p.parent
            out.setdefault(model.name, p)
    return out


def caption_or_reject(text: str | None, row: int | None, file: str, on_reject: RejectFn) -> str | None:
    """The cleaned caption, or None after reporting an empty or undecodable one."""
    try:
        return clean_caption(text)
    except BadInputError as e:
        code = "undecodable-caption" if "UTF-8" in str(e) else "empty-caption"
        on_reject(Rejection(row, file, str(e), code))
        return None


@dataclass
class FileGroup:
    """Captions gathered for one object id, with the CSV lines they came from."""

    uid: str
    rows: list[int]
    captions: list[str]
    category: str = ""


def group_caption_rows(
    rows: Iterable[tuple[int, dict[str, str] | None, str]],
    source: str,
    uid_key: str,
    caption_key: str,
    on_reject: RejectFn,
    category_key: str | None = None,
) -> dict[str, FileGroup]:
    """Gather the captions of each object id from parsed CSV rows, rejecting malformed rows and empty ids.

    Args:
        rows: ``(line, row or None, error)`` as :func:`read_csv_rows` yields them.
        source: the CSV's name, for rejections.
        uid_key: column of the object id.
        caption_key: column of the caption.
        on_reject: receives each row that cannot be used.
        category_key: optional column of the category (lower-cased).
    """
    groups: dict[str, FileGroup] = {}
    for line, row, error in rows:
        if row is None:
            on_reject(Rejection(line, source, error, "malformed-row"))
            continue
        uid = (row.get(uid_key) or "").strip()
        if not uid:
            on_reject(Rejection(line, source, f"empty {uid_key}", "no-file"))
            continue
        text = caption_or_reject(row.get(caption_key), line, uid, on_reject)
        if text is None:
            continue
        category = (row.get(category_key) or "").strip().lower() if category_key else ""
        g = groups.setdefault(uid, FileGroup(uid, [], [], category))
        g.rows.append(line)
        if text not in g.captions:
            g.captions.append(text)
    return groups


def load_task(loader: Callable[..., Any], path: str, n_points: int, seed: int, key: str, max_bytes: int) -> tuple:
    """Worker task: ``loader(path, ...)`` with a generator seeded by (seed, key), so results do not depend
    on which worker runs it or in what order."""
    return loader(path, n_points=n_points, rng=key_rng(seed, key), max_bytes=max_bytes)


def load_groups(
    groups: Iterable[FileGroup],
    files: dict[str, Path],
    root: Path,
    n_points: int,
    seed: int,
    max_bytes: int,
    on_reject: RejectFn,
    timeout: float | None = 30.0,
    workers: int = 1,
    loader: Callable[..., Any] | None = None,
) -> Iterator[ShapeRecord]:
    """Load each group's file (found by uid in ``files``) into a record, in group order.

    Files are read by ``loader`` (default ``load_points``) in worker processes with a per-file time
    limit, as the CSV importer does; a missing, bad, hanging or crashing file rejects every row of its group.
    """
    from daer.data.mesh_io import load_points
    from daer.data.timed_pool import TaskFailed, TimedPool

    loader = load_points if loader is None else loader
    present: list[tuple[FileGroup, Path]] = []
    for g in groups:
        path = files.get(g.uid)
        if path is None:
            for row in g.rows:
                on_reject(Rejection(row, g.uid, f"no shape file for {g.uid!r} under {root}", "missing"))
        else:
            present.append((g, path))
    tasks = ((str(p), n_points, seed, g.uid, max_bytes) for g, p in present)
    with TimedPool(load_task, loader, workers=workers, timeout=timeout) as pool:
        for (g, path), result in zip(present, pool.map_ordered(tasks), strict=True):
            rel = path.relative_to(root).as_posix()
            if isinstance(result, TaskFailed):
                for row in g.rows:
                    on_reject(Rejection(row, rel, result.reason, result.code))
                continue
            points, normals = result
            yield ShapeRecord(
                id=g.uid,
                category=g.category,
                attributes={},
                captions=g.captions,
                split=seeded_split(g.uid, seed),
                points=points,
                normals=normals,
                source=rel,
            )
