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


def build_tree(train: np.ndarray, n_leaves: int, depth: int = 2, niter: int = 20, seed: int = 0) -> Tree:
    """Top-down hierarchical k-means on ``train`` (unit-norm rows); counts come from :func:`refit`.

    Args:
        train: (n, d) float32 training sample (e.g. up to ~100 items per leaf).
        n_leaves: number of leaves wanted; each node gets leaves in proportion to its share of items.
        depth: levels below the root (2 or 3 in practice).
        niter: k-means iterations per node.
        seed: k-means seed.
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


def descend(
    tree: Tree,
    queries: np.ndarray,
    beam: int | Sequence[int],
    n_probe: int,
    bonus: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Beam descent: keep the best ``beam`` nodes per internal level, then the best ``n_probe`` leaves.

    A node's score is ``queries @ centroid + bonus[level][node]`` (the bonus carries the success-rate and
    exploration terms; ``None`` means pure centroid similarity).

    Args:
        tree: the k-means tree.
        queries: (Q, d) float32 unit-norm queries.
        beam: nodes kept at levels 1..depth-1 (one int for all, or one per level).
        n_probe: leaves returned per query.
        bonus: for levels 1..depth, (n_l,) additive node scores.

    Returns:
        leaves (Q, n_probe) int64 (-1 where fewer candidates exist), and the beam kept at every level
        1..depth (the last entry is the leaves), for success statistics.
    """
    depth = tree.depth
    beams = [int(beam)] * (depth - 1) if isinstance(beam, (int, np.integer)) else [int(b) for b in beam]
    if len(beams) != depth - 1 or any(b < 1 for b in beams) or n_probe < 1:
        raise BadInputError(f"descend: need {depth - 1} beam widths >= 1 and n_probe >= 1, got {beam}, {n_probe}")
    q = np.ascontiguousarray(queries, dtype=np.float32)
    n_q = len(q)
    if bonus is None and n_q == 1:
        return _descend_one(tree, q, beams, n_probe)
    scores = q @ tree.centroids[0].T  # (Q, n_1)
    if bonus is not None:
        scores += bonus[0]
    nodes = np.broadcast_to(np.arange(scores.shape[1], dtype=np.int64), scores.shape)
    kept: list[np.ndarray] = []
    for level in range(1, depth + 1):
        width = min(beams[level - 1], scores.shape[1]) if level < depth else n_probe
        chosen = _top(scores, nodes, width)  # (Q, width)
        kept.append(chosen)
        if level == depth:
            break
        scores, nodes = _child_scores(tree, q, chosen, level, None if bonus is None else bonus[level])
    return kept[-1], kept


def _descend_one(tree: Tree, q: np.ndarray, beams: list[int], n_probe: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Single query, no bonus: FAISS scores each level's candidate children and keeps the best in C++."""
    scores = tree.centroids[0] @ q[0]  # (n_1,)
    m = len(scores)
    width = min(beams[0], m) if tree.depth > 1 else n_probe
    if width < m:
        chosen = np.argpartition(scores, m - width)[m - width :][None]
    else:
        chosen = np.concatenate([np.arange(m), np.full(width - m, -1)])[None]
    chosen = chosen.astype(np.int64, copy=False)
    kept = [chosen]
    for level in range(1, tree.depth):
        children = tree.children(level)
        subset = np.concatenate([children[p] for p in chosen[0] if p >= 0])  # (m,) candidate nodes
        width = min(beams[level], len(subset)) if level < tree.depth - 1 else n_probe
        cents = tree.centroids[level]
        vals = np.empty((1, width), dtype=np.float32)
        chosen = np.empty((1, width), dtype=np.int64)
        faiss.knn_inner_products_by_idx(
            faiss.swig_ptr(q), faiss.swig_ptr(cents), faiss.swig_ptr(subset), cents.shape[1], 1, len(cents),
            len(subset), width, faiss.swig_ptr(vals), faiss.swig_ptr(chosen), len(subset),
        )  # fmt: skip
        kept.append(chosen)
    return kept[-1], kept


def _top(scores: np.ndarray, nodes: np.ndarray, width: int) -> np.ndarray:
    """Best ``width`` nodes per row (unordered), -1 padding when a row has fewer valid candidates."""
    n_q, m = scores.shape
    if width >= m:
        out = np.where(np.isfinite(scores), nodes, -1)
        if width > m:
            out = np.concatenate([out, np.full((n_q, width - m), -1, dtype=np.int64)], axis=1)
        return np.ascontiguousarray(out, dtype=np.int64)
    idx = np.argpartition(scores, m - width, axis=1)[:, m - width :]
    out = np.take_along_axis(nodes, idx, axis=1)
    sel = np.take_along_axis(scores, idx, axis=1)
    return np.ascontiguousarray(np.where(np.isfinite(sel), out, -1), dtype=np.int64)


def _child_scores(
    tree: Tree, q: np.ndarray, chosen: np.ndarray, level: int, bonus: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the children (at level+1) of the nodes ``chosen`` (Q, b) at ``level``.

    Each query's candidates are laid out back to back (children of its first beam node, then of the
    second, ...) and rows are padded with -inf to the longest: (Q, max candidates) scores and node ids.
    """
    start = tree.child_start[level]
    cents = tree.centroids[level]
    n_q, b = chosen.shape
    valid = chosen >= 0
    safe = np.where(valid, chosen, 0)
    n_child = np.where(valid, start[safe + 1] - start[safe], 0)  # (Q, b)
    offset = np.cumsum(n_child, axis=1) - n_child  # (Q, b) first column of each slot
    width = int(n_child.sum(axis=1).max())
    scores = np.full((n_q, width), -np.inf, dtype=np.float32)
    nodes = np.full((n_q, width), -1, dtype=np.int64)
    if n_q == 1:  # single query: a short loop beats grouping
        for p, off in zip(chosen[0], offset[0], strict=True):
            if p < 0:
                continue
            s, e = start[p], start[p + 1]
            row = cents[s:e] @ q[0]
            scores[0, off : off + e - s] = row if bonus is None else row + bonus[s:e]
            nodes[0, off : off + e - s] = np.arange(s, e)
        return scores, nodes
    flat = chosen.ravel()
    order = np.argsort(flat, kind="stable")
    cuts = np.flatnonzero(np.diff(flat[order])) + 1
    for group in np.split(order, cuts):  # one small GEMM per parent, over the queries that kept it
        p = flat[group[0]]
        if p < 0:
            continue
        s, e = start[p], start[p + 1]
        qi = group // b
        block = q[qi] @ cents[s:e].T  # (g, e-s)
        if bonus is not None:
            block += bonus[s:e]
        cols = offset.ravel()[group][:, None] + np.arange(e - s)  # (g, e-s)
        scores[qi[:, None], cols] = block
        nodes[qi[:, None], cols] = np.arange(s, e)
    return scores, nodes


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
