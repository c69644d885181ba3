"""ERS: descent against a brute-force reference, equality with exact search at full coverage, statistics,
re-ranking, concurrent searches and the 4-bit PQ fast-scan leaves."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import pytest

from daer.errors import BadInputError
from daer.retrieval.ers import ERSIndex, normalise_queries
from daer.retrieval.synthetic import SynthConfig, SyntheticEmbeddings
from daer.retrieval.tree import Tree, descend
from tests.retrieval.conftest import exact_topk, recall


@pytest.fixture(scope="module")
def ers2(small_data: tuple[np.ndarray, np.ndarray]) -> ERSIndex:
    x, _ = small_data
    return ERSIndex.build(x, ids=np.arange(len(x)) * 10 + 7, n_leaves=48, depth=2, niter=8)


def reference_descend(tree: Tree, q: np.ndarray, beam: int, n_probe: int, bonus: list[np.ndarray] | None) -> list:
    """Obvious beam descent: per query, score every child of the kept nodes and sort."""
    out = []
    for qv in q:
        nodes = [0]
        for level in range(tree.depth):
            start = tree.child_start[level]
            cand = np.concatenate([np.arange(start[p], start[p + 1]) for p in nodes])
            s = tree.centroids[level][cand] @ qv + (0 if bonus is None else bonus[level][cand])
            width = beam if level < tree.depth - 1 else n_probe
            nodes = list(cand[np.argsort(-s, kind="stable")[:width]])
        out.append(set(int(n) for n in nodes))
    return out


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("batch", [True, False])
def test_descend_matches_reference(small_data, depth: int, batch: bool) -> None:
    x, q = small_data
    index = ERSIndex.build(x, n_leaves=60, depth=depth, niter=5)
    tree = index.tree
    rng = np.random.default_rng(0)
    bonus = [rng.uniform(0, 0.05, n).astype(np.float32) for n in tree.level_sizes()]
    for b in (None, bonus):
        ref = reference_descend(tree, q, 3, 7, b)
        if batch:
            leaves = descend(tree, q, 3, 7, b)[0]
        else:
            leaves = np.concatenate([descend(tree, q[i : i + 1], 3, 7, b)[0] for i in range(len(q))])
        assert leaves.shape == (len(q), 7)
        assert [set(int(v) for v in row) for row in leaves] == ref


def test_tree_is_balanced_and_consistent(ers2: ERSIndex, small_data) -> None:
    x, _ = small_data
    tree = ers2.tree
    assert tree.depth == 2 and 40 <= tree.n_leaves <= 60
    assert tree.counts[-1].sum() == len(x) == ers2.ivf.ntotal
    np.testing.assert_array_equal(tree.counts[-1], np.bincount(ers2.leaf_of, minlength=tree.n_leaves))
    np.testing.assert_array_equal(tree.counts[0], np.bincount(tree.parent[1], weights=tree.counts[1]))
    assert np.all(np.diff(tree.parent[1]) >= 0)  # children stored contiguously, ordered by parent
    sizes = tree.counts[-1]
    assert sizes.max() < 6 * np.median(sizes)  # leaves sized in proportion, no giant list


@pytest.mark.parametrize("codes,spill", [("flat", 1), ("sq8", 1), ("flat", 2), ("sq8", 2), ("pq4fs", 1), ("pq4fs", 2)])
def test_full_beam_equals_exact_search(small_data, codes: str, spill: int) -> None:
    x, q = small_data
    index = ERSIndex.build(x, n_leaves=32, depth=2, codes=codes, niter=5, spill=spill)
    assert index.ivf.ntotal == spill * len(x)
    scores, ids = index.search(
        q, k=10, beam=10_000, n_probe=index.tree.n_leaves, candidates=200 if codes != "flat" else None
    )
    ref_s, ref_i = exact_topk(x, q, 10)
    np.testing.assert_array_equal(ids, ref_i)
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)


def test_recall_sanity_and_single_equals_batch(ers2: ERSIndex, small_data) -> None:
    x, q = small_data
    _, truth = exact_topk(x, q, 10)
    s_b, i_b = ers2.search(q, k=10, beam=4, n_probe=8)
    assert recall((i_b - 7) // 10, truth) > 0.8
    singles = [ers2.search(q[i], k=10, beam=4, n_probe=8) for i in range(len(q))]
    np.testing.assert_array_equal(np.concatenate([s[1] for s in singles]), i_b)
    np.testing.assert_allclose(np.concatenate([s[0] for s in singles]), s_b, atol=1e-6)
    wider = ers2.search(q, k=10, beam=8, n_probe=24)[1]
    assert recall((wider - 7) // 10, truth) >= recall((i_b - 7) // 10, truth)


def test_reranker_reorders_the_top_r(ers2: ERSIndex, small_data) -> None:
    _, q = small_data
    calls = []

    def by_id(query_index: int, ids: np.ndarray) -> np.ndarray:
        calls.append((query_index, len(ids)))
        return -ids.astype(np.float32)  # smallest id first

    base_s, base = ers2.search(q[:5], k=10, beam=4, n_probe=8, candidates=20)
    s, ids = ers2.search(q[:5], k=10, beam=4, n_probe=8, candidates=20, reranker=by_id, rerank_depth=6)
    assert calls == [(i, 6) for i in range(5)]
    for row, b in zip(ids, base, strict=True):
        np.testing.assert_array_equal(row[:6], np.sort(b[:6]))  # top 6 re-ordered by the fine score
        np.testing.assert_array_equal(row[6:], b[6:10])  # the rest keeps the global order
    np.testing.assert_allclose(s[:, :6], -ids[:, :6].astype(np.float32))
    np.testing.assert_allclose(s[:, 6:], base_s[:, 6:])


def test_success_statistics_learn_and_freeze(small_data) -> None:
    x, q = small_data
    index = ERSIndex.build(x, n_leaves=32, depth=2, niter=5, beta=0.05, explore=0.01)
    index.search(q, k=5, beam=3, n_probe=4)
    assert all(v.sum() == 0 for v in index.visits)  # frozen by default
    index.set_learning(True)
    _, ids = index.search(q, k=5, beam=3, n_probe=4)
    assert index.root_visits[0] == len(q)
    assert index.visits[0].sum() == 3 * len(q) and index.visits[1].sum() == 4 * len(q)
    assert index.successes[1].sum() == len(q) == index.successes[0].sum()
    top_leaf = index.leaf_of[ids[:, 0]]
    np.testing.assert_array_equal(index.successes[1], np.bincount(top_leaf, minlength=index.tree.n_leaves))
    assert np.all(index.successes[1] <= index.visits[1])
    bonus = index.bonuses()
    assert bonus[1].std() > 0  # history now shifts the descent
    index.reset_stats()
    assert index.visits[1].sum() == 0


def test_concurrent_searches_match_sequential(ers2: ERSIndex, small_data) -> None:
    _, q = small_data
    expected = [ers2.search(q[i : i + 1 + i % 3], k=10, beam=4, n_probe=8) for i in range(len(q) - 3)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda i: ers2.search(q[i : i + 1 + i % 3], k=10, beam=4, n_probe=8), range(len(q) - 3)))
    for (es, ei), (gs, gi) in zip(expected, got, strict=True):
        np.testing.assert_array_equal(gi, ei)
        np.testing.assert_array_equal(gs, es)


def test_bad_input_is_refused(ers2: ERSIndex, small_data) -> None:
    x, q = small_data
    with pytest.raises(BadInputError):
        ers2.search(q[:, :5])
    with pytest.raises(BadInputError):
        ers2.search(np.full((1, x.shape[1]), np.nan, np.float32))
    with pytest.raises(BadInputError):
        ers2.search(q, k=0)
    with pytest.raises(BadInputError):
        ERSIndex.build(x, codes="pq")
    with pytest.raises(BadInputError):
        ERSIndex.build(x, ids=np.arange(3))


def test_spill_stores_items_twice_and_finds_more(small_data) -> None:
    x, q = small_data
    _, truth = exact_topk(x, q, 10)
    one = ERSIndex.build(x, n_leaves=48, niter=5)
    two = ERSIndex.build(x, n_leaves=48, niter=5, spill=2)
    assert two.spill_of.shape == (len(x), 1) and np.all(two.spill_of[:, 0] != two.leaf_of)
    r1 = recall(one.search(q, k=10, beam=3, n_probe=4)[1], truth)
    s2, i2 = two.search(q, k=10, beam=3, n_probe=4)
    assert recall(i2, truth) > r1
    for row in i2:  # every item at most once
        assert len(set(row[row >= 0])) == int((row >= 0).sum())
    assert np.all(np.diff(s2, axis=1) <= 1e-6)
    two.set_learning(True)
    two.search(q, k=10, beam=3, n_probe=4)
    assert two.successes[1].sum() == len(q) and np.all(two.successes[1] <= two.visits[1])


# ---------------------------------------------------------------- pq4fs: 4-bit PQ fast-scan leaves + exact reorder
PQ_DATA = SynthConfig(dim=64, latent_dim=12, n_clusters=200, hidden=32)


@pytest.fixture(scope="module")
def pq_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(database (20000, 64), queries (200, 64), exact top-10 ids from faiss.IndexFlatIP)."""
    gen = SyntheticEmbeddings(PQ_DATA, seed=11)
    x = gen.database(20_000)
    q, _ = gen.queries(x, 200, seed=12)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    return x, q, flat.search(q, 10)[1]


@pytest.fixture(scope="module")
def pq_index(pq_data) -> ERSIndex:
    return ERSIndex.build(pq_data[0], n_leaves=300, codes="pq4fs", spill=2, niter=8)


def test_pq4fs_reaches_exact_recall_with_exact_scores(pq_index: ERSIndex, pq_data) -> None:
    x, q, truth = pq_data
    assert isinstance(pq_index.ivf, faiss.IndexIVFPQFastScan) and pq_index.ivf.by_residual
    assert pq_index.config.pq_m == 32 and pq_index.ivf.code_size == 16  # d/2 sub-quantizers of 4 bits
    s, ids = pq_index.search(q, k=10, beam=16, n_probe=48)
    assert recall(ids, truth) >= 0.95
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_allclose(s, np.einsum("qkd,qd->qk", x[ids], qn), atol=1e-5)  # re-scored from floats
    assert np.all(np.diff(s, axis=1) <= 0)
    # the 4-bit scan itself ranks well (a random or mis-biased scan would not): few candidates already find most
    assert recall(pq_index.search(q, k=10, beam=16, n_probe=48, candidates=20)[1], truth) >= 0.8


def test_pq4fs_batch_equals_single_queries(pq_index: ERSIndex, pq_data) -> None:
    _, q, _ = pq_data
    s_b, i_b = pq_index.search(q[:40], k=10, beam=8, n_probe=16)  # one FAISS call for the block
    singles = [pq_index.search(q[i], k=10, beam=8, n_probe=16) for i in range(40)]
    np.testing.assert_array_equal(np.concatenate([i for _, i in singles]), i_b)
    np.testing.assert_allclose(np.concatenate([s for s, _ in singles]), s_b, atol=1e-6)


def test_pq4fs_reorder_setting_and_padded_leaves(small_data) -> None:
    x, q = small_data
    _, truth = exact_topk(x, q, 10)
    few = ERSIndex.build(x, n_leaves=48, niter=5, codes="pq4fs", reorder=10)
    many = ERSIndex.build(x, n_leaves=48, niter=5, codes="pq4fs", reorder=300)
    r_few = recall(few.search(q, k=10, beam=8, n_probe=24)[1], truth)
    assert recall(many.search(q, k=10, beam=8, n_probe=24)[1], truth) > r_few
    s, ids = many.search(q, k=10, beam=1, n_probe=20)  # one level-1 node: fewer than 20 leaves, -1 padded
    leaves = descend(many.tree, normalise_queries(q, x.shape[1]), 1, 20)[0]
    assert (leaves < 0).any()
    for row, lv in zip(ids, leaves, strict=True):
        assert set(many.leaf_of[row[row >= 0]]) <= set(lv[lv >= 0])


def test_pq4fs_recall_holds_where_the_beam_leaves_padding(pq_index: ERSIndex, pq_data) -> None:
    # a narrow beam reaches fewer leaves than n_probe asks for: the -1 padding must not be scanned as a list
    x, q, truth = pq_data
    leaves = descend(pq_index.tree, normalise_queries(q, x.shape[1]), 8, 128)[0]
    assert (leaves < 0).any() and (leaves >= 0).all(axis=1).any()  # padded and full rows in one batch
    r_wide = recall(pq_index.search(q, k=10, beam=8, n_probe=128)[1], truth)
    assert r_wide >= recall(pq_index.search(q, k=10, beam=8, n_probe=48)[1], truth) - 0.01 and r_wide >= 0.95


def test_pq4fs_bad_settings_are_refused(small_data) -> None:
    x, _ = small_data  # d = 32
    for bad in ({"pq_m": 7}, {"pq_m": -2}, {"refine": False}, {"reorder": -1}):
        with pytest.raises(BadInputError, match="pq_m|refine|reorder"):
            ERSIndex.build(x, n_leaves=16, niter=2, codes="pq4fs", **bad)
    with pytest.raises(BadInputError, match="pq_m"):
        ERSIndex.build(x, n_leaves=16, niter=2, codes="sq8", pq_m=8)
    with pytest.raises(BadInputError, match="reorder"):
        ERSIndex.build(x, n_leaves=16, niter=2, codes="flat", reorder=100)
    assert ERSIndex.build(x, n_leaves=16, niter=2, codes="pq4fs", pq_m=8).ivf.code_size == 4  # d/M = 4 is fine
