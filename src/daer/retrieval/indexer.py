"""Build a shape search index from a checkpoint and a data set (``daer index build``).

Shapes stream from the data set in batches through the model's point encoder; memory stays bounded by
one batch plus the search structure, because every per-shape output goes straight into memory-mapped
files of the index folder being written:

- ``vectors.npy``: (n, D) float32 global shape embeddings (unit norm);
- ``fine_<l>.npy``: (n, N_l, D) float16 point tokens of HAF level l, read only for re-ranked candidates;
- ``meta.jsonl`` + ``meta_offsets.npy``: one JSON line per shape ``{"id", "category", "attributes",
  "caption"}`` (first caption) and the byte offset of each line, so a result's metadata is one read;
- the method's own files (ERS tree + FAISS leaves, or a FAISS exact / IVF / HNSW index).

Row ``i`` of every file is the ``i``-th shape of the data set (of ``split`` if given); the search index
stores row numbers as ids. The manifest records the model hash (SHA-256 of the checkpoint weights), the
checkpoint and data paths and the stored fine levels, so a search refuses another model. Shapes are grouped
(FPS/kNN) from the data set's stored groups where it holds the set the model is fed
(:mod:`daer.data.point_groups`), else by the encoder on the fly.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daer.data.point_groups import GroupSpec, stored_spec, unpack
from daer.data.sampling import fixed_subset
from daer.data.shards import iter_records_with_groups, read_manifest
from daer.errors import BadInputError, IntegrityError
from daer.models.model import CONFIG_FILE, DaerModel, load_model
from daer.retrieval.baselines import ExactIndex, HNSWIndex, IVFIndex
from daer.retrieval.ers import ERSIndex
from daer.retrieval.store import IndexWriter

METHODS = {"ers": ERSIndex, "exact": ExactIndex, "ivf": IVFIndex, "hnsw": HNSWIndex}
META_FILE = "meta.jsonl"


def model_hash(ckpt: str | os.PathLike[str]) -> str:
    """Identity of a checkpoint: the SHA-256 of its weights, as recorded (and checked) by ``load_model``."""
    path = Path(ckpt)
    run_dir = path.parent if path.is_file() else path
    try:
        doc = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        return str(doc["weights_sha256"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"checkpoint {run_dir}: no readable weights hash in {CONFIG_FILE} ({e})") from e


def default_settings(method: str, n: int) -> dict[str, Any]:
    """Index settings used when the caller gives none (ERS: SQ8 leaves of ~64 shapes, exact re-score)."""
    if method == "ers":
        return {"codes": "sq8", "n_leaves": max(1, n // 64), "depth": 2, "beam": 16, "n_probe": 32}
    if method == "ivf":
        return {"nprobe": 32}
    if method == "hnsw":
        return {"ef_search": 64}
    return {}


def build_index(
    ckpt: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    method: str = "ers",
    split: str | None = None,
    batch: int = 32,
    fine_levels: list[int] | None = None,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
    model: DaerModel | None = None,
) -> dict[str, Any]:
    """Embed every shape of ``data_dir`` with the checkpoint's model and write a search index to ``out``.

    Args:
        ckpt: run folder (or its ``model.safetensors``).
        data_dir: data set folder (Parquet shards + manifest).
        out: index folder to write (replaced atomically when complete).
        method: "ers", "exact", "ivf" or "hnsw".
        split: index only this split (default: every shape).
        batch: shapes per encoder batch.
        fine_levels: HAF levels (1-based) whose tokens are stored for re-ranking; default all levels of a
            haf model, none for a global model. ``[]`` stores none (no re-ranking).
        settings: index settings (see :func:`default_settings`), e.g. ``{"codes": "flat"}`` for ERS.
        progress: show a progress bar on stderr.
        model: the already loaded checkpoint model (else loaded from ``ckpt``).

    Returns:
        A summary ``{"path", "method", "n", "dim", "fine_levels", "seconds"}``.
    """
    if method not in METHODS:
        raise BadInputError(f"unknown index method {method!r} (known: {', '.join(METHODS)})")
    if batch < 1:
        raise BadInputError(f"batch must be >= 1, got {batch}")
    t0 = time.perf_counter()
    manifest = read_manifest(data_dir)
    n = int(manifest["n"] if split is None else manifest.get("counts", {}).get(split, 0))
    if n == 0:
        raise BadInputError(f"{data_dir}: no shapes to index{'' if split is None else f' in split {split!r}'}")
    model = load_model(ckpt) if model is None else model
    cfg = model.config
    n_levels = len(cfg.level_sizes)
    levels = list(range(1, n_levels + 1)) if fine_levels is None else sorted(set(fine_levels))
    if model.haf is None:
        levels = []
    if any(lv < 1 or lv > n_levels for lv in levels):
        raise BadInputError(f"fine levels must be in 1..{n_levels}, got {fine_levels}")
    dim = int(cfg.embed_dim)
    mhash = model_hash(ckpt)
    with IndexWriter(out, method, mhash, dim, n) as w:
        vectors = w.open_array("vectors", (n, dim), np.float32)
        fine = {lv: w.open_array(f"fine_{lv}", (n, cfg.level_sizes[lv - 1], dim), np.float16) for lv in levels}
        offsets = np.zeros(n + 1, dtype=np.int64)
        spec = stored_spec(manifest, cfg, int(cfg.n_points))  # shapes with fewer points are refused below
        done = _embed(model, data_dir, split, n, batch, vectors, fine, w.file(META_FILE), offsets, progress, spec)
        if done != n:
            raise IntegrityError(f"{data_dir}: read {done} shapes, the manifest counts {n}")
        vectors.flush()
        for f in fine.values():
            f.flush()
        w.put_array("meta_offsets", offsets)
        chosen = {**default_settings(method, n), **(settings or {})}
        index = METHODS[method].build(vectors, ids=np.arange(n, dtype=np.int64), model_hash=mhash, **chosen)
        index.write_to(w)
        w.meta.update(
            {
                "ckpt": str(Path(ckpt).resolve()),
                "data_dir": str(Path(data_dir).resolve()),
                "split": split,
                "fine_levels": levels,
                "level_sizes": list(cfg.level_sizes),
                "n_points": int(cfg.n_points),
                "model_mode": cfg.mode,
                "build_settings": chosen,
            }
        )
        del vectors, fine, index
    seconds = time.perf_counter() - t0
    return {"path": str(out), "method": method, "n": n, "dim": dim, "fine_levels": levels, "seconds": seconds}


@torch.no_grad()
def _embed(
    model: DaerModel,
    data_dir: str | os.PathLike[str],
    split: str | None,
    n: int,
    batch: int,
    vectors: np.ndarray,
    fine: dict[int, np.ndarray],
    meta_path: Path,
    offsets: np.ndarray,
    progress: bool,
    spec: GroupSpec | None = None,
) -> int:
    """Stream shapes in batches into ``vectors`` / ``fine`` and their metadata into ``meta_path``; with ``spec``,
    their FPS/kNN groups come from that stored set."""
    from tqdm import tqdm

    n_points = int(model.config.n_points)
    bar = tqdm(total=n, unit="shape", desc="embedding", disable=not progress, file=sys.stderr)
    done, pts, rows = 0, [], []
    subsets: dict[int, np.ndarray | None] = {}  # point count -> fixed subset
    with open(meta_path, "wb") as meta:

        def flush() -> None:
            nonlocal done, pts, rows
            x = torch.from_numpy(np.stack(pts))
            feats = model.encode_points(x, None if spec is None else unpack(np.stack(rows), spec))
            b = len(pts)
            vectors[done : done + b] = feats.global_.float().cpu().numpy()
            for lv, arr in fine.items():
                arr[done : done + b] = feats.levels[lv - 1].cpu().numpy().astype(np.float16)
            done += b
            pts, rows = [], []
            bar.update(b)

        for rec, row in iter_records_with_groups(data_dir, split, spec):
            if done + len(pts) >= n:
                raise IntegrityError(f"{data_dir}: more shapes than the manifest counts ({n})")
            if row is not None:
                rows.append(row)
            p = np.asarray(rec.points, dtype=np.float32)
            if len(p) < n_points:
                raise BadInputError(f"{data_dir}: shape {rec.id} has {len(p)} points, the model needs {n_points}")
            if len(p) not in subsets:
                subsets[len(p)] = fixed_subset(len(p), n_points)
            subset = subsets[len(p)]
            pts.append(p if subset is None else p[subset])
            line = json.dumps(
                {
                    "id": rec.id,
                    "category": rec.category,
                    "attributes": rec.attributes,
                    "caption": rec.captions[0] if rec.captions else "",
                },
                ensure_ascii=False,
            ).encode("utf-8")
            row = done + len(pts) - 1
            meta.write(line + b"\n")
            offsets[row + 1] = offsets[row] + len(line) + 1
            if len(pts) == batch:
                flush()
        if pts:
            flush()
    bar.close()
    return done
