"""Every metric against an obvious full-matrix or loop reference, at several chunk sizes, with and without ties."""

from __future__ import annotations

import numpy as np
import pytest

from daer.errors import BadInputError
from daer.eval import metrics as M


def _scores(rng: np.random.Generator, shape: tuple[int, int], ties: bool) -> np.ndarray:
    # Small integers make ties frequent and every product exact in float32.
    return rng.integers(0, 4, size=shape).astype(np.float32) if ties else rng.normal(size=shape).astype(np.float32)


def _naive_rank(row: np.ndarray, rel: np.ndarray) -> int:
    """Pessimistic rank: walk the items from best to worst, ties broken against the relevant ones."""
    if not rel.any():
        return M.MISS
    order = sorted(range(len(row)), key=lambda j: (-row[j], bool(rel[j])))
    return next(pos for pos, j in enumerate(order) if rel[j])


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_relevant_rank(ties: bool, chunk: int) -> None:
    rng = np.random.default_rng(1)
    s = _scores(rng, (17, 9), ties)
    rel = rng.random((17, 9)) < 0.25
    rel[0] = False
    want = np.array([_naive_rank(s[q], rel[q]) for q in range(17)])
    np.testing.assert_array_equal(M.relevant_rank(s, rel, chunk), want)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_instance_recall_square_against_argsort(ties: bool, chunk: int) -> None:
    rng = np.random.default_rng(2)
    s = _scores(rng, (23, 23), ties)
    got = M.instance_recall(s, ks=(1, 5, 10), chunk=chunk)
    for direction, mat in (("t2s", s), ("s2t", s.T)):
        for k in (1, 5, 10):
            hits = 0
            for i in range(len(mat)):
                # Ties resolved against the target: it goes after every item with an equal score.
                order = sorted(range(len(mat)), key=lambda j: (-mat[i, j], j == i))
                hits += i in order[:k]
            assert got[direction][k] == pytest.approx(hits / len(mat))


def test_instance_recall_shared_captions() -> None:
    rng = np.random.default_rng(3)
    owner = np.array([0, 1, 1, 2, 3, 3, 3, 4])  # shapes 1, 2 share caption 1; 4, 5, 6 share caption 3
    s = _scores(rng, (5, 8), ties=True)
    t2s, s2t = M.instance_ranks(s, owner, chunk=2)
    for u in range(5):
        assert t2s[u] == _naive_rank(s[u], owner == u)
    for j in range(8):
        assert s2t[j] == _naive_rank(s[:, j], np.arange(5) == owner[j])
    with pytest.raises(BadInputError, match="at least one shape"):
        M.instance_ranks(s, np.array([0, 1, 1, 2, 2, 2, 3, 3]))
    with pytest.raises(BadInputError, match="needs text_of_shape"):
        M.instance_ranks(s)


def test_recall_at_k_counts_misses() -> None:
    ranks = np.array([0, 4, 9, 10, M.MISS])
    assert M.recall_at_k(ranks, (1, 5, 10)) == {1: 0.2, 5: 0.4, 10: 0.6}
    with pytest.raises(BadInputError):
        M.recall_at_k(np.array([], dtype=np.int64))


@pytest.mark.parametrize("k", [1, 4, 50])
def test_topk_and_topk_dot_match_stable_argsort(k: int) -> None:
    rng = np.random.default_rng(4)
    q = rng.integers(-2, 3, size=(13, 5)).astype(np.float32)
    keys = rng.integers(-2, 3, size=(29, 5)).astype(np.float32)
    full = q @ keys.T
    want = np.argsort(-full, axis=1, kind="stable")[:, :k]
    idx, val = M.topk(full, k, chunk=4)
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(val, np.take_along_axis(full, want, 1))
    for chunk, key_chunk in ((1, 1), (5, 7), (100, 100)):
        idx2, val2 = M.topk_dot(q, keys, k, chunk=chunk, key_chunk=key_chunk)
        np.testing.assert_array_equal(idx2, want)
        np.testing.assert_array_equal(val2, np.take_along_axis(full, want, 1))


def test_order_candidates() -> None:
    idx = np.array([[5, 2, 9, 1], [0, 3, 2, 1]])
    scores = np.array([[1.0, 3.0, 3.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    i, s = M.order_candidates(idx, scores)
    np.testing.assert_array_equal(i, [[2, 9, 1, 5], [0, 1, 2, 3]])
    np.testing.assert_array_equal(s, [[3, 3, 1, 1], [0, 0, 0, 0]])


def test_spec_relevance_against_loop() -> None:
    items = [
        ("chair", {"legs": "3", "back": "tall"}),
        ("chair", {"legs": "4", "back": "tall"}),
        ("table", {"legs": "3", "top": "round"}),
        ("chair", {"legs": "3", "back": "tall"}),
    ]
    queries = [("chair", {}), ("chair", {"legs": "3"}), ("chair", {"legs": "3", "back": "short"}), ("lamp", {})]
    mask, codes = M.relevance_table(queries, items)
    assert mask.shape == (4, 3)  # items 0 and 3 share a descriptor
    dense = mask[:, codes]
    want = [[q[0] == it[0] and all(it[1].get(a) == v for a, v in q[1].items()) for it in items] for q in queries]
    np.testing.assert_array_equal(dense, want)
    np.testing.assert_array_equal(dense.sum(1), [3, 2, 0, 0])


@pytest.mark.parametrize("ties", [False, True])
def test_spec_precision_against_loop(ties: bool) -> None:
    rng = np.random.default_rng(5)
    s = _scores(rng, (11, 30), ties)
    rel = rng.random((11, 30)) < 0.3
    rel[2] = False  # no relevant item: left out
    rel[3] = False
    rel[3, 7] = True  # one relevant item: P@10 is out of 1
    got = M.spec_precision(s, rel, (1, 10), chunk=3)
    for k in (1, 10):
        vals = []
        for q in range(11):
            if rel[q].sum() == 0:
                continue
            order = np.argsort(-s[q], kind="stable")[:k]
            vals.append(rel[q, order].sum() / min(k, rel[q].sum()))
        assert got[k] == pytest.approx(np.mean(vals))
    assert M.spec_precision(s, np.zeros_like(rel), (1,)) == {1: None}


def test_precision_perfect_ranking_is_one() -> None:
    ranked = np.array([[True, True, False], [True, False, False]])
    assert M.precision_at_k(ranked, np.array([2, 1]), (1, 10)) == {1: 1.0, 10: 1.0}
    with pytest.raises(BadInputError, match="below"):
        M.precision_at_k(ranked, np.array([1, 1]), (1,))


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_zeroshot_top1_against_loop(chunk: int) -> None:
    rng = np.random.default_rng(6)
    s = _scores(rng, (25, 6), ties=True)
    labels = rng.integers(0, 6, size=25)
    want = np.mean([all(s[i, labels[i]] > s[i, c] for c in range(6) if c != labels[i]) for i in range(25)])
    assert M.zeroshot_top1(s, labels, chunk) == pytest.approx(want)
    assert M.zeroshot_top1(np.ones((4, 3)), np.zeros(4, dtype=int)) == 0.0  # a constant scorer earns nothing
    with pytest.raises(BadInputError, match="labels"):
        M.zeroshot_top1(s, np.full(25, 6))


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_attribute_accuracy_against_loop(chunk: int) -> None:
    rng = np.random.default_rng(7)
    true = rng.integers(0, 3, size=20).astype(float)
    other = rng.integers(0, 3, size=(20, 4)).astype(float)
    width = rng.integers(1, 5, size=20)
    for i, w in enumerate(width):
        other[i, w:] = np.nan
    want = np.mean([all(true[i] > other[i, j] for j in range(width[i])) for i in range(20)])
    assert M.attribute_accuracy(true, other, chunk) == pytest.approx(want)
    with pytest.raises(BadInputError, match="at least one finite"):
        M.attribute_accuracy(np.ones(1), np.full((1, 2), np.nan))


def test_shapes_and_values_checked_first() -> None:
    with pytest.raises(BadInputError, match="2-d"):
        M.relevant_rank(np.zeros(3), np.zeros(3, bool))
    with pytest.raises(BadInputError, match="must match"):
        M.relevant_rank(np.zeros((2, 3)), np.zeros((3, 2), bool))
    with pytest.raises(BadInputError, match="NaN"):
        M.relevant_rank(np.array([[np.nan, 1.0]]), np.array([[True, False]]))
    with pytest.raises(BadInputError, match="width"):
        M.topk_dot(np.zeros((2, 3)), np.zeros((4, 2)), 1)
    with pytest.raises(BadInputError, match="real numbers"):
        M.topk(np.array([["a", "b"]]), 1)
    with pytest.raises(BadInputError, match="0..2"):
        M.instance_ranks(np.zeros((3, 3)), np.array([0, 1, 3]))
