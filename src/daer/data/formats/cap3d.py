"""Cap3D: automated captions for Objaverse objects (CSV ``uid,caption``, no header) plus point files per uid.

Point files are found anywhere under the points folder by file name (``<uid>.ply``, ``.npy``, ``.pt``,
or a mesh); Cap3D's own clouds come as PLY or ``.pt`` files.
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


def load_cap3d(
    captions: str | os.PathLike[str],
    points_dir: str | os.PathLike[str],
    n_points: int = 2048,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_reject: RejectFn = ignore_rejection,
    timeout: float | None = 30.0,
    workers: int = 1,
    up: str | None = None,
) -> Iterator[ShapeRecord]:
    """Stream Cap3D objects: one record per uid, rows of the same uid merged, split a seeded 80/10/10.

    Args:
        captions: the Cap3D CSV (``uid,caption`` rows; a ``uid,caption`` header is skipped).
        points_dir: folder searched (recursively) for ``<uid>.<ext>``.
        n_points: points per shape.
        seed: sampling and split seed.
        max_bytes: larger point files are rejected unread.
        on_reject: receives each row that cannot be used.
        timeout: seconds per file (its worker process is killed past that); None for no limit.
        workers: loader processes.
        up: the files' up axis, turned to daer's +z; None for the format's (``FORMAT_UP``).

    Raises:
        BadInputError: unreadable CSV or missing points folder.
    """
    captions = Path(captions)
    _, rows = read_csv_rows(captions, fieldnames=["uid", "caption"])
    is_header = lambda line, row: line == 1 and row is not None and row["uid"].strip().lower() == "uid"  # noqa: E731
    body = (r for r in rows if not is_header(r[0], r[1]))
    groups = group_caption_rows(body, captions.name, "uid", "caption", on_reject)
    files = index_files(points_dir, SUPPORTED_EXTS)
    yield from load_groups(
        groups.values(), files, Path(points_dir), n_points, seed, max_bytes, on_reject, timeout, workers,
        partial(load_points, up=up or FORMAT_UP["cap3d"]),  # picklable for the workers
    )  # fmt: skip
