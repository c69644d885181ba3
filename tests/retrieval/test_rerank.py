"""The shared fine re-rank against a sort written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from daer.errors import BadInputError
from daer.retrieval.rerank import rerank_top


@pytest.mark.parametrize("depth", [0, 1, 4, 6, 10])
def test_head_is_sorted_by_fine_score_and_tail_kept(depth: int) -> None:
    rng = np.random.default_rng(depth)
    rows = np.array([7, 3, 9, 1, 4, 0, -1, -1])
    scores = np.sort(rng.random(8))[::-1].astype(np.float32)
    fine_of = {r: float(rng.random()) for r in range(10)}
    s, r = rerank_top(scores, rows, lambda rr: np.array([fine_of[int(x)] for x in rr]), depth)
    head = [x for x in rows[:depth] if x >= 0]
    expected = sorted(head, key=lambda x: -fine_of[x])
    assert r[: len(head)].tolist() == expected
    assert np.allclose(s[: len(head)], [fine_of[x] for x in expected])
    assert r[len(head) :].tolist() == rows[len(head) :].tolist() and np.array_equal(s[len(head) :], scores[len(head) :])
    assert rows.tolist() == [7, 3, 9, 1, 4, 0, -1, -1]  # inputs untouched


def test_wrong_number_of_fine_scores_is_refused() -> None:
    with pytest.raises(BadInputError, match="expected"):
        rerank_top(np.ones(3), np.arange(3), lambda r: np.ones(2), 3)
