"""ScaNN peer index: checked against numpy brute force, like the FAISS baselines, and run by the benchmark."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from daer.errors import BadInputError, DaerError
from daer.retrieval.bench import BenchConfig, run_retrieval_bench
from daer.retrieval.scann_index import ScaNNIndex
from tests.retrieval.conftest import exact_topk, recall

pytest.importorskip("scann")


@pytest.fixture(scope="module")
def index(small_data) -> ScaNNIndex:
    x, _ = small_data
    ids = np.arange(len(x), dtype=np.int64)[::-1].copy() + 1000  # not row numbers: mapping is exercised
    return ScaNNIndex.build(x, ids=ids, num_leaves=100, threads=1)


def test_recall_and_scores_match_exact(small_data, index: ScaNNIndex) -> None:
    x, q = small_data
    s, i = index.search(q * 2.0, k=10, leaves_to_search=50, pre_reorder_num_neighbors=200)
    _, ref = exact_topk(x, q, 10)
    high = recall(i, index.ids[ref])
    assert high >= 0.95
    rows = len(x) - 1 - (i - 1000)  # inverse of the id map above
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_allclose(s, np.einsum("qd,qkd->qk", qn, x[rows]), atol=1e-5)  # exact reorder scores
    assert np.all(np.diff(s, axis=1) <= 1e-6)  # best first
    cheap = recall(index.search(q, k=10, leaves_to_search=1, pre_reorder_num_neighbors=10)[1], index.ids[ref])
    assert cheap < high
    assert index.settings["num_leaves"] == 100
    assert x.shape[1] * 4 + 8 < index.bytes_per_vector() < x.shape[1] * 4 + 8 + x.shape[1] / 2 + 16


def test_batch_equals_single_query(small_data, index: ScaNNIndex) -> None:
    x, q = small_data
    params = {"leaves_to_search": 100, "pre_reorder_num_neighbors": 40}  # every leaf: only the 4-bit codes choose
    s, i = index.search(q, k=10, **params)
    one = [index.search(q[j], k=10, **params) for j in range(len(q))]
    np.testing.assert_array_equal(i, np.concatenate([o[1] for o in one]))
    np.testing.assert_allclose(s, np.concatenate([o[0] for o in one]), atol=1e-6)
    # over a few leaves ScaNN's batched tree search picks other leaves than its single-query search for
    # near-ties (a few % of results), at the same recall: the benchmark's batch recall stands for both
    _, ref = exact_topk(x, q, 10)
    few = {"leaves_to_search": 8, "pre_reorder_num_neighbors": 40}
    batch = recall(index.search(q, k=10, **few)[1], index.ids[ref])
    single = recall(np.concatenate([index.search(v, k=10, **few)[1] for v in q]), index.ids[ref])
    assert abs(batch - single) < 0.03


def test_fewer_items_than_k_pads_with_minus_one() -> None:
    x = np.eye(40, 16, dtype=np.float32) + 0.01
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = ScaNNIndex.build(x, num_leaves=2, threads=1)
    for q in (x[:1], x[:3]):  # the single-query and the batched call
        s, i = index.search(q, k=50, leaves_to_search=2, pre_reorder_num_neighbors=50)
        assert s.shape == i.shape == (len(q), 50)
        assert np.all(i[:, :40] >= 0) and np.all(i[:, 40:] == -1) and np.all(np.isneginf(s[:, 40:]))
        assert sorted(i[0, :40]) == list(range(40))


def test_bad_settings_are_refused(small_data, index: ScaNNIndex, tmp_path) -> None:
    x, q = small_data
    for params in ({"leaves_to_search": 0}, {"leaves_to_search": 101}, {"pre_reorder_num_neighbors": 5}):
        with pytest.raises(BadInputError, match="scann search"):
            index.search(q, k=10, **params)
    with pytest.raises(BadInputError):
        index.search(q[:, :3])
    with pytest.raises(BadInputError, match="num_leaves"):
        ScaNNIndex.build(x[:50], num_leaves=51)
    with pytest.raises(BadInputError):
        ScaNNIndex.build(x, ids=np.arange(3))
    with pytest.raises(DaerError, match="benchmark peers only"):
        index.save(tmp_path / "idx")


def test_bench_sweeps_scann_and_skips_it_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = BenchConfig(n=1500, dim=32, queries=30, methods=("exact", "scann"), repeats=1)
    cfg.single_queries = cfg.exact_single_queries = 5
    out = run_retrieval_bench(cfg)
    entry = out["methods"][1]
    assert entry["name"] == "scann" and entry["recall_at_10"] > 0.9 and entry["bytes_per_vector"] > 32 * 4
    assert entry["params"]["num_leaves"] == round(2 * 1500**0.5)
    assert {"leaves_to_search", "pre_reorder_num_neighbors"} == set(out["sweeps"]["scann"][0]["params"])
    assert any(p["pareto"] for p in out["sweeps"]["scann"])
    monkeypatch.setitem(sys.modules, "scann", None)  # `import scann` now fails, as where it is not installed
    logged: list[str] = []
    out = run_retrieval_bench(cfg, log=logged.append)
    assert [m["name"] for m in out["methods"]] == ["exact"] and "scann" not in out["sweeps"]
    assert any("scann: skipped" in line for line in logged)
