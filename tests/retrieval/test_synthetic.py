"""Synthetic embeddings: deterministic, chunked, unit norm, ~20-dimensional, overlapping, text-like queries."""

from __future__ import annotations

import numpy as np
import pytest

from daer.errors import BadInputError
from daer.retrieval.synthetic import SynthConfig, SyntheticEmbeddings


def test_deterministic_and_chunk_independent_of_caller() -> None:
    cfg = SynthConfig(dim=64, chunk=500)
    a = SyntheticEmbeddings(cfg, seed=1).database(1200)
    b = np.concatenate(list(SyntheticEmbeddings(cfg, seed=1).iter_database(1200)))
    out = np.zeros((1200, 64), np.float32)
    SyntheticEmbeddings(cfg, seed=1).database(1200, out=out)
    assert a.dtype == np.float32 and a.shape == (1200, 64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, out)
    assert [len(c) for c in SyntheticEmbeddings(cfg, seed=1).iter_database(1200)] == [500, 500, 200]
    assert not np.array_equal(a, SyntheticEmbeddings(cfg, seed=2).database(1200))
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_default_distribution_has_about_20_intrinsic_dimensions() -> None:
    gen = SyntheticEmbeddings(SynthConfig(chunk=4000), seed=0)
    x = gen.database(4000).astype(np.float64)
    var = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2
    cum = np.cumsum(var) / var.sum()
    assert x.shape[1] == 256
    assert cum[19] > 0.9  # ~20 directions carry almost everything...
    assert cum[4] < 0.6  # ...but no handful of directions does: not a trivially low-dimensional set


def test_clusters_overlap_even_the_bayes_classifier_errs() -> None:
    gen = SyntheticEmbeddings(SynthConfig(), seed=0)
    rng = np.random.default_rng(0)
    comp = rng.choice(len(gen.weights), size=2000, p=gen.weights)
    z = gen.centres[comp] + rng.standard_normal((2000, gen.config.latent_dim)) * gen.within[comp]
    loglik = (
        -0.5 * (((z[:, None, :] - gen.centres[None]) / gen.within[None]) ** 2).sum(-1)
        - np.log(gen.within).sum(-1)[None]
        + np.log(gen.weights)[None]
    )
    error = np.mean(loglik.argmax(axis=1) != comp)
    assert 0.05 < error < 0.3  # overlapping, yet clustered


def test_queries_are_near_but_not_at_their_source() -> None:
    gen = SyntheticEmbeddings(SynthConfig(dim=128, chunk=2000), seed=0)
    x = gen.database(2000)
    q, src = gen.queries(x, 200, seed=3)
    assert q.shape == (200, 128) and src.shape == (200,)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    cos = np.sum(q * x[src], axis=1)
    assert 0.7 < cos.mean() < 0.95
    q2, src2 = gen.queries(x, 200, seed=3)
    np.testing.assert_array_equal(q, q2)
    np.testing.assert_array_equal(src, src2)


def test_bad_input_is_refused() -> None:
    gen = SyntheticEmbeddings(SynthConfig(dim=16, latent_dim=4, n_clusters=3, hidden=4), seed=0)
    with pytest.raises(BadInputError):
        gen.database(-1)
    with pytest.raises(BadInputError):
        gen.database(10, out=np.zeros((10, 8), np.float32))
    with pytest.raises(BadInputError):
        gen.queries(np.zeros((5, 8), np.float32), 3)
    with pytest.raises(BadInputError):
        SyntheticEmbeddings(SynthConfig(dim=0))
