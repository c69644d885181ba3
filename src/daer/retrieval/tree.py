"""Balanced hierarchical k-means tree over unit-norm embeddings, and its beam descent.

Levels are numbered 0 (the root, one node) to ``depth`` (the leaves). Nodes of one level are stored
contiguously, ordered by parent, so the children of node ``i`` at level ``l`` are the range
``child_start[l][i] : child_start[l][i + 1]`` of level ``l + 1``. "Balanced" here means that every
node gets a number of leaves proportional to the number of items it holds, so leaves (the inverted
lists scanned by FAISS) have about the same size whatever the cluster sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from daer.errors import BadInputError


@dataclass
class Tree:
    """The k-means tree: per level centroids, parents, child ranges and item counts.

    Attributes:
        centroids: for levels 1..depth, (n_l, d) float32 unit-norm centroids.
        parent: for levels 1..depth, (n_l,) int64 index of the parent at level l-1.
        child_start: for levels 0..depth-1, (n_l + 1,) int64 child ranges into level l+1.
        counts: for levels 1..depth, (n_l,) int64 number of database items under each node.
    """

    centroids: list[np.ndarray]
    parent: list[np.ndarray]
    child_start: list[np.ndarray]
    counts: list[np.ndarray]

    def children(self, level: int) -> list[np.ndarray]:
        """For each node at ``level`` (0 = root), the (c,) int64 indices of its children at level+1."""
        cache = self.__dict__.setdefault("_children", {})
        if level not in cache:
            start = self.child_start[level]
            cache[level] = [np.arange(start[i], start[i + 1], dtype=np.int64) for i in range(len(start) - 1)]
        return cache[level]

    @property
    def depth(self) -> int:
        """Number of levels below the root."""
        return len(self.centroids)

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.centroids[0].shape[1])

    @property
    def n_leaves(self) -> int:
        """Number of leaves (inverted lists)."""
        return int(self.centroids[-1].shape[0])

    def level_sizes(self) -> list[int]:
        """Number of nodes at levels 1..depth."""
        return [len(c) for c in self.centroids]

    def leaf_ancestors(self) -> list[np.ndarray]:
        """For levels 1..depth, (n_leaves,) index of each leaf's ancestor at that level."""
        out = [np.arange(self.n_leaves, dtype=np.int64)]
        for level in range(self.depth - 1, 0, -1):
            out.append(self.parent[level][out[-1]])
        return out[::-1]

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat name → array mapping, for storage."""
        out: dict[str, np.ndarray] = {}
        for level in range(self.depth):
            out[f"centroids_{level + 1}"] = self.centroids[level]
            out[f"parent_{level + 1}"] = self.parent[level]
            out[f"counts_{level + 1}"] = self.counts[level]
            out[f"child_start_{level}"] = self.child_start[level]
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], depth: int) -> Tree:
        """Inverse of :meth:`arrays`."""
        return cls(
            centroids=[np.ascontiguousarray(arrays[f"centroids_{lv}"], dtype=np.float32) for lv in range(1, depth + 1)],
            parent=[np.asarray(arrays[f"parent_{lv}"], dtype=np.int64) for lv in range(1, depth + 1)],
            child_start=[np.asarray(arrays[f"child_start_{lv}"], dtype=np.int64) for lv in range(depth)],
            counts=[np.asarray(arrays[f"counts_{lv}"], dtype=np.int64) for lv in range(1, depth + 1)],
        )


def _kmeans(x: np.ndarray, k: int, niter: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical FAISS k-means: (centroids (k, d), assignment (n,))."""
    if k == 1:
        c = x.mean(axis=0, keepdims=True)
        return _unit_rows(c), np.zeros(len(x), dtype=np.int64)
    km = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=seed, spherical=True, min_points_per_centroid=1, max_points_per_centroid=256
    )
    km.train(x)
    _, a = km.index.search(x, 1)
    return np.ascontiguousarray(km.centroids, dtype=np.float32), a.ravel().astype(np.int64)


def _split(total: int, sizes: np.ndarray) -> np.ndarray:
    """Share ``total`` leaves among children proportionally to ``sizes`` (largest remainder, each >= 1)."""
    k = len(sizes)
    if total <= k:
        return np.ones(k, dtype=np.int64)
    share = 1 + (total - k) * sizes / max(sizes.sum(), 1)
    out = np.floor(share).astype(np.int64)
    rest = total - out.sum()
    out[np.argsort(out - share, kind="stable")[:rest]] += 1
    return out


def build_tree(
    train: np.ndarray, n_leaves: int, depth: int = 2, niter: int = 20, seed: int = 0, top_nodes: int = 0
) -> Tree:
    """Top-down hierarchical k-means on ``train`` (unit-norm rows); counts come from :func:`refit`.

    Args:
        train: (n, d) float32 training sample (e.g. up to ~100 items per leaf).
        n_leaves: number of leaves wanted; each node gets leaves in proportion to its share of items.
        depth: levels below the root (2 or 3 in practice).
        niter: k-means iterations per node.
        seed: k-means seed.
        top_nodes: nodes at level 1 (0: n_leaves^(1/depth), an even split of the fan-out over levels).
    """
    if train.ndim != 2 or len(train) == 0:
        raise BadInputError(f"tree: training embeddings must be (n>0, d), got {train.shape}")
    if depth < 1 or n_leaves < 1:
        raise BadInputError(f"tree: depth and n_leaves must be >= 1, got depth={depth}, n_leaves={n_leaves}")
    train = np.ascontiguousarray(train, dtype=np.float32)
    n_leaves = min(n_leaves, len(train))
    members = [np.arange(len(train))]  # per node of the current level: rows of ``train``
    targets = np.array([n_leaves], dtype=np.int64)  # leaves wanted under each node
    centroids, parents, starts = [], [], []
    for level in range(depth):
        remaining = depth - level
        cents, pars, start, next_members, next_targets = [], [], [0], [], []
        for node, (rows, target) in enumerate(zip(members, targets, strict=True)):
            k = int(target) if remaining == 1 else max(1, round(float(target) ** (1.0 / remaining)))
            if level == 0 and top_nodes and remaining > 1:
                k = min(top_nodes, int(target))
            k = max(1, min(k, len(rows)))
            c, a = _kmeans(train[rows], k, niter, seed + 7919 * level + node)
            sizes = np.bincount(a, minlength=k)
            keep = np.flatnonzero(sizes)
            cents.append(c[keep])
            pars.append(np.full(len(keep), node, dtype=np.int64))
            start.append(start[-1] + len(keep))
            next_members.extend(rows[a == j] for j in keep)
            next_targets.append(_split(int(target), sizes[keep].astype(np.float64)))
        centroids.append(np.ascontiguousarray(np.concatenate(cents), dtype=np.float32))
        parents.append(np.concatenate(pars))
        starts.append(np.asarray(start, dtype=np.int64))
        members, targets = next_members, np.concatenate(next_targets)
    counts = [np.zeros(len(c), dtype=np.int64) for c in centroids]
    return Tree(centroids=centroids, parent=parents, child_start=starts, counts=counts)


def refit(tree: Tree, x: np.ndarray, leaf_of: np.ndarray) -> None:
    """Set counts and centroids from the final assignment ``leaf_of`` (n,) of the items ``x`` (n, d).

    Every node's centroid becomes the normalised mean of the items under it (one Lloyd step, bottom-up),
    so descent scores describe what the leaves really hold; nodes with no item keep their k-means centroid.
    """
    sums = np.zeros((tree.n_leaves, tree.dim), dtype=np.float64)
    for s in range(0, len(x), 65536):
        leaves = np.asarray(leaf_of[s : s + 65536])
        order = np.argsort(leaves, kind="stable")
        sorted_leaves = leaves[order]
        first = np.flatnonzero(np.r_[True, sorted_leaves[1:] != sorted_leaves[:-1]])
        block = np.asarray(x[s : s + 65536], dtype=np.float64)[order]
        sums[sorted_leaves[first]] += np.add.reduceat(block, first, axis=0)
    counts = np.bincount(leaf_of, minlength=tree.n_leaves).astype(np.int64)
    for level in range(tree.depth - 1, -1, -1):
        nonempty = counts > 0
        cents = tree.centroids[level].copy()
        cents[nonempty] = _unit_rows(sums[nonempty]).astype(np.float32)
        tree.centroids[level] = cents
        tree.counts[level] = counts
        if level > 0:
            n_up = len(tree.centroids[level - 1])
            up = np.zeros((n_up, tree.dim), dtype=np.float64)
            np.add.at(up, tree.parent[level], sums)
            sums, counts = up, np.bincount(tree.parent[level], weights=counts, minlength=n_up).astype(np.int64)


def node_vectors(tree: Tree, bonus: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """Per-level vectors scored by descent: the centroids, or ``[centroid, bonus]`` rows of width d+1.

    With the bonus as an extra column and the query extended by a 1, one inner product gives
    ``sim(q, centroid) + bonus``, so FAISS can score and select candidates without a Python pass.
    """
    if bonus is None:
        return tree.centroids
    return [
        np.ascontiguousarray(np.hstack([c, np.asarray(b, dtype=np.float32)[:, None]]), dtype=np.float32)
        for c, b in zip(tree.centroids, bonus, strict=True)
    ]


def descend(
    tree: Tree,
    queries: np.ndarray,
    beam: int | Sequence[int],
    n_probe: int,
    bonus: Sequence[np.ndarray] | None = None,
    vectors: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Beam descent: keep the best ``beam`` nodes per internal level, then the best ``n_probe`` leaves.

    A node's score is ``queries @ centroid + bonus[level][node]`` (the bonus carries the success-rate and
    exploration terms; ``None`` means pure centroid similarity). At every level FAISS
    (``knn_inner_products_by_idx``) scores only the children of the kept nodes and keeps the best.

    Args:
        tree: the k-means tree.
        queries: (Q, d) float32 unit-norm queries.
        beam: nodes kept at levels 1..depth-1 (one int for all, or one per level).
        n_probe: leaves returned per query.
        bonus: for levels 1..depth, (n_l,) additive node scores.
        vectors: precomputed :func:`node_vectors` (overrides ``bonus``), to avoid rebuilding them per call.

    Returns:
        leaves (Q, n_probe) int64 (-1 where fewer candidates exist), and the nodes kept at every level
        1..depth (the last entry is the leaves), for success statistics.
    """
    depth = tree.depth
    beams = [int(beam)] * (depth - 1) if isinstance(beam, (int, np.integer)) else [int(b) for b in beam]
    if len(beams) != depth - 1 or any(b < 1 for b in beams) or n_probe < 1:
        raise BadInputError(f"descend: need {depth - 1} beam widths >= 1 and n_probe >= 1, got {beam}, {n_probe}")
    vecs = list(vectors) if vectors is not None else node_vectors(tree, bonus)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if vecs[0].shape[1] == q.shape[1] + 1:
        q = np.ascontiguousarray(np.hstack([q, np.ones((len(q), 1), dtype=np.float32)]))
    n1 = len(vecs[0])
    subset = np.arange(n1, dtype=np.int64)[None]  # every query scores all level-1 nodes (stride 0)
    kept: list[np.ndarray] = []
    for level in range(depth):
        width = n_probe if level == depth - 1 else beams[level]
        if level > 0:
            subset = _children_of(tree, kept[-1], level)  # kept[-1] holds nodes of tree level ``level``
            width = width if level == depth - 1 else min(width, subset.shape[1])
        kept.append(_best(q, vecs[level], subset, width))
    return kept[-1], kept


def _best(q: np.ndarray, vecs: np.ndarray, subset: np.ndarray, width: int) -> np.ndarray:
    """Per query, the ``width`` rows of ``vecs`` among its ``subset`` row (-1 ends it) with the best inner product."""
    return inner_products_by_idx(q, vecs, subset, width)[1]


def inner_products_by_idx(
    q: np.ndarray, vecs: np.ndarray, subset: np.ndarray, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the best ``width`` (default: all) of its ``subset`` row (-1 ends it) by ``<q, vecs[row]>``.

    Returns (scores, rows), each (Q, width), best first, -1 rows last. One ``subset`` row serves every query.
    FAISS reads ``vecs`` (C-contiguous float32) in place, with no (Q, C, d) gather.
    """
    n_q, c = len(q), subset.shape[1]
    width = c if width is None else width
    vals = np.empty((n_q, width), dtype=np.float32)
    ids = np.empty((n_q, width), dtype=np.int64)
    subset = np.ascontiguousarray(subset, dtype=np.int64)
    shared = len(subset) == 1 and n_q > 1
    # the row stride (last argument) is always passed: FAISS 1.15 takes its default ld_ids=-1 literally
    faiss.knn_inner_products_by_idx(
        faiss.swig_ptr(q), faiss.swig_ptr(vecs), faiss.swig_ptr(subset), vecs.shape[1], n_q, len(vecs), c, width,
        faiss.swig_ptr(vals), faiss.swig_ptr(ids), 0 if shared else c,
    )  # fmt: skip
    return vals, ids


def _children_of(tree: Tree, chosen: np.ndarray, level: int) -> np.ndarray:
    """Children of each row of ``chosen`` (Q, b) nodes of tree level ``level``, back to back, -1 padded."""
    start = tree.child_start[level]
    n_q, b = chosen.shape
    if n_q == 1:
        children = tree.children(level)
        return np.concatenate([children[p] for p in chosen[0] if p >= 0])[None]
    valid = chosen >= 0
    safe = np.where(valid, chosen, 0)
    first = start[safe]  # (Q, b)
    cnt = np.where(valid, start[safe + 1] - first, 0)
    off = np.cumsum(cnt, axis=1) - cnt  # column of each slot's first child in its query row
    flat_cnt = cnt.ravel()
    slot = np.repeat(np.arange(n_q * b), flat_cnt)  # slot of every output child
    j = np.arange(len(slot)) - np.repeat(np.cumsum(flat_cnt) - flat_cnt, flat_cnt)  # child rank in its slot
    out = np.full((n_q, int(cnt.sum(axis=1).max())), -1, dtype=np.int64)
    out[slot // b, off.ravel()[slot] + j] = first.ravel()[slot] + j
    return out


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
