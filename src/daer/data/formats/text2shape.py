"""Text2Shape: human descriptions of ShapeNet chairs and tables (CSV with ``modelId``, ``description``,
``category``) plus a shape file per model id (``<modelId>.<ext>`` or ShapeNet's
``<modelId>/models/model_normalized.obj``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from daer.data.formats import (
    FORMAT_UP,
    RejectFn,
    group_caption_rows,
    ignore_rejection,
    index_files,
    load_groups,
    read_csv_rows,
)
from daer.data.mesh_io import DEFAULT_MAX_BYTES, SUPPORTED_EXTS, load_points
from daer.data.record import ShapeRecord
from daer.errors import BadInputError


def load_text2shape(
    captions: str | os.PathLike[str],
    shapes_dir: str | os.PathLike[str],
    n_points: int = 2048,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_reject: RejectFn = ignore_rejection,
    timeout: float | None = 30.0,
    workers: int = 1,
    up: str | None = None,
) -> Iterator[ShapeRecord]:
    """Stream Text2Shape models: descriptions of one model merged, category lower-cased, seeded split.

    Args:
        captions: ``captions.tablechair.csv`` (header with at least ``modelId`` and ``description``).
        shapes_dir: folder searched (recursively) for each model's mesh or point file.
        n_points: points per shape.
        seed: sampling and split seed.
        max_bytes: larger files are rejected unread.
        on_reject: receives each row that cannot be used.
        timeout: seconds per file (its worker process is killed past that); None for no limit.
        workers: loader processes.
        up: the files' up axis, turned to daer's +z; None for the format's (``FORMAT_UP``).

    Raises:
        BadInputError: unreadable CSV, missing columns or missing shapes folder.
    """
    captions = Path(captions)
    names, rows = read_csv_rows(captions)
    missing = [c for c in ("modelid", "description") if c not in names]
    if missing:
        header = ascii(",".join(names))[1:-1][:120]
        raise BadInputError(f"{captions}: missing column(s) {', '.join(missing)} (header: {header})")
    groups = group_caption_rows(rows, captions.name, "modelid", "description", on_reject, category_key="category")
    files = index_files(shapes_dir, SUPPORTED_EXTS)
    yield from load_groups(
        groups.values(), files, Path(shapes_dir), n_points, seed, max_bytes, on_reject, timeout, workers,
        partial(load_points, up=up or FORMAT_UP["text2shape"]),  # picklable for the workers
    )  # fmt: skip
