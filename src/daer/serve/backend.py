"""What the service asks of the library: search, shapes by id, explanations and zero-shot classification.

:class:`SearchBackend` is the small protocol the HTTP layer is written against; :class:`LibraryBackend`
implements it with the real parts (an index searcher, the model of the index's checkpoint and the
data set's shards), and :func:`open_backend` assembles one from an index folder.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from daer.errors import IntegrityError
from daer.models.model import DaerModel, Explanation
from daer.models.zeroshot import classify_read
from daer.serve.shapes import ShapeStore


class TextSearcher(Protocol):
    """Anything that turns a text query into ranked results ``{"id", "score", "category", "attributes", "caption"}``."""

    def search(self, query: str, k: int) -> list[dict[str, Any]]: ...


class SearchBackend(Protocol):
    """The library seen from the service."""

    identity: str  # names the index + data set, so caches never mix two of them
    n_points: int  # points per shape the model reads
    labels: list[str]  # default classification labels

    def search(self, query: str, k: int) -> list[dict[str, Any]]: ...
    def shape(self, shape_id: str) -> dict[str, Any] | None: ...
    def points(self, shape_id: str) -> np.ndarray | None: ...
    def explain(self, query: str, shape_id: str) -> Explanation | None: ...
    def classify(self, points: np.ndarray, labels: list[str] | None, up: str) -> tuple[str, list[dict[str, Any]]]: ...
    def health(self) -> dict[str, Any]: ...


class LibraryBackend:
    """The protocol over a searcher, a model and a shape store.

    Args:
        searcher: text -> results.
        model: the index's model; calls to it are serialised with the searcher's (``model_lock``).
        store: the index's data set.
        identity: cache namespace (index path + model hash).
        details: extra fields for ``/healthz`` (method, count, paths).
        explain_cache: explanations kept in memory (a page asks for each word of one explanation).
        model_lock: the lock the searcher holds while it uses the same model (default: a new one).
        heavy_model: a second copy of the model for explanations and classification, with its own lock, so
            that a slow explanation never holds a search (default: ``model``, under ``model_lock``).
    """

    def __init__(
        self,
        searcher: TextSearcher,
        model: DaerModel,
        store: ShapeStore,
        identity: str,
        details: dict[str, Any] | None = None,
        explain_cache: int = 64,
        model_lock: threading.Lock | None = None,
        heavy_model: DaerModel | None = None,
    ) -> None:
        self.searcher = searcher
        self.model = model
        self.store = store
        self.identity = identity
        self.n_points = int(model.config.n_points)
        self.labels = list(store.categories)
        self.details = dict(details or {})
        self._model_lock = model_lock if model_lock is not None else threading.Lock()
        self.heavy_model = heavy_model if heavy_model is not None else model
        self._heavy_lock = threading.Lock() if heavy_model is not None else self._model_lock
        self._cache_lock = threading.Lock()
        self._explained: OrderedDict[tuple[str, str], Explanation] = OrderedDict()
        self._max_explained = explain_cache

    def search(self, query: str, k: int) -> list[dict[str, Any]]:
        """Top ``k`` results for a text query."""
        return self.searcher.search(query, k)

    def shape(self, shape_id: str) -> dict[str, Any] | None:
        """Metadata of a shape, or None when the id is not in the data set."""
        return self.store.info(shape_id)

    def points(self, shape_id: str) -> np.ndarray | None:
        """(N, 3) points of a shape, or None."""
        return self.store.points(shape_id)

    def explain(self, query: str, shape_id: str) -> Explanation | None:
        """Where each word of ``query`` looks on shape ``shape_id`` (None for an unknown id)."""
        key = (query, shape_id)
        with self._cache_lock:
            hit = self._explained.get(key)
            if hit is not None:
                self._explained.move_to_end(key)
                return hit
        pts = self.store.points(shape_id)
        if pts is None:
            return None
        with self._heavy_lock:
            exp = self.heavy_model.explain(query, pts)
        with self._cache_lock:
            self._explained[key] = exp
            while len(self._explained) > self._max_explained:
                self._explained.popitem(last=False)
        return exp

    def classify(self, points: np.ndarray, labels: list[str] | None, up: str) -> tuple[str, list[dict[str, Any]]]:
        """(up axis, labels ranked) for one shape read with ``up`` ("auto": in the file's own axes); the data
        set's categories when ``labels`` is None."""
        with self._heavy_lock:
            return classify_read(self.heavy_model, points, labels or self.labels, up)

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` reports beyond ``status``."""
        return {"shapes": len(self.store), "n_points": self.n_points, "mode": self.model.config.mode, **self.details}


def open_backend(
    index_dir: str | os.PathLike[str],
    ckpt: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    verify: bool = True,
    learn: bool = False,
    text_cache_file: str | os.PathLike[str] | None = None,
    text_cache_mb: int = 64,
) -> LibraryBackend:
    """Open an index folder with the checkpoint and data set it was built from.

    Args:
        index_dir: folder written by ``daer index build``.
        ckpt: checkpoint to use instead of the recorded one (its hash must still match the index).
        data_dir: data set folder instead of the recorded one (e.g. after moving it).
        verify: check the index files' SHA-256 on open.
        learn: let ERS update its success statistics from the queries served (kept in memory only).
        text_cache_file: an SQLite file where the text features of served queries may be kept; None
            (the default) keeps them in memory only, so no query is written to disk.
        text_cache_mb: memory for text features of recent queries (least recently used dropped first).

    Raises:
        IntegrityError: a damaged or mismatched index, or a data set that is not the indexed one.
    """
    from daer.models import model as model_module
    from daer.models.text_cache import TextFeatureCache
    from daer.retrieval.searcher import Searcher  # the ERS searcher; imported here so tests can run without it
    from daer.retrieval.store import open_index_dir

    # Served queries are private: their text features stay in a bounded in-memory LRU, never in the
    # on-disk cache that training fills (text_features.sqlite), unless the operator names a file.
    ckpt = ckpt if ckpt is not None else open_index_dir(index_dir, verify=False).meta.get("ckpt")
    model = heavy = None
    if ckpt:
        cache = TextFeatureCache(text_cache_file, memory_bytes=text_cache_mb << 20)
        model = model_module.load_model(ckpt, text_cache=cache)
        # Explanations and uploads run on their own copy, so they never wait for or hold a search.
        heavy = model_module.load_model(ckpt, text_cache=TextFeatureCache(None, memory_bytes=8 << 20))
    searcher = Searcher(index_dir, ckpt=ckpt, verify=verify, learn=learn, model=model)
    data = data_dir if data_dir is not None else searcher.data_dir
    if not data:
        raise IntegrityError(f"index {index_dir}: no data set recorded; pass the data set folder explicitly")
    meta = searcher.folder.meta
    store = ShapeStore(data, split=meta.get("split"))
    if len(store) != searcher.n:
        raise IntegrityError(
            f"data set {data} holds {len(store)} shapes{' of split ' + meta['split'] if meta.get('split') else ''}, "
            f"index {index_dir} holds {searcher.n}: not the indexed data set"
        )
    model_id = str(searcher.folder.manifest.get("model_hash", ""))[:16]
    details = {"method": searcher.method, "indexed": searcher.n, "model": model_id, "learn": learn}
    return LibraryBackend(
        searcher,
        searcher.model,
        store,
        identity=f"{Path(index_dir).resolve()}:{model_id}",
        details=details,
        model_lock=getattr(searcher, "_model_lock", None),
        heavy_model=heavy,
    )
