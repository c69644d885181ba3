"""On-disk cache of frozen text-encoder token features: one SQLite file, fp16 payloads.

Keys are hex SHA-256 digests of (encoder hash, cut layer, max tokens, caption), so a different
encoder or setting never reads another's features. SQLite gives atomic, crash-safe writes and lets
several processes (DDP ranks) share one file; a small in-memory LRU sits in front of it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

_SCHEMA = "CREATE TABLE IF NOT EXISTS feats (key TEXT PRIMARY KEY, ids BLOB NOT NULL, hidden BLOB NOT NULL)"


def default_cache_path() -> Path:
    """``$DAER_CACHE_DIR/text_features.sqlite``, else ``~/.cache/daer/text_features.sqlite``."""
    root = os.environ.get("DAER_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "daer")
    return Path(root) / "text_features.sqlite"


def feature_key(encoder_hash: str, setting: str, caption: str) -> str:
    """Cache key of one caption's features under one encoder and setting."""
    return hashlib.sha256(f"{encoder_hash}\x00{setting}\x00{caption}".encode()).hexdigest()


class TextFeatureCache:
    """Token ids (int32) and hidden states (fp16) per caption key, on disk and in a memory LRU.

    Args:
        path: the SQLite file; None keeps the cache in memory only.
        memory_bytes: budget of the in-memory LRU.
    """

    def __init__(self, path: str | os.PathLike[str] | None, memory_bytes: int = 256 << 20) -> None:
        self.path = None if path is None else Path(path)
        self.memory_bytes = memory_bytes
        self._mem: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._mem_used = 0
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()  # one connection shared by threads (e.g. a web server's pool)
        self.hits = 0
        self.misses = 0

    def _db(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
                conn.commit()
                self._conn = conn
            except (OSError, sqlite3.Error) as e:
                warnings.warn(f"text feature cache {self.path} unusable ({e}); caching in memory only", stacklevel=2)
                self.path = None
                return None
        return self._conn

    def _remember(self, key: str, value: tuple[np.ndarray, np.ndarray]) -> None:
        if key in self._mem:
            self._mem.move_to_end(key)
            return
        self._mem[key] = value
        self._mem_used += value[0].nbytes + value[1].nbytes
        while self._mem_used > self.memory_bytes and self._mem:
            _, old = self._mem.popitem(last=False)
            self._mem_used -= old[0].nbytes + old[1].nbytes

    def get_many(self, keys: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The cached ``(ids (T,), hidden (T, H) fp16)`` of those keys that are present."""
        with self._lock:
            return self._get_many(keys)

    def _get_many(self, keys: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rest = []
        for k in keys:
            if k in self._mem:
                self._mem.move_to_end(k)
                found[k] = self._mem[k]
            else:
                rest.append(k)
        db = self._db()
        if db is not None and rest:
            for s in range(0, len(rest), 500):
                part = rest[s : s + 500]
                rows = db.execute(
                    f"SELECT key, ids, hidden FROM feats WHERE key IN ({','.join('?' * len(part))})", part
                ).fetchall()
                for k, ids_b, hid_b in rows:
                    ids = np.frombuffer(ids_b, dtype=np.int32)
                    hidden = np.frombuffer(hid_b, dtype=np.float16).reshape(len(ids), -1)
                    found[k] = (ids, hidden)
                    self._remember(k, (ids, hidden))
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put_many(self, items: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Store ``key -> (ids, hidden)``; one transaction, so a crash leaves all or nothing."""
        with self._lock:
            self._put_many(items)

    def _put_many(self, items: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        clean = {
            k: (np.ascontiguousarray(ids, dtype=np.int32), np.ascontiguousarray(h, dtype=np.float16))
            for k, (ids, h) in items.items()
        }
        for k, v in clean.items():
            self._remember(k, v)
        db = self._db()
        if db is None or not clean:
            return
        try:
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO feats (key, ids, hidden) VALUES (?, ?, ?)",
                    [(k, ids.tobytes(), h.tobytes()) for k, (ids, h) in clean.items()],
                )
        except sqlite3.Error as e:
            warnings.warn(f"text feature cache {self.path}: write failed ({e}); continuing", stacklevel=2)

    def __len__(self) -> int:
        db = self._db()
        if db is None:
            return len(self._mem)
        return int(db.execute("SELECT COUNT(*) FROM feats").fetchone()[0])

    def close(self) -> None:
        """Close the database connection (reopened on next use)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __getstate__(self) -> dict:
        # A sqlite connection cannot cross processes (DataLoader workers, spawn): reopen there.
        state = self.__dict__.copy()
        state["_conn"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
