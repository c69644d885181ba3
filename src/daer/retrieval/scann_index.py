"""Google's ScaNN (k-means tree, 4-bit anisotropic hashing, exact reorder) as a benchmark peer of ERS.

Same interface as :mod:`daer.retrieval.baselines`: ``ScaNNIndex.build(embeddings, ids=None, model_hash="",
**settings)``, ``search(queries, k, leaves_to_search=..., pre_reorder_num_neighbors=...) -> (scores (Q, k),
ids (Q, k))`` (cosine: queries are normalised) and ``bytes_per_vector()``. ScaNN is optional
(``pip install 'daer[scann]'``) and imported only when an index is built; :func:`scann_available` lets a
benchmark skip it. There is no save / load: ScaNN indexes are benchmark peers only.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from daer.errors import BadInputError, DaerError
from daer.retrieval.ers import check_matrix, normalise_queries

DIMS_PER_BLOCK = 2  # AH: 2 dimensions per 4-bit code (16 centres per block), as ScaNN's README recommends
PEER_ONLY = "ScaNN indexes are benchmark peers only: they cannot be saved or loaded as daer index folders"


def _import_scann() -> Any:
    try:
        import scann
    except ImportError as e:
        raise DaerError(f"ScaNN is not installed (pip install 'daer[scann]'): {e}") from e
    return scann


def scann_available() -> bool:
    """Whether ``scann`` imports here."""
    try:
        _import_scann()
    except DaerError:
        return False
    return True


class ScaNNIndex:
    """ScaNN tree-AH searcher over float vectors; ``ids`` maps its row numbers to user ids."""

    method = "scann"

    def __init__(
        self, searcher: Any, ids: np.ndarray, dim: int, settings: dict[str, Any], model_hash: str = ""
    ) -> None:
        self.searcher = searcher
        self.ids = ids
        self._dim = dim
        self.settings = settings
        self.model_hash = model_hash

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._dim

    @property
    def ntotal(self) -> int:
        """Number of indexed items."""
        return len(self.ids)

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        ids: np.ndarray | None = None,
        model_hash: str = "",
        num_leaves: int = 0,
        leaves_to_search: int = 0,
        reorder: int = 100,
        aq_threshold: float = 0.2,
        training_sample_size: int = 0,
        threads: int = 0,
    ) -> ScaNNIndex:
        """Train the tree and the 4-bit anisotropic codes, then hold the float vectors for the exact reorder.

        Args:
            num_leaves: k-means leaves; 0 → 2·√n (2,000 at 1M, the size ScaNN's README uses near 1M).
            leaves_to_search: default leaves scanned per query; 0 → 5% of the leaves.
            reorder: default candidates re-scored exactly (``pre_reorder_num_neighbors``).
            aq_threshold: anisotropic quantization threshold η (ScaNN's README: 0.2 for unit vectors).
            training_sample_size: items sampled to train the tree and codes; 0 → min(n, 100 per leaf).
            threads: ScaNN training and batch-query threads; 0 → ScaNN's default (every CPU).
        """
        x = check_matrix(embeddings, "embeddings")
        n, d = x.shape
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if ids.shape != (n,):
            raise BadInputError(f"ids must have shape ({n},), got {ids.shape}")
        nl = num_leaves or min(n, max(1, round(2 * math.sqrt(n))))
        leaves = leaves_to_search or max(1, nl // 20)
        if not (1 <= nl <= n and 1 <= leaves <= nl and reorder >= 1 and training_sample_size >= 0 and threads >= 0):
            raise BadInputError(
                f"ScaNN settings out of range: num_leaves={nl} (1..{n}), leaves_to_search={leaves} (1..num_leaves), "
                f"reorder={reorder} (>= 1), training_sample_size={training_sample_size}, threads={threads} (>= 0)"
            )
        sample = min(n, training_sample_size or 100 * nl)
        scann = _import_scann()
        builder = (
            scann.scann_ops_pybind.builder(np.ascontiguousarray(x, dtype=np.float32), 10, "dot_product")
            .tree(num_leaves=nl, num_leaves_to_search=leaves, training_sample_size=sample)
            .score_ah(DIMS_PER_BLOCK, anisotropic_quantization_threshold=aq_threshold, training_sample_size=sample)
            .reorder(reorder)
        )
        if threads:
            builder.set_n_training_threads(threads)
        searcher = builder.build()
        if threads:
            searcher.set_num_threads(threads)
        settings = {"num_leaves": nl, "leaves_to_search": leaves, "reorder": reorder, "aq_threshold": aq_threshold}
        return cls(searcher, ids, d, settings, model_hash)

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        leaves_to_search: int | None = None,
        pre_reorder_num_neighbors: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by cosine: (scores (Q, k) float32, ids (Q, k) int64), -inf / -1 where not found.

        One query goes through ScaNN's single-query ``search`` (its batched call costs about 3x more per
        call at small n); several through ``search_batched_parallel`` (threaded, as FAISS's batch search is).
        """
        if k < 1:
            raise BadInputError(f"scann search: k must be >= 1, got {k}")
        leaves = self.settings["leaves_to_search"] if leaves_to_search is None else int(leaves_to_search)
        pre = max(self.settings["reorder"], k) if pre_reorder_num_neighbors is None else int(pre_reorder_num_neighbors)
        if not 1 <= leaves <= self.settings["num_leaves"]:
            raise BadInputError(
                f"scann search: leaves_to_search must be in 1..{self.settings['num_leaves']}, got {leaves}"
            )
        if pre < k:
            raise BadInputError(f"scann search: pre_reorder_num_neighbors must be >= k={k}, got {pre}")
        q = normalise_queries(queries, self.dim)
        if len(q) == 1:
            rows, scores = self.searcher.search(q[0], k, pre, leaves)
            rows, scores = rows[None], scores[None]
        else:
            rows, scores = self.searcher.search_batched_parallel(q, k, pre, leaves)
        # ScaNN returns fewer columns, or NaN-scored padding, where fewer than k items were found
        out_s = np.full((len(q), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(q), k), -1, dtype=np.int64)
        m = min(k, np.shape(rows)[1])
        ok = ~np.isnan(scores[:, :m])
        out_s[:, :m] = np.where(ok, scores[:, :m], -np.inf)
        out_i[:, :m] = np.where(ok, self.ids[np.asarray(rows[:, :m], dtype=np.int64)], -1)
        return out_s, out_i

    def bytes_per_vector(self) -> float:
        """Memory per item, computed from the configuration (not by serialising, which stores each 4-bit
        code in a byte): float32 vector for the exact reorder, 4-bit codes, the item's uint32 entry in its
        leaf list, the id map, and centroids plus AH codebooks shared over the items. Checked once at
        n = 50,000, d = 256 (id map aside): 1,101 bytes estimated, 1,067 measured as resident-memory growth."""
        d, n = self.dim, max(self.ntotal, 1)
        blocks = math.ceil(d / DIMS_PER_BLOCK)
        shared = self.settings["num_leaves"] * d * 4 + blocks * 16 * DIMS_PER_BLOCK * 4
        return float(d * 4 + blocks / 2 + 4 + self.ids.itemsize + shared / n)

    def save(self, path: str | os.PathLike[str], model_hash: str | None = None) -> None:
        """Refused: see :data:`PEER_ONLY`."""
        raise DaerError(PEER_ONLY)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> ScaNNIndex:
        """Refused: see :data:`PEER_ONLY`."""
        raise DaerError(PEER_ONLY)
