"""The fine re-rank of a ranked candidate list: the one implementation the ERS index and the searcher share."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from daer.errors import BadInputError


def rerank_top(
    scores: np.ndarray, rows: np.ndarray, fine: Callable[[np.ndarray], np.ndarray], depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Re-order one query's top ``depth`` candidates by ``fine(rows) -> scores``; the rest keep order and scores.

    Args:
        scores: (C,) the candidates' first-stage scores, best first.
        rows: (C,) their rows, -1 padding the tail where fewer were found.
        fine: scores of the given valid rows, one per row (the HAF fused score).
        depth: how many of the top candidates are re-scored (0: none).

    Returns:
        New (scores, rows); the re-ranked head carries the fine scores.
    """
    scores, rows = scores.copy(), rows.copy()
    head = rows[:depth]
    valid = head[head >= 0]
    if len(valid) == 0:
        return scores, rows
    s = np.asarray(fine(valid), dtype=np.float32).reshape(-1)
    if s.shape != (len(valid),):
        raise BadInputError(f"re-rank: the fine scorer returned {s.shape}, expected ({len(valid)},)")
    order = np.argsort(-s, kind="stable")
    rows[: len(valid)] = valid[order]
    scores[: len(valid)] = s[order]
    return scores, rows
