"""ModelNet40 in the PointNet HDF5 layout (``modelnet40_ply_hdf5_2048``), for zero-shot classification.

The folder holds ``ply_data_train*.h5`` / ``ply_data_test*.h5`` with ``data`` (B, 2048, 3) and
``label`` (B, 1), plus ``shape_names.txt`` (one class per line, in label order). Each shape becomes a
record with category = class name and caption "a {class}".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np

from daer.data.formats import FORMAT_UP, RejectFn, Rejection, ignore_rejection, key_rng, seeded_split
from daer.data.mesh_io import UP_ROTATIONS, BadFileError, normalize_cloud, up_axis
from daer.data.record import ShapeRecord
from daer.errors import BadInputError

_CHUNK = 256  # shapes read from an HDF5 file at a time: memory stays bounded for any file size


def load_modelnet40_h5(
    path: str | os.PathLike[str],
    n_points: int = 2048,
    seed: int = 0,
    shape_names: str | os.PathLike[str] | None = None,
    on_reject: RejectFn = ignore_rejection,
    up: str | None = None,
) -> Iterator[ShapeRecord]:
    """Stream ModelNet40 shapes from an HDF5 folder or a single ``.h5`` file.

    Args:
        path: the ``modelnet40_ply_hdf5_2048`` folder, or one of its ``.h5`` files.
        n_points: points per shape (resampled).
        seed: resampling seed (and split seed for files named neither train nor test).
        shape_names: class-name file (default: ``shape_names.txt`` beside the data).
        on_reject: receives each file or shape that cannot be used.
        up: the files' up axis, turned to daer's +z; None for the format's (y: ``FORMAT_UP``).

    Raises:
        BadInputError: no ``.h5`` files or no class-name file.
    """
    path = Path(path)
    files = h5_files(path)
    folder = path if path.is_dir() else path.parent
    names_file = Path(shape_names) if shape_names is not None else folder / "shape_names.txt"
    names = read_class_names(names_file)
    yield from iter_h5_classification(
        files, names, n_points, seed, on_reject, _split_of, up or FORMAT_UP["modelnet40-h5"]
    )


def _split_of(name: str) -> str | None:
    name = name.lower()
    return "train" if "train" in name else "test" if "test" in name else None


def h5_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``.h5``/``.hdf5`` files directly inside it (sorted)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BadInputError(f"{path}: not found")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".h5", ".hdf5") and p.is_file())
    if not files:
        raise BadInputError(f"{path}: no .h5 files in this folder")
    return files


def read_class_names(path: Path) -> list[str]:
    """One class name per non-empty line."""
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: cannot read class names ({e})") from e
    if not names:
        raise BadInputError(f"{path}: no class names")
    return names


def iter_h5_classification(
    files: list[Path],
    class_names: list[str],
    n_points: int,
    seed: int,
    on_reject: RejectFn,
    split_of: Callable[[str], str | None],
    up: str = "z",
) -> Iterator[ShapeRecord]:
    """Records from HDF5 files holding ``data`` (B, N, 3+) and ``label`` (B,) or (B, 1), whose up axis
    ``up`` is turned to +z.

    Ids are ``<file stem>/<index>``; a file with the wrong layout and a shape with a bad label or
    unusable points are rejected, the rest goes on.
    """
    for f in files:
        try:
            h5 = h5py.File(f, "r")
        except Exception as e:  # h5py raises OSError for non-HDF5 bytes, others for damaged ones
            on_reject(Rejection(None, f.name, f"not a readable HDF5 file ({e})", "unreadable"))
            continue
        with h5:
            layout = _check_layout(h5)
            if layout:
                on_reject(Rejection(None, f.name, layout, "bad-layout"))
                continue
            data, label = h5["data"], h5["label"]
            split = split_of(f.name)
            turn = UP_ROTATIONS[up_axis(".h5", up)]
            for start in range(0, data.shape[0], _CHUNK):
                try:
                    block = np.asarray(data[start : start + _CHUNK])  # (C, N, 3+)
                    labels = np.asarray(label[start : start + _CHUNK]).reshape(len(block), -1)[:, 0]
                except Exception as e:
                    on_reject(Rejection(start, f.name, f"cannot read shapes from {start} on ({e})", "unreadable"))
                    break
                for j, (cloud, lab) in enumerate(zip(block, labels, strict=True)):
                    i = start + j
                    rec = _record(f, i, cloud, lab, class_names, n_points, seed, split, on_reject, turn)
                    if rec is not None:
                        yield rec


def _check_layout(h5: h5py.File) -> str:
    """Empty string when ``data``/``label`` look right, else what is wrong."""
    data, label = h5.get("data"), h5.get("label")
    if not isinstance(data, h5py.Dataset) or not isinstance(label, h5py.Dataset):
        return f"needs datasets 'data' and 'label', found {', '.join(sorted(h5.keys())) or 'none'}"
    if data.ndim != 3 or data.shape[2] < 3:
        return f"'data' must be (B, N, 3), got {data.shape}"
    if label.shape[:1] != data.shape[:1] or label.size != data.shape[0]:
        return f"'label' shape {label.shape} does not match {data.shape[0]} shapes"
    return ""


def _record(
    f: Path,
    i: int,
    cloud: np.ndarray,
    lab: np.generic,
    class_names: list[str],
    n_points: int,
    seed: int,
    split: str | None,
    on_reject: RejectFn,
    turn: np.ndarray,
) -> ShapeRecord | None:
    rid = f"{f.stem}/{i}"
    value = float(lab) if np.issubdtype(np.asarray(lab).dtype, np.number) else float("nan")
    if not (np.isfinite(value) and value == int(value) and 0 <= value < len(class_names)):
        on_reject(Rejection(i, f.name, f"shape {i}: label {lab!r} is not in 0..{len(class_names) - 1}", "bad-label"))
        return None
    name = class_names[int(value)]
    try:
        points = normalize_cloud(cloud, n_points, key_rng(seed, rid)) @ turn.T
    except BadFileError as e:
        on_reject(Rejection(i, f.name, f"shape {i}: {e}", e.code))
        return None
    return ShapeRecord(
        id=rid,
        category=name,
        attributes={},
        captions=[f"a {name.replace('_', ' ')}"],
        split=split or seeded_split(rid, seed),
        points=points,
        source=f.name,
    )
