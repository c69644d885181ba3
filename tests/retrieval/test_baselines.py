"""Exact, IVF and HNSW baselines: same interface, checked against numpy brute force."""

from __future__ import annotations

import numpy as np
import pytest

from daer.errors import BadInputError
from daer.retrieval.baselines import ExactIndex, HNSWIndex, IVFIndex
from tests.retrieval.conftest import exact_topk, recall


def test_exact_matches_numpy_and_maps_ids(small_data) -> None:
    x, q = small_data
    ids = np.arange(len(x), dtype=np.int64)[::-1].copy() + 1000
    index = ExactIndex.build(x, ids=ids)
    s, i = index.search(q * 3.0, k=10)  # queries are normalised: cosine
    ref_s, ref_i = exact_topk(x, q, 10)
    np.testing.assert_array_equal(i, ids[ref_i])
    np.testing.assert_allclose(s, ref_s, atol=1e-5)
    assert index.bytes_per_vector() == x.shape[1] * 4 + 8


@pytest.mark.parametrize("codes", ["flat", "fp16"])
def test_ivf_scanning_every_list_is_exact(small_data, codes: str) -> None:
    x, q = small_data
    index = IVFIndex.build(x, nlist=16, codes=codes, niter=5)
    _, i = index.search(q, k=10, nprobe=16)
    _, ref = exact_topk(x, q, 10)
    assert recall(i, ref) >= (1.0 if codes == "flat" else 0.97)
    assert recall(index.search(q, k=10, nprobe=2)[1], ref) < recall(i, ref) + 1e-9
    assert index.settings["nlist"] == 16


def test_hnsw_recall_and_ef(small_data) -> None:
    x, q = small_data
    index = HNSWIndex.build(x, m=16, ef_construction=40)
    _, ref = exact_topk(x, q, 10)
    high = recall(index.search(q, k=10, ef_search=128)[1], ref)
    assert high > 0.95
    assert recall(index.search(q, k=10, ef_search=10)[1], ref) <= high
    assert index.bytes_per_vector() > x.shape[1] * 4  # vectors plus graph links


def test_not_enough_items_pads_with_minus_one() -> None:
    x = np.eye(4, 8, dtype=np.float32)
    s, i = ExactIndex.build(x).search(x[:1], k=6)
    assert list(i[0, 4:]) == [-1, -1] and np.all(np.isinf(s[0, 4:]))


def test_bad_input_is_refused(small_data) -> None:
    x, q = small_data
    with pytest.raises(BadInputError):
        ExactIndex.build(x[:0])
    with pytest.raises(BadInputError):
        IVFIndex.build(x, codes="pq")
    with pytest.raises(BadInputError):
        ExactIndex.build(x).search(q[:, :3])
