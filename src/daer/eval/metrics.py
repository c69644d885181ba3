"""Retrieval and classification metrics on score matrices: numpy in, numpy out, shapes checked first.

Conventions shared by every function:

- Scores: higher is better. Rows are queries, columns are the items ranked for them.
- Ties count against the query. A relevant item tied with a non-relevant one is ranked behind it, a true
  class or value tied with another is wrong. A model that gives every item the same score therefore gets
  recall and accuracy 0, never 1.
- Top-k lists break ties by column index (lower first), the order of a stable sort.
- Work is done in row blocks of at most ``chunk`` rows, so temporaries stay O(chunk × columns) and
  100k × 100k problems run in bounded memory when the scores come in blocks (see :func:`topk_dot`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from daer.errors import BadInputError

MISS = np.iinfo(np.int64).max  # rank of a query none of whose relevant items is among the ranked ones
DEFAULT_CHUNK = 4096

Descriptor = tuple[str, Mapping[str, str]]  # (category, attributes)


def _array(x: object, name: str, ndim: int, dtype: type | None = None) -> np.ndarray:
    a = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    if a.ndim != ndim:
        raise BadInputError(f"{name} must be a {ndim}-d array, got shape {a.shape}")
    return a


def _scores(x: object, name: str = "scores", ndim: int = 2) -> np.ndarray:
    a = _array(x, name, ndim)
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise BadInputError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def _finite(block: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(block).all():
        raise BadInputError(f"{name} contain NaN or infinite values")
    return block


def _indices(x: object, name: str, upper: int) -> np.ndarray:
    a = _array(x, name, 1)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise BadInputError(f"{name} must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= upper):
        raise BadInputError(f"{name} must lie in 0..{upper - 1}, got values in {a.min()}..{a.max()}")
    return a


def _blocks(n: int, chunk: int) -> Iterator[slice]:
    if chunk < 1:
        raise BadInputError(f"chunk must be >= 1, got {chunk}")
    for start in range(0, n, chunk):
        yield slice(start, min(n, start + chunk))


def _ks(ks: Sequence[int]) -> list[int]:
    out = [int(k) for k in ks]
    if not out or any(k < 1 for k in out):
        raise BadInputError(f"k values must be >= 1, got {list(ks)}")
    return out


# --- ranks and recall ---
def relevant_rank(scores: np.ndarray, relevant: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Rank (0 = first) of the best-scoring relevant item of each row.

    The rank is the number of non-relevant items scoring at least as high as the best relevant one.

    Args:
        scores: (Q, C) scores of C ranked items per query.
        relevant: (Q, C) bool, which of them are relevant.
        chunk: rows per block.

    Returns:
        (Q,) int64 ranks, ``MISS`` for rows with no relevant item.
    """
    scores = _scores(scores)
    relevant = _array(relevant, "relevant", 2, bool)
    if relevant.shape != scores.shape:
        raise BadInputError(f"relevant {relevant.shape} must match scores {scores.shape}")
    out = np.empty(len(scores), dtype=np.int64)
    for rows in _blocks(len(scores), chunk):
        s = _finite(np.asarray(scores[rows], dtype=np.float64), "scores")  # (q, C)
        rel = relevant[rows]
        best = np.where(rel, s, -np.inf).max(axis=1, initial=-np.inf)  # (q,)
        count = ((s >= best[:, None]) & ~rel).sum(axis=1)
        out[rows] = np.where(rel.any(axis=1), count, MISS)
    return out


def recall_at_k(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries whose rank is below k, for each k.

    Args:
        ranks: (Q,) ranks as :func:`relevant_rank` gives them (Q >= 1).
        ks: cut-offs.
    """
    ranks = _array(ranks, "ranks", 1)
    if len(ranks) == 0:
        raise BadInputError("recall needs at least one query")
    return {k: float((ranks < k).mean()) for k in _ks(ks)}


def instance_ranks(
    scores: np.ndarray, text_of_shape: np.ndarray | None = None, chunk: int = DEFAULT_CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """Ranks for instance retrieval both ways from a full text-by-shape score matrix.

    Shape j is described by text ``text_of_shape[j]``. Text→shape: the shapes described by a text are
    relevant to it. Shape→text: a shape's own text is relevant to it. Shapes that share one caption text
    share its row, so retrieving either counts: the text cannot tell them apart.

    Args:
        scores: (U, S) score of each text with each shape.
        text_of_shape: (S,) text index of each shape (default: ``arange(S)``, a square matrix with
            targets on the diagonal). Every text must describe at least one shape.
        chunk: rows (or columns) per block.

    Returns:
        t2s ranks (U,) and s2t ranks (S,).
    """
    scores = _scores(scores)
    u, s = scores.shape
    if text_of_shape is None:
        if u != s:
            raise BadInputError(f"a non-square score matrix {scores.shape} needs text_of_shape")
        text_of_shape = np.arange(s)
    owner = _indices(text_of_shape, "text_of_shape", u)
    if len(owner) != s:
        raise BadInputError(f"text_of_shape has {len(owner)} entries for {s} shapes")
    if u and np.bincount(owner, minlength=u).min() == 0:
        raise BadInputError("every text must describe at least one shape")
    t2s = np.empty(u, dtype=np.int64)
    for rows in _blocks(u, chunk):
        rel = owner[None, :] == np.arange(rows.start, rows.stop)[:, None]  # (q, S)
        t2s[rows] = relevant_rank(scores[rows], rel, chunk)
    s2t = np.empty(s, dtype=np.int64)
    for cols in _blocks(s, chunk):
        rel = np.arange(u)[None, :] == owner[cols, None]  # (c, U)
        s2t[cols] = relevant_rank(np.asarray(scores[:, cols]).T, rel, chunk)
    return t2s, s2t


def instance_recall(
    scores: np.ndarray,
    text_of_shape: np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, dict[int, float]]:
    """Recall@k text→shape and shape→text: ``{"t2s": {k: r}, "s2t": {k: r}}`` (see :func:`instance_ranks`)."""
    t2s, s2t = instance_ranks(scores, text_of_shape, chunk)
    return {"t2s": recall_at_k(t2s, ks), "s2t": recall_at_k(s2t, ks)}


# --- top-k ---
def _merge(best_i: np.ndarray, best_v: np.ndarray, idx: np.ndarray, val: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Keep the k best of two candidate lists whose indices are all smaller in the first (stable ties)."""
    i = np.concatenate([best_i, idx], axis=1)
    v = np.concatenate([best_v, val], axis=1)
    order = np.argsort(-v, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(i, order, axis=1), np.take_along_axis(v, order, axis=1)


def topk(scores: np.ndarray, k: int, chunk: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of each row, best first, ties by lower column index.

    Args:
        scores: (Q, S).
        k: how many (capped at S).

    Returns:
        indices (Q, min(k, S)) int64 and their scores.
    """
    scores = _scores(scores)
    if k < 1:
        raise BadInputError(f"k must be >= 1, got {k}")
    k = min(k, scores.shape[1])
    idx = np.empty((len(scores), k), dtype=np.int64)
    val = np.empty((len(scores), k), dtype=scores.dtype)
    for rows in _blocks(len(scores), chunk):
        s = _finite(np.asarray(scores[rows]), "scores")
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        idx[rows], val[rows] = order, np.take_along_axis(s, order, axis=1)
    return idx, val


def topk_dot(
    queries: np.ndarray, keys: np.ndarray, k: int, chunk: int = DEFAULT_CHUNK, key_chunk: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    """The k keys with the largest inner product for each query, without forming the full score matrix.

    Memory is O(chunk × (k + key_chunk)); results equal :func:`topk` of ``queries @ keys.T`` (same ties).

    Args:
        queries: (Q, D).
        keys: (S, D).
        k: how many (capped at S).

    Returns:
        indices (Q, min(k, S)) int64 and inner products (float32).
    """
    queries = _finite(_scores(queries, "queries").astype(np.float32, copy=False), "queries")
    keys = _finite(_scores(keys, "keys").astype(np.float32, copy=False), "keys")
    if queries.shape[1] != keys.shape[1]:
        raise BadInputError(f"queries {queries.shape} and keys {keys.shape} differ in width")
    if k < 1:
        raise BadInputError(f"k must be >= 1, got {k}")
    if len(keys) == 0:
        raise BadInputError("topk_dot needs at least one key")
    k = min(k, len(keys))
    idx = np.empty((len(queries), k), dtype=np.int64)
    val = np.empty((len(queries), k), dtype=np.float32)
    for rows in _blocks(len(queries), chunk):
        q = queries[rows]
        best_i = np.empty((len(q), 0), dtype=np.int64)
        best_v = np.empty((len(q), 0), dtype=np.float32)
        for cols in _blocks(len(keys), key_chunk):
            s = q @ keys[cols].T  # (q, c)
            ids = np.broadcast_to(np.arange(cols.start, cols.stop), s.shape)
            best_i, best_v = _merge(best_i, best_v, ids, s, k)
        idx[rows], val[rows] = best_i, best_v
    return idx, val


def order_candidates(idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row's candidates by score, best first, ties by lower item index.

    Args:
        idx: (Q, C) item indices (as :func:`topk_dot` gives them).
        scores: (Q, C) their (re-computed) scores.
    """
    idx = _array(idx, "idx", 2)
    scores = _scores(scores)
    if idx.shape != scores.shape:
        raise BadInputError(f"idx {idx.shape} must match scores {scores.shape}")
    by_index = np.argsort(idx, axis=1, kind="stable")
    idx, scores = np.take_along_axis(idx, by_index, 1), np.take_along_axis(scores, by_index, 1)
    order = np.argsort(-_finite(scores, "scores"), axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(scores, order, 1)


# --- spec queries ---
def spec_match(query: Descriptor, item: Descriptor) -> bool:
    """Whether an item is relevant to a spec query: same category and every named attribute equal."""
    (q_cat, q_attrs), (i_cat, i_attrs) = query, item
    return q_cat == i_cat and all(i_attrs.get(name) == value for name, value in q_attrs.items())


def relevance_table(queries: Sequence[Descriptor], items: Sequence[Descriptor]) -> tuple[np.ndarray, np.ndarray]:
    """Spec relevance in factored form: items with equal descriptors share one column.

    Returns:
        ``mask`` (Q, U) bool over the U distinct item descriptors and ``codes`` (S,) int64, the descriptor of
        each item; query q finds item s relevant iff ``mask[q, codes[s]]``.
    """
    keys: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    codes = np.empty(len(items), dtype=np.int64)
    uniq: list[Descriptor] = []
    for s, (cat, attrs) in enumerate(items):
        key = (cat, tuple(sorted(attrs.items())))
        if key not in keys:
            keys[key] = len(uniq)
            uniq.append((cat, dict(attrs)))
        codes[s] = keys[key]
    mask = np.array([[spec_match(q, d) for d in uniq] for q in queries], dtype=bool).reshape(len(queries), len(uniq))
    return mask, codes


def precision_at_k(
    ranked_relevant: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int] = (1, 10)
) -> dict[int, float | None]:
    """Mean precision@k over queries, each out of ``min(k, its number of relevant items)``.

    Capping the denominator lets a perfect ranking score 1 when a query has fewer than k relevant items.
    Queries with no relevant item are left out; ``None`` when none is left.

    Args:
        ranked_relevant: (Q, K) bool, relevance of each query's ranked items, best first; K must be at
            least ``min(k, number of items)`` for the result to be exact.
        n_relevant: (Q,) relevant items per query among all items.
    """
    rel = _array(ranked_relevant, "ranked_relevant", 2, bool)
    n_rel = _array(n_relevant, "n_relevant", 1)
    if len(n_rel) != len(rel):
        raise BadInputError(f"n_relevant has {len(n_rel)} entries for {len(rel)} queries")
    if (n_rel < rel.sum(axis=1)).any():
        raise BadInputError("n_relevant is below the relevant items counted in a ranked list")
    keep = n_rel > 0
    out: dict[int, float | None] = {}
    for k in _ks(ks):
        if not keep.any():
            out[k] = None
            continue
        hits = rel[keep, :k].sum(axis=1)
        out[k] = float((hits / np.minimum(k, n_rel[keep])).mean())
    return out


def spec_precision(
    scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 10), chunk: int = DEFAULT_CHUNK
) -> dict[int, float | None]:
    """Precision@k of spec queries from a full (Q, S) score matrix and (Q, S) bool relevance."""
    scores = _scores(scores)
    relevant = _array(relevant, "relevant", 2, bool)
    if relevant.shape != scores.shape:
        raise BadInputError(f"relevant {relevant.shape} must match scores {scores.shape}")
    ks = _ks(ks)
    idx, _ = topk(scores, max(ks), chunk)
    return precision_at_k(np.take_along_axis(relevant, idx, 1), relevant.sum(axis=1), ks)


# --- classification ---
def zeroshot_top1(scores: np.ndarray, labels: np.ndarray, chunk: int = DEFAULT_CHUNK) -> float:
    """Fraction of shapes whose true class scores strictly above every other class.

    Args:
        scores: (S, K) score of each shape with each class (K >= 2).
        labels: (S,) true class index of each shape (S >= 1).
    """
    scores = _scores(scores)
    s, k = scores.shape
    if s == 0 or k < 2:
        raise BadInputError(f"zero-shot needs at least one shape and two classes, got scores {scores.shape}")
    labels = _indices(labels, "labels", k)
    if len(labels) != s:
        raise BadInputError(f"labels has {len(labels)} entries for {s} shapes")
    correct = 0
    for rows in _blocks(s, chunk):
        x = _finite(np.asarray(scores[rows], dtype=np.float64), "scores")
        true = np.take_along_axis(x, labels[rows, None], 1)  # (b, 1)
        others = x.copy()
        np.put_along_axis(others, labels[rows, None], -np.inf, 1)
        correct += int((true[:, 0] > others.max(axis=1)).sum())
    return correct / s


def attribute_accuracy(true_scores: np.ndarray, other_scores: np.ndarray, chunk: int = DEFAULT_CHUNK) -> float:
    """Fraction of (shape, attribute) pairs whose true-value caption outscores every other-value caption.

    Args:
        true_scores: (P,) score of the caption with the true value, one per pair (P >= 1).
        other_scores: (P, V) scores of the same caption with each other value; NaN pads rows of
            attributes with fewer values. Every row needs at least one number.
    """
    true = _scores(true_scores, "true_scores", 1)
    other = _scores(other_scores, "other_scores")
    if len(true) == 0 or len(other) != len(true):
        raise BadInputError(f"need one row of other scores per pair, got {other.shape} for {true.shape}")
    _finite(true, "true_scores")
    correct = 0
    for rows in _blocks(len(true), chunk):
        o = np.asarray(other[rows], dtype=np.float64)
        if np.isinf(o).any() or np.isnan(o).all(axis=1).any():
            raise BadInputError("other_scores need at least one finite score per row and no infinities")
        beaten = np.where(np.isnan(o), -np.inf, o).max(axis=1)
        correct += int((true[rows] > beaten).sum())
    return correct / len(true)
