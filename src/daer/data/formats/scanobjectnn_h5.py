"""ScanObjectNN HDF5 files (real scans, 15 classes), for zero-shot classification on real data.

Files such as ``training_objectdataset_augmentedrot_scale75.h5`` / ``test_objectdataset*.h5`` hold
``data`` (B, 2048, 3) and ``label`` (B,); the class order is fixed by the benchmark.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from daer.data.formats import FORMAT_UP, RejectFn, ignore_rejection
from daer.data.formats.modelnet40_h5 import h5_files, iter_h5_classification
from daer.data.record import ShapeRecord

SCANOBJECTNN_CLASSES: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
)  # fmt: skip


def load_scanobjectnn_h5(
    path: str | os.PathLike[str],
    n_points: int = 2048,
    seed: int = 0,
    on_reject: RejectFn = ignore_rejection,
    up: str | None = None,
) -> Iterator[ShapeRecord]:
    """Stream ScanObjectNN shapes from one ``.h5`` file or the ``.h5`` files directly in a folder.

    Split: "train" for files named ``training*``, "test" for ``test*``, else a seeded 80/10/10. ``up``: the
    files' up axis, turned to daer's +z; None for the format's (y: ``FORMAT_UP``).

    Raises:
        BadInputError: no ``.h5`` files.
    """
    files = h5_files(Path(path))
    classes = list(SCANOBJECTNN_CLASSES)
    yield from iter_h5_classification(
        files, classes, n_points, seed, on_reject, _split_of, up or FORMAT_UP["scanobjectnn-h5"]
    )


def _split_of(name: str) -> str | None:
    name = name.lower()
    return "train" if name.startswith("train") else "test" if name.startswith("test") else None
