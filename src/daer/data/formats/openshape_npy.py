"""OpenShape / Objaverse-style objects: one ``<uid>.npy`` per object holding a dict with ``xyz`` (N, 3)
(and optionally ``rgb`` and caption fields), captions from a uid -> text mapping (JSON or CSV).

The dicts are pickled by NumPy; they are read with a NumPy-only unpickler, so a hostile file cannot
run code (``daer.data.mesh_io.read_npy``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from daer.data.formats import (
    FORMAT_UP,
    RejectFn,
    Rejection,
    caption_or_reject,
    ignore_rejection,
    key_rng,
    read_text_mapping,
    seeded_split,
)
from daer.data.mesh_io import DEFAULT_MAX_BYTES, BadFileError, load_points, read_npy
from daer.data.record import ShapeRecord
from daer.errors import BadInputError

IN_FILE_CAPTION_KEYS = ("text", "caption", "captions", "blip_caption", "msft_caption")


def load_openshape_npy(
    path: str | os.PathLike[str],
    captions: str | os.PathLike[str] | None = None,
    n_points: int = 2048,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_reject: RejectFn = ignore_rejection,
    up: str | None = None,
) -> Iterator[ShapeRecord]:
    """Stream objects from ``.npy`` files under ``path`` (recursively), uid = file stem.

    Args:
        path: a folder of ``.npy`` files, or one file.
        captions: uid -> caption(s) mapping (``.json`` object or ``uid,caption`` CSV); when None or
            when a uid is absent, text fields inside the file are used (``text``, ``blip_caption``...).
        n_points: points per shape.
        seed: sampling and split seed.
        max_bytes: larger files are rejected unread.
        on_reject: receives each file that cannot be used.
        up: the files' up axis, turned to daer's +z; None for the format's (``FORMAT_UP``).

    Raises:
        BadInputError: ``path`` missing or holding no ``.npy`` file; unreadable caption mapping.
    """
    path = Path(path)
    if path.is_file():
        files, root = [path], path.parent
    elif path.is_dir():
        files, root = sorted(p for p in path.rglob("*.npy") if p.is_file()), path
    else:
        raise BadInputError(f"{path}: not found")
    if not files:
        raise BadInputError(f"{path}: no .npy files")
    mapping = read_text_mapping(captions) if captions is not None else {}
    for f in files:
        uid, rel = f.stem, f.relative_to(root).as_posix()
        try:
            points, _ = load_points(f, n_points, key_rng(seed, uid), max_bytes, up=up or FORMAT_UP["openshape-npy"])
            texts = mapping.get(uid) or _in_file_captions(f)
        except BadFileError as e:
            on_reject(Rejection(None, rel, str(e), e.code))
            continue
        if not texts:
            on_reject(Rejection(None, rel, f"no caption for uid {uid!r}", "empty-caption"))
            continue
        cleaned = [c for c in (caption_or_reject(t, None, rel, on_reject) for t in texts) if c is not None]
        if not cleaned:
            continue
        yield ShapeRecord(
            id=uid,
            category="",
            attributes={},
            captions=list(dict.fromkeys(cleaned)),
            split=seeded_split(uid, seed),
            points=points,
            source=rel,
        )


def _in_file_captions(path: Path) -> list[str]:
    """Caption strings stored in the object's own dict, if any."""
    obj = read_npy(path)
    if not isinstance(obj, dict):
        return []
    out: list[str] = []
    for key in IN_FILE_CAPTION_KEYS:
        val = obj.get(key)
        vals = val.tolist() if hasattr(val, "tolist") else val
        for v in vals if isinstance(vals, list) else [vals]:
            if isinstance(v, str) and v.strip():
                out.append(v)
    return out
