"""ERS: hierarchical k-means tree descended with a UCT-like score, FAISS-scanned leaves, optional re-rank.

Query path, per query ``q`` (unit norm):

1. descend the tree (:func:`daer.retrieval.tree.descend`) with node score
   ``sim(q, centroid) + β·success_rate + c·√(ln N_parent / N_child)``, keeping ``beam`` nodes per
   internal level and ``n_probe`` leaves;
2. scan those leaves, which are the inverted lists of a FAISS IVF index (Flat, SQ or 4-bit PQ fast-scan
   codes), with ``search_preassigned`` (its ``nprobe`` is the number of leaves passed per query);
3. keep the top ``candidates`` by global cosine (quantised scores re-scored exactly from the float vectors
   when ``refine``; ``reorder`` sets how many);
4. optionally re-rank the top ``rerank_depth`` with ``reranker(query_index, ids) -> scores`` (the HAF fine
   score of the model); the result is the top ``k``.

Success statistics: ``N`` counts how often a node was kept in a query's beam, ``success`` how often
the query's final top-1 lay under it. ``success_rate`` is shrunk towards its level's mean with a prior
of ``prior`` pseudo-visits, so unvisited nodes are neutral; with no history both bonus terms vanish and
the descent is pure centroid similarity. Statistics update only when ``learn`` is on (frozen for
benchmarks) and reach the descent every ``refresh_every`` served queries (the bonus is folded into the
node vectors as an extra column, so FAISS scores ``sim + bonus`` in one inner product). Searches may run
from many threads at once; statistics updates are serialised by a lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np

from daer.errors import BadInputError, IntegrityError
from daer.retrieval.leaf_codes import PQ4FS, PQ4FS_REORDER, SQ_CODES, check_codes, to_fast_scan
from daer.retrieval.rerank import rerank_top
from daer.retrieval.store import IndexFolder, IndexWriter, open_index_dir
from daer.retrieval.tree import Tree, build_tree, descend, inner_products_by_idx, node_vectors, refit

_PARAMS: dict[int, faiss.SearchParametersIVF] = {}  # read-only after creation, shared by threads

Reranker = Callable[[int, np.ndarray], np.ndarray]  # (query index, candidate ids (R,)) -> scores (R,)


@dataclass
class ERSConfig:
    """Build and default search settings of an :class:`ERSIndex`."""

    n_leaves: int = 0  # leaves (inverted lists); 0 → about n / 64
    depth: int = 2  # levels below the root
    top_nodes: int = 0  # nodes at level 1 (0: n_leaves^(1/depth))
    codes: str = "flat"  # leaf codes: "flat" (float32), "sq8", "sq8_dim", "fp16", "bf16" (see SQ_CODES) or "pq4fs"
    refine: bool = True  # with quantised codes: keep float vectors and re-score the top candidates exactly
    pq_m: int = 0  # "pq4fs" sub-quantizers (4 bits each, must divide d); 0 → d/2 (2 dimensions per 4-bit code)
    reorder: int = 0  # candidates re-scored exactly when refining; 0 → 2·k (SQ codes) or max(256, 8·k) (pq4fs)
    train_per_leaf: int = 64  # k-means training items per leaf
    assign_beam: int = 4  # beam used to assign items to leaves at build time
    spill: int = 1  # leaves holding each item: 1, or 2 to also store it in its second-best leaf (SPANN-style)
    niter: int = 20  # k-means iterations per node
    seed: int = 0
    beam: int = 8  # default nodes kept per internal level
    n_probe: int = 16  # default leaves scanned
    beta: float = 0.0  # weight of the success-rate term
    explore: float = 0.0  # c, weight of the exploration term
    prior: float = 10.0  # pseudo-visits shrinking a node's success rate to its level's mean
    learn: bool = False  # update success statistics from served queries
    refresh_every: int = 64  # served queries between refreshes of the statistics used by the descent
    extra: dict[str, Any] = field(default_factory=dict)


class ERSIndex:
    """Hierarchical ERS index over unit-norm embeddings. Create with :meth:`build` or :meth:`load`."""

    method = "ers"

    def __init__(
        self,
        config: ERSConfig,
        tree: Tree,
        ivf: faiss.IndexIVF,
        ids: np.ndarray,
        leaf_of: np.ndarray,
        vectors: np.ndarray | None,
        spill_of: np.ndarray | None = None,
        stats: tuple[list[np.ndarray], list[np.ndarray], np.ndarray] | None = None,
        model_hash: str = "",
    ) -> None:
        self.config = config
        self.tree = tree
        self.ivf = ivf
        self.ids = ids  # (n,) user ids; FAISS stores row numbers
        self.leaf_of = leaf_of  # (n,) leaf of each row
        self.spill_of = spill_of  # (n, spill-1) further leaves holding each row (-1: none), or None
        self.vectors = vectors  # (n, d) C-contiguous float32 for exact re-scoring (FAISS reads it), or None
        self.model_hash = model_hash
        # residual codes (pq4fs) score <q, leaf centroid> + <q, code>: the scan needs the first term per leaf
        self._leaf_bias = bool(ivf.by_residual)
        sizes = tree.level_sizes()
        if stats is None:
            stats = ([np.zeros(s) for s in sizes], [np.zeros(s) for s in sizes], np.zeros(1))
        self.visits, self.successes, self.root_visits = stats
        self._ancestors = tree.leaf_ancestors()
        self._lock = threading.Lock()
        self._vectors: list[np.ndarray] | None = None  # descent vectors with the bonus folded in
        self._pending = 0  # statistics updates not yet folded into _vectors

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        ids: np.ndarray | None = None,
        config: ERSConfig | None = None,
        model_hash: str = "",
        **overrides: Any,
    ) -> ERSIndex:
        """Build the tree and fill the leaves.

        Args:
            embeddings: (n, d) float32 unit-norm embeddings (a memmap is fine; read in chunks).
            ids: (n,) int64 user ids; default ``0..n-1``.
            config: settings; ``overrides`` replace single fields.
            model_hash: identity of the embedding model, checked on load.
        """
        cfg = ERSConfig(**{**asdict(config or ERSConfig()), **overrides})
        x = check_matrix(embeddings, "embeddings")
        n, d = x.shape
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if ids.shape != (n,):
            raise BadInputError(f"ERS build: ids must have shape ({n},), got {ids.shape}")
        cfg.pq_m = check_codes(cfg.codes, cfg.refine, cfg.reorder, cfg.pq_m, d)
        n_leaves = cfg.n_leaves or max(1, n // 64)
        rng = np.random.default_rng(cfg.seed)
        n_train = min(n, n_leaves * cfg.train_per_leaf)
        rows = np.sort(rng.choice(n, size=n_train, replace=False)) if n_train < n else np.arange(n)
        train = np.ascontiguousarray(x[rows], dtype=np.float32)
        tree = build_tree(train, n_leaves, cfg.depth, cfg.niter, cfg.seed, cfg.top_nodes)
        if cfg.spill < 1:
            raise BadInputError(f"ERS build: spill must be >= 1, got {cfg.spill}")
        assign = np.empty((n, cfg.spill), dtype=np.int32)  # best leaf first
        for s in range(0, n, 65536):
            block = np.ascontiguousarray(x[s : s + 65536], dtype=np.float32)
            assign[s : s + len(block)] = descend(tree, block, cfg.assign_beam, cfg.spill)[0]
        leaf_of = np.ascontiguousarray(assign[:, 0])
        spill_of = np.ascontiguousarray(assign[:, 1:]) if cfg.spill > 1 else None
        refit(tree, x, leaf_of)
        quantizer = faiss.IndexFlatIP(d)
        quantizer.add(tree.centroids[-1])
        nlist = tree.n_leaves
        if cfg.codes == "flat":
            ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.is_trained = True
        elif cfg.codes == PQ4FS:  # filled as a plain IVFPQ (add_core takes our leaves), packed into blocks below
            ivf = faiss.IndexIVFPQ(quantizer, d, nlist, cfg.pq_m, 4, faiss.METRIC_INNER_PRODUCT)
            ivf.train(train)  # codebooks of the residuals to the leaf centroids; the quantizer is kept as is
        else:
            qtype = SQ_CODES[cfg.codes]
            ivf = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, qtype, faiss.METRIC_INNER_PRODUCT, False)
            ivf.train(train)  # the quantizer already holds nlist centroids: only the SQ ranges are trained
        for s in range(0, n, 65536):
            block = np.ascontiguousarray(x[s : s + 65536], dtype=np.float32)
            rows_b = np.arange(s, s + len(block), dtype=np.int64)
            for col in range(cfg.spill):
                lists = assign[s : s + len(block), col].astype(np.int64)
                ok = lists >= 0
                b, r, li = (
                    (block, rows_b, lists) if ok.all() else (np.ascontiguousarray(block[ok]), rows_b[ok], lists[ok])
                )
                ivf.add_core(len(b), faiss.swig_ptr(b), faiss.swig_ptr(r), faiss.swig_ptr(li))
        if cfg.codes == PQ4FS:
            ivf = to_fast_scan(ivf, quantizer)
        vectors = np.ascontiguousarray(x, dtype=np.float32) if cfg.codes != "flat" and cfg.refine else None
        return cls(cfg, tree, ivf, ids, leaf_of, vectors, spill_of, model_hash=model_hash)

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.tree.dim

    @property
    def ntotal(self) -> int:
        """Number of indexed items."""
        return len(self.ids)

    def bytes_per_vector(self) -> float:
        """Memory held per indexed item: leaf codes + FAISS ids + user ids + leaf map (+ float vectors)."""
        code = self.ivf.ntotal / max(self.ntotal, 1) * (self.ivf.code_size + 8) + self.ids.itemsize
        code += self.leaf_of.itemsize + (0 if self.spill_of is None else self.spill_of[0].nbytes)
        if self.vectors is not None:
            code += self.vectors.shape[1] * 4
        tree = sum(c.nbytes for c in self.tree.centroids) / max(self.ntotal, 1)
        return float(code + tree)

    # ------------------------------------------------------------------ statistics
    def set_learning(self, learn: bool) -> None:
        """Turn success-statistics updates on or off (off = frozen, as in benchmarks)."""
        self.config.learn = learn

    def set_weights(self, beta: float | None = None, explore: float | None = None) -> None:
        """Change β (success-rate weight) and/or c (exploration weight) of the descent score."""
        with self._lock:
            if beta is not None:
                self.config.beta = float(beta)
            if explore is not None:
                self.config.explore = float(explore)
            self._vectors = None

    def reset_stats(self) -> None:
        """Forget all success statistics."""
        with self._lock:
            for a in (*self.visits, *self.successes, self.root_visits):
                a[:] = 0
            self._vectors = None

    def bonuses(self) -> list[np.ndarray]:
        """Per-level additive node scores β·success_rate + c·√(ln N_parent / N_child) from the statistics."""
        cfg = self.config
        with self._lock:
            out = []
            for level in range(self.tree.depth):
                v, s = self.visits[level], self.successes[level]
                mean = s.sum() / v.sum() if v.sum() > 0 else 0.0
                rate = (s + cfg.prior * mean) / (v + cfg.prior)
                up = self.root_visits if level == 0 else self.visits[level - 1][self.tree.parent[level]]
                explore = np.sqrt(np.log1p(up) / (v + 1.0))
                out.append((cfg.beta * rate + cfg.explore * explore).astype(np.float32))
            return out

    def _node_vectors(self) -> list[np.ndarray]:
        """Descent vectors: the centroids, or centroid+bonus rows refreshed every ``refresh_every`` updates."""
        cfg = self.config
        if cfg.beta == 0.0 and cfg.explore == 0.0:
            return self.tree.centroids
        vectors = self._vectors
        if vectors is None or self._pending >= cfg.refresh_every:
            vectors = node_vectors(self.tree, self.bonuses())
            with self._lock:
                self._vectors, self._pending = vectors, 0
        return vectors

    def _update_stats(self, kept: list[np.ndarray], top_rows: np.ndarray) -> None:
        """Count the beam nodes as visited and the ancestors of each query's top-1 as successes."""
        with self._lock:
            self.root_visits += len(top_rows)
            for level, nodes in enumerate(kept):
                valid = nodes[nodes >= 0]
                np.add.at(self.visits[level], valid, 1.0)
            ok = top_rows >= 0
            leaves = self._found_in(top_rows[ok], kept[-1][ok])
            for level in range(self.tree.depth):
                np.add.at(self.successes[level], self._ancestors[level][leaves], 1.0)
            self._pending += len(top_rows)

    def _found_in(self, rows: np.ndarray, scanned: np.ndarray) -> np.ndarray:
        """The leaf through which each row was reached: its first leaf among the query's scanned leaves."""
        if self.spill_of is None:
            return self.leaf_of[rows].astype(np.int64)
        held = np.concatenate([self.leaf_of[rows][:, None], self.spill_of[rows]], axis=1)  # (Q, spill)
        hit = (held[:, :, None] == scanned[:, None, :]).any(axis=2) & (held >= 0)
        return held[np.arange(len(rows)), hit.argmax(axis=1)].astype(np.int64)

    # ------------------------------------------------------------------ search
    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        beam: int | Sequence[int] | None = None,
        n_probe: int | None = None,
        candidates: int | None = None,
        reranker: Reranker | None = None,
        rerank_depth: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` search for a batch of queries.

        Args:
            queries: (Q, d) float32 query embeddings (normalised here).
            k: results per query.
            beam: nodes kept per internal level (default ``config.beam``).
            n_probe: leaves scanned per query (default ``config.n_probe``).
            candidates: C, candidates kept by global cosine (default: k, or ``config.reorder`` when refining,
                or more for re-ranking).
            reranker: optional fine scorer ``(query_index, ids (R,)) -> scores (R,)``.
            rerank_depth: R, how many top candidates the reranker re-orders (0 = off).

        Returns:
            (scores (Q, k) float32, ids (Q, k) int64); -inf / -1 where fewer than k items were reached.
        """
        if k < 1:
            raise BadInputError(f"ERS search: k must be >= 1, got {k}")
        q = normalise_queries(queries, self.dim)
        beam = self.config.beam if beam is None else beam
        n_probe = min(self.config.n_probe if n_probe is None else n_probe, self.tree.n_leaves)
        depth_r = rerank_depth if reranker is not None else 0
        if candidates is not None and candidates < 0:
            raise BadInputError(f"ERS search: candidates must be >= 0, got {candidates}")
        refine = self.vectors is not None
        c = max(candidates or (self._reorder(k) if refine else k), k, depth_r)
        leaves, kept = descend(self.tree, q, beam, n_probe, vectors=self._node_vectors())
        if self.spill_of is None:
            scores, rows = self._scan(q, leaves, c)
        else:  # an item may sit in several scanned leaves: over-fetch, then keep each row once
            scores, rows = _dedupe(*self._scan(q, leaves, c * self.config.spill), c)
        if refine:
            scores, rows = self._rescore(q, rows)
        if depth_r > 0:
            scores, rows = self._rerank(scores, rows, reranker, depth_r)
        scores, rows = scores[:, :k], rows[:, :k]
        if self.config.learn:
            self._update_stats(kept, rows[:, 0])
        found = rows >= 0
        return np.where(found, scores, -np.inf).astype(np.float32), np.where(found, self.ids[np.maximum(rows, 0)], -1)

    def _reorder(self, k: int) -> int:
        """Candidates re-scored from the float vectors for a top-``k`` search (``config.reorder``, 0: auto)."""
        if self.config.reorder > 0:
            return self.config.reorder
        return max(PQ4FS_REORDER, 8 * k) if self.config.codes == PQ4FS else 2 * k

    def _scan(self, q: np.ndarray, leaves: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS scan of the given leaves (Q, n_probe, -1 padded at the end): top ``c`` rows by code inner product.

        FAISS's fast-scan ``search_preassigned`` reads a -1 leaf as a list (recall fell to 0.02 where a narrow
        beam left padding), so with pq4fs codes the queries are scanned in groups of equal leaf counts, each
        on its leaves only.
        """
        if not isinstance(self.ivf, faiss.IndexIVFFastScan) or leaves[:, -1].min() >= 0:
            return self._scan_block(q, leaves, c)
        counts = (leaves >= 0).sum(axis=1)
        dist = np.empty((len(q), c), dtype=np.float32)
        rows = np.empty((len(q), c), dtype=np.int64)
        for m in np.unique(counts):
            sel = np.flatnonzero(counts == m)
            dist[sel], rows[sel] = self._scan_block(q[sel], np.ascontiguousarray(leaves[sel, :m]), c)
        return dist, rows

    def _scan_block(self, q: np.ndarray, leaves: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
        """One FAISS ``search_preassigned`` call over the given leaves (Q, n_probe)."""
        n_q, n_probe = leaves.shape
        dist = np.empty((n_q, c), dtype=np.float32)
        rows = np.empty((n_q, c), dtype=np.int64)
        if self._leaf_bias:
            leaves, coarse = self._leaf_scores(q, leaves)
        else:
            coarse = np.zeros((n_q, n_probe), dtype=np.float32)
        params = _PARAMS.get(n_probe)
        if params is None:
            params = _PARAMS.setdefault(n_probe, faiss.SearchParametersIVF(nprobe=n_probe))  # nprobe == leaves/query
        self.ivf.search_preassigned_c(
            n_q,
            faiss.swig_ptr(q),
            c,
            faiss.swig_ptr(leaves),
            faiss.swig_ptr(coarse),
            faiss.swig_ptr(dist),
            faiss.swig_ptr(rows),
            False,
            params,
        )
        return dist, rows

    def _leaf_scores(self, q: np.ndarray, leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(leaves, <q, leaf centroid>), both (Q, n_probe): the same leaves per query, best first, -1 last."""
        # the rows the IVF quantizer holds (refit before it was filled)
        sims, out = inner_products_by_idx(q, self.tree.centroids[-1], leaves)
        return out, sims

    def _rescore(self, q: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosine of the scanned candidates from the float vectors, re-sorted.

        FAISS reads the candidate rows in place (no (Q, C, d) copy, which for a 1,000-query block of 256
        candidates at d=256 would be 256 MB); a row of -1 ends a query's candidates, as FAISS pads at the end.
        """
        exact, out = inner_products_by_idx(q, self.vectors, rows)
        exact[out < 0] = -np.inf
        return exact, out

    def _rerank(
        self, scores: np.ndarray, rows: np.ndarray, reranker: Reranker, depth: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Re-order each query's top ``depth`` rows by the reranker's score; the rest keep their order."""
        out = [rerank_top(scores[i], rows[i], lambda r, i=i: reranker(i, self.ids[r]), depth) for i in range(len(rows))]
        return np.stack([s for s, _ in out]), np.stack([r for _, r in out])

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], model_hash: str | None = None) -> None:
        """Write the index folder atomically (manifest with checksums, FAISS file, arrays, statistics)."""
        mh = self.model_hash if model_hash is None else model_hash
        with IndexWriter(path, self.method, mh, self.dim, self.ntotal) as w:
            self.write_to(w)

    def write_to(self, w: IndexWriter) -> None:
        """Add this index's files to an open writer (a ``vectors`` array already there is reused)."""
        w.meta.update({"config": asdict(self.config), "depth": self.tree.depth})
        w.put_faiss("ivf", self.ivf)
        w.put_array("ids", self.ids)
        w.put_array("leaf_of", self.leaf_of)
        if self.spill_of is not None:
            w.put_array("spill_of", self.spill_of)
        for name, arr in self.tree.arrays().items():
            w.put_array(f"tree_{name}", arr)
        with self._lock:
            for level in range(self.tree.depth):
                w.put_array(f"visits_{level + 1}", self.visits[level])
                w.put_array(f"successes_{level + 1}", self.successes[level])
            w.put_array("root_visits", self.root_visits)
        if self.vectors is not None and not w.has("vectors", ".npy"):
            out = w.open_array("vectors", self.vectors.shape, np.float32)
            for s in range(0, len(self.vectors), 65536):
                out[s : s + 65536] = self.vectors[s : s + 65536]
            out.flush()
            del out

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        expect_model_hash: str | None = None,
        expect_dim: int | None = None,
        verify: bool = True,
        mmap_vectors: bool = True,
    ) -> ERSIndex:
        """Read an index folder written by :meth:`save`, refusing a damaged or mismatched one."""
        folder = open_index_dir(path, expect_model_hash, expect_dim, expect_method=cls.method, verify=verify)
        return cls.from_folder(folder, mmap_vectors=mmap_vectors)

    @classmethod
    def from_folder(cls, folder: IndexFolder, mmap_vectors: bool = True) -> ERSIndex:
        """Build the in-memory index from a verified folder."""
        try:
            cfg = ERSConfig(**folder.meta["config"])
            depth = int(folder.meta["depth"])
            tree = Tree.from_arrays({n: folder.array(f"tree_{n}") for n in _tree_names(depth)}, depth)
            stats = (
                [folder.array(f"visits_{lv}").astype(np.float64) for lv in range(1, depth + 1)],
                [folder.array(f"successes_{lv}").astype(np.float64) for lv in range(1, depth + 1)],
                folder.array("root_visits").astype(np.float64),
            )
            ivf = folder.faiss("ivf")
            if not isinstance(ivf, faiss.IndexIVF):
                raise TypeError(f"ivf.faiss holds a {type(ivf).__name__}, not an IVF index")
            if (cfg.codes == PQ4FS) != isinstance(ivf, faiss.IndexIVFPQFastScan):
                raise TypeError(f"codes {cfg.codes!r} stored as a {type(ivf).__name__}")
            wants = cfg.codes != "flat" and cfg.refine  # a folder may hold vectors for other readers too
            if cfg.codes == PQ4FS and not folder.has("vectors", ".npy"):
                raise KeyError(f"codes {PQ4FS!r} need the float vectors, and vectors.npy is missing")
            vectors = folder.array("vectors", mmap=mmap_vectors) if wants and folder.has("vectors", ".npy") else None
            spill_of = folder.array("spill_of") if folder.has("spill_of", ".npy") else None
            ids, leaf_of = folder.array("ids"), folder.array("leaf_of")
            index = cls(cfg, tree, ivf, ids, leaf_of, vectors, spill_of, stats)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise IntegrityError(f"index {folder.path}: inconsistent ERS index ({e})") from e
        index.model_hash = folder.manifest.get("model_hash", "")
        copies = index.ntotal + (0 if spill_of is None else int((spill_of >= 0).sum()))
        if ivf.ntotal != copies or ivf.nlist != tree.n_leaves or ivf.d != tree.dim:
            raise IntegrityError(f"index {folder.path}: FAISS index does not match the tree and ids")
        return index


def _dedupe(scores: np.ndarray, rows: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated rows (same item reached through two leaves) and keep the best ``c`` per query."""
    order = np.argsort(rows, axis=1, kind="stable")
    r = np.arange(len(rows))[:, None]
    by_row = rows[r, order]
    repeat = np.zeros(rows.shape, dtype=bool)
    repeat[:, 1:] = (by_row[:, 1:] == by_row[:, :-1]) & (by_row[:, 1:] >= 0)
    drop = np.zeros(rows.shape, dtype=bool)
    drop[r, order] = repeat
    scores = np.where(drop, -np.inf, scores)
    rows = np.where(drop, -1, rows)
    best = np.argsort(-scores, axis=1, kind="stable")[:, :c]
    return scores[r, best], rows[r, best]


def _tree_names(depth: int) -> list[str]:
    names = []
    for lv in range(1, depth + 1):
        names += [f"centroids_{lv}", f"parent_{lv}", f"counts_{lv}", f"child_start_{lv - 1}"]
    return names


def check_matrix(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` if it is a non-empty 2-D array, else a BadInputError naming ``what``."""
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise BadInputError(f"{what} must be a non-empty (n, d) array, got {getattr(x, 'shape', type(x))}")
    return x


def normalise_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    """(Q, d) float32 contiguous unit-norm copy of the queries; refuses bad shapes and non-finite values."""
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim or q.shape[0] == 0:
        raise BadInputError(f"queries must be (Q>0, {dim}), got {q.shape}")
    norms = np.sqrt(np.einsum("qd,qd->q", q, q))[:, None]
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise BadInputError("queries must be finite and non-zero")
    return np.ascontiguousarray(q / norms, dtype=np.float32)
