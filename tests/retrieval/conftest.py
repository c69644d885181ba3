"""Small synthetic embedding problems shared by the retrieval tests."""

from __future__ import annotations

import numpy as np
import pytest

from daer.retrieval.synthetic import SynthConfig, SyntheticEmbeddings

SMALL = SynthConfig(dim=32, latent_dim=8, n_clusters=24, hidden=16, chunk=1000)


@pytest.fixture(scope="session")
def small_data() -> tuple[np.ndarray, np.ndarray]:
    """(database (3000, 32), queries (60, 32)) unit-norm float32."""
    gen = SyntheticEmbeddings(SMALL, seed=3)
    x = gen.database(3000)
    q, _ = gen.queries(x, 60, seed=5)
    return x, q


def exact_topk(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force cosine top-k in numpy: the reference every index is checked against."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = qn @ x.T
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, axis=1), idx


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` present in the same row of ``found``."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)]))
