"""Render cache: an in-memory LRU of encoded images, optionally backed by a folder on disk.

Keys are tuples of plain values (shape id, size, view, a namespace naming the index); on disk each
entry is a file named by the SHA-256 of its key, so no client-chosen text ever becomes a path.
Concurrent requests for the same missing key render it once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

from daer.utils.atomic import atomic_path


class RenderCache:
    """Bytes by key: memory first, then disk, then ``make()``.

    Args:
        max_items: entries kept in memory (least recently used dropped first).
        max_bytes: bytes kept in memory at most.
        disk_dir: optional folder for a persistent copy of every entry.
    """

    def __init__(
        self, max_items: int = 1024, max_bytes: int = 256 * 2**20, disk_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        if self.disk_dir is not None:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def digest(key: Hashable) -> str:
        """The file name stem of a key on disk."""
        return hashlib.sha256(repr(key).encode("utf-8")).hexdigest()

    def _disk_path(self, key: Hashable) -> Path | None:
        return None if self.disk_dir is None else self.disk_dir / f"{self.digest(key)}.bin"

    def _get_memory(self, key: Hashable) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def _put_memory(self, key: Hashable, data: bytes) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            if len(data) > self.max_bytes:
                return
            self._items[key] = data
            self._bytes += len(data)
            while len(self._items) > self.max_items or self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)

    def get(self, key: Hashable, make: Callable[[], bytes]) -> bytes:
        """The cached bytes for ``key``, made (once, even under concurrent calls) and stored on a miss."""
        data = self._get_memory(key)
        if data is not None:
            self.hits += 1
            return data
        with self._lock:
            gate = self._pending.setdefault(key, threading.Lock())
        with gate:
            data = self._get_memory(key)  # another thread may have made it while we waited
            if data is not None:
                self.hits += 1
                return data
            try:
                path = self._disk_path(key)
                if path is not None and path.is_file():
                    try:
                        data = path.read_bytes()
                        self.disk_hits += 1
                    except OSError:
                        data = None
                if data is None:
                    self.misses += 1
                    data = make()
                    if path is not None:
                        try:
                            with atomic_path(path) as tmp:
                                tmp.write_bytes(data)
                        except OSError:
                            pass  # a full or read-only disk only costs a re-render later
                self._put_memory(key, data)
                return data
            finally:
                with self._lock:
                    self._pending.pop(key, None)

    def stats(self) -> dict[str, int]:
        """Counts of memory hits, disk hits, misses, entries and bytes in memory."""
        with self._lock:
            return {
                "hits": self.hits,
                "disk_hits": self.disk_hits,
                "misses": self.misses,
                "items": len(self._items),
                "bytes": self._bytes,
            }
