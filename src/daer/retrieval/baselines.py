"""Exact, IVF and HNSW search (FAISS) behind the interface of :class:`~daer.retrieval.ers.ERSIndex`.

Every index here is built with ``Cls.build(embeddings, ids=None, model_hash="", **settings)``, searched
with ``search(queries, k, **params) -> (scores (Q, k), ids (Q, k))`` (cosine: queries are normalised),
stored with ``save(path)`` / ``Cls.load(path)`` through :mod:`daer.retrieval.store`, and reports its
memory with ``bytes_per_vector()``. FAISS holds row numbers; ``ids`` maps them to user ids.
"""

from __future__ import annotations

import math
import os
from typing import Any

import faiss
import numpy as np

from daer.errors import BadInputError, IntegrityError
from daer.retrieval.ers import check_matrix, normalise_queries
from daer.retrieval.leaf_codes import SQ_CODES
from daer.retrieval.store import IndexFolder, IndexWriter, open_index_dir

_CHUNK = 65536


class _FaissIndex:
    """Shared plumbing: ids, search output mapping, persistence."""

    method = ""

    def __init__(self, index: faiss.Index, ids: np.ndarray, settings: dict[str, Any], model_hash: str = "") -> None:
        self.index = index
        self.ids = ids
        self.settings = settings
        self.model_hash = model_hash

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        """Number of indexed items."""
        return len(self.ids)

    def _params(self, **params: Any) -> faiss.SearchParameters | None:
        return None

    def search(self, queries: np.ndarray, k: int = 10, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by cosine: (scores (Q, k) float32, ids (Q, k) int64), -inf / -1 where not found."""
        if k < 1:
            raise BadInputError(f"{self.method} search: k must be >= 1, got {k}")
        q = normalise_queries(queries, self.dim)
        p = self._params(**params)
        scores, rows = self.index.search(q, k) if p is None else self.index.search(q, k, params=p)
        ok = rows >= 0
        return np.where(ok, scores, -np.inf).astype(np.float32), np.where(ok, self.ids[np.maximum(rows, 0)], -1)

    def bytes_per_vector(self) -> float:
        """Memory per item: FAISS codes and structures plus the id map."""
        return float(self._faiss_bytes() / max(self.ntotal, 1) + self.ids.itemsize)

    def _faiss_bytes(self) -> int:
        return int(self.index.ntotal) * self.dim * 4

    @staticmethod
    def _prepare(embeddings: np.ndarray, ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        x = check_matrix(embeddings, "embeddings")
        ids = np.arange(len(x), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if ids.shape != (len(x),):
            raise BadInputError(f"ids must have shape ({len(x)},), got {ids.shape}")
        return x, ids

    @staticmethod
    def _add(index: faiss.Index, x: np.ndarray) -> None:
        for s in range(0, len(x), _CHUNK):
            index.add(np.ascontiguousarray(x[s : s + _CHUNK], dtype=np.float32))

    def save(self, path: str | os.PathLike[str], model_hash: str | None = None) -> None:
        """Write the index folder atomically (manifest with checksums, FAISS file, ids)."""
        mh = self.model_hash if model_hash is None else model_hash
        with IndexWriter(path, self.method, mh, self.dim, self.ntotal) as w:
            self.write_to(w)

    def write_to(self, w: IndexWriter) -> None:
        """Add this index's files to an open writer."""
        w.meta["settings"] = self.settings
        w.put_faiss("index", self.index)
        w.put_array("ids", self.ids)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], expect_model_hash: str | None = None, expect_dim: int | None = None,
        verify: bool = True,
    ) -> Any:  # fmt: skip
        """Read an index folder written by :meth:`save`, refusing a damaged or mismatched one."""
        return cls.from_folder(open_index_dir(path, expect_model_hash, expect_dim, cls.method, verify))

    @classmethod
    def from_folder(cls, folder: IndexFolder) -> Any:
        """Build the in-memory index from a verified folder."""
        index, ids = folder.faiss("index"), folder.array("ids")
        if index.ntotal != len(ids):
            raise IntegrityError(f"index {folder.path}: FAISS holds {index.ntotal} items but ids has {len(ids)}")
        return cls(index, ids, dict(folder.meta.get("settings", {})), folder.manifest.get("model_hash", ""))


class ExactIndex(_FaissIndex):
    """Brute-force inner product (FAISS ``IndexFlatIP``): the reference for every recall figure."""

    method = "exact"

    @classmethod
    def build(cls, embeddings: np.ndarray, ids: np.ndarray | None = None, model_hash: str = "") -> ExactIndex:
        """Copy the embeddings into a flat index."""
        x, ids = cls._prepare(embeddings, ids)
        index = faiss.IndexFlatIP(x.shape[1])
        cls._add(index, x)
        return cls(index, ids, {}, model_hash)


class IVFIndex(_FaissIndex):
    """FAISS inverted file: flat k-means coarse quantiser, Flat or SQ8 lists; ``nprobe`` lists scanned."""

    method = "ivf"

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        ids: np.ndarray | None = None,
        model_hash: str = "",
        nlist: int = 0,
        codes: str = "flat",
        train_per_list: int = 64,
        niter: int = 20,
        nprobe: int = 16,
        seed: int = 0,
    ) -> IVFIndex:
        """Train k-means on a sample of ``train_per_list · nlist`` items and fill the lists.

        Args:
            nlist: number of lists; 0 → 4·√n, FAISS's usual starting point.
            codes: "flat", "sq8" (one 8-bit range), "sq8_dim" (per-dimension ranges) or "fp16".
            nprobe: default lists scanned per query.
        """
        x, ids = cls._prepare(embeddings, ids)
        n, d = x.shape
        nlist = min(n, nlist or max(1, int(4 * math.sqrt(n))))
        quantizer = faiss.IndexFlatIP(d)
        if codes == "flat":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        elif codes in SQ_CODES:
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, d, nlist, SQ_CODES[codes], faiss.METRIC_INNER_PRODUCT, False
            )
        else:
            raise BadInputError(f"IVF codes must be flat or one of {', '.join(SQ_CODES)}; got {codes!r}")
        index.cp.niter = niter
        index.cp.seed = seed
        index.cp.max_points_per_centroid = train_per_list
        index.cp.min_points_per_centroid = 1
        rng = np.random.default_rng(seed)
        n_train = min(n, nlist * train_per_list)
        rows = np.sort(rng.choice(n, size=n_train, replace=False)) if n_train < n else np.arange(n)
        index.train(np.ascontiguousarray(x[rows], dtype=np.float32))
        cls._add(index, x)
        index.nprobe = nprobe
        settings = {"nlist": nlist, "codes": codes, "nprobe": nprobe, "train_per_list": train_per_list}
        return cls(index, ids, settings, model_hash)

    def _faiss_bytes(self) -> int:
        ivf = faiss.extract_index_ivf(self.index)
        return int(ivf.ntotal) * (ivf.code_size + 8) + ivf.nlist * self.dim * 4  # codes + list ids + centroids

    def _params(self, nprobe: int | None = None) -> faiss.SearchParameters | None:
        return faiss.SearchParametersIVF(nprobe=int(nprobe or self.settings.get("nprobe", 16)))


class HNSWIndex(_FaissIndex):
    """FAISS HNSW graph over float vectors; ``ef_search`` trades speed for recall."""

    method = "hnsw"

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        ids: np.ndarray | None = None,
        model_hash: str = "",
        m: int = 32,
        ef_construction: int = 40,
        ef_search: int = 32,
    ) -> HNSWIndex:
        """Insert every item into an ``IndexHNSWFlat`` graph with ``m`` links per node."""
        x, ids = cls._prepare(embeddings, ids)
        index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        cls._add(index, x)
        settings = {"m": m, "ef_construction": ef_construction, "ef_search": ef_search}
        return cls(index, ids, settings, model_hash)

    def _faiss_bytes(self) -> int:
        hnsw = self.index.hnsw
        graph = hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8
        return int(self.index.ntotal) * self.dim * 4 + int(graph)

    def _params(self, ef_search: int | None = None) -> faiss.SearchParameters | None:
        return faiss.SearchParametersHNSW(efSearch=int(ef_search or self.settings.get("ef_search", 32)))
