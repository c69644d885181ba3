"""Shapes of a data set by id, for the service: metadata and points, read shard by shard on demand.

Opening reads only the ``id`` column of every shard (a few bytes per shape) to map each id to its
shard and row; a look-up decodes that one shard and keeps the last few decoded shards in an LRU, so
memory stays bounded by a handful of shards whatever the size of the data set.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from daer.data.shards import float_block, read_manifest, read_shard
from daer.errors import IntegrityError

_META_COLUMNS = ["id", "category", "attributes", "captions", "split"]


@dataclass
class _Shard:
    meta: dict[str, list[Any]]  # column -> Python values per row
    points: np.ndarray  # (R, N, 3) float32


class ShapeStore:
    """Id -> metadata and points for one data set folder.

    Args:
        data_dir: the data set (manifest + Parquet shards).
        cached_shards: decoded shards kept in memory.
        split: hold only the shapes of this split (None: all).
    """

    def __init__(self, data_dir: str | os.PathLike[str], cached_shards: int = 8, split: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.manifest = read_manifest(self.data_dir)
        self.n_points = int(self.manifest["n_points"])
        self.categories: list[str] = sorted(self.manifest.get("categories") or {})
        self._files = [self.data_dir / e["file"] for e in self.manifest["shards"]]
        self._where: dict[str, tuple[int, int]] = {}
        for s in range(len(self._files)):
            table = self._read(s, ["id", "split"])
            splits = table["split"].to_pylist()
            for r, shape_id in enumerate(table["id"].to_pylist()):
                if split is None or splits[r] == split:
                    self._where.setdefault(shape_id, (s, r))
        self._cache: OrderedDict[int, _Shard] = OrderedDict()
        self._max = max(1, cached_shards)
        self._lock = threading.Lock()
        self._decoding: dict[int, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, shape_id: object) -> bool:
        return isinstance(shape_id, str) and shape_id in self._where

    def ids(self) -> list[str]:
        """Every id, in data set order."""
        return list(self._where)

    def _read(self, s: int, columns: list[str]) -> pa.Table:
        return read_shard(self.data_dir, self.manifest["shards"][s], columns)

    def _cached(self, s: int) -> _Shard | None:
        with self._lock:
            hit = self._cache.get(s)
            if hit is not None:
                self._cache.move_to_end(s)
            return hit

    def _shard(self, s: int) -> _Shard:
        hit = self._cached(s)
        if hit is not None:
            return hit
        # One decoder per shard: concurrent first requests (a page of thumbnails) wait for it instead
        # of all decoding the same shard at once.
        with self._lock:
            gate = self._decoding.setdefault(s, threading.Lock())
        with gate:
            hit = self._cached(s)
            if hit is not None:
                return hit
            shard = self._decode(s)
            with self._lock:
                self._cache[s] = shard
                while len(self._cache) > self._max:
                    self._cache.popitem(last=False)
                self._decoding.pop(s, None)
            return shard

    def _decode(self, s: int) -> _Shard:
        table = self._read(s, [*_META_COLUMNS, "points"])
        try:
            points = float_block(table["points"], self.n_points)
        except (ValueError, pa.ArrowException) as e:
            raise IntegrityError(f"{self._files[s]}: points column does not hold {self.n_points} points per row") from e
        return _Shard({c: table[c].to_pylist() for c in _META_COLUMNS}, points)

    def info(self, shape_id: str) -> dict[str, Any] | None:
        """``{"id", "category", "attributes", "captions", "split", "n_points"}``, or None for an unknown id."""
        where = self._where.get(shape_id)
        if where is None:
            return None
        shard, row = self._shard(where[0]), where[1]
        attrs = shard.meta["attributes"][row]
        return {
            "id": shape_id,
            "category": shard.meta["category"][row] or "",
            "attributes": json.loads(attrs) if isinstance(attrs, str) else dict(attrs or {}),
            "captions": list(shard.meta["captions"][row] or []),
            "split": shard.meta["split"][row],
            "n_points": int(shard.points.shape[1]),
        }

    def points(self, shape_id: str) -> np.ndarray | None:
        """(N, 3) float32 points of a shape (a copy), or None for an unknown id."""
        where = self._where.get(shape_id)
        if where is None:
            return None
        pts = self._shard(where[0]).points[where[1]]
        if not np.isfinite(pts).all():
            raise IntegrityError(f"{self.data_dir}: shape {shape_id!r} has no valid points")
        return pts.copy()
