"""Clustered synthetic embeddings for retrieval benchmarks, and text-like queries against them.

The generator is meant to look like the global shape embeddings of a trained model, not like an easy
toy: points on a curved low-dimensional manifold inside a high-dimensional sphere, with clusters of
unequal size and shape that overlap.

Database items (all parameters fixed by the seed):

1. **Latent mixture.** ``n_clusters`` cluster centres ``m_k ~ N(0, centre_std² I)`` in a latent of
   ``latent_dim`` (default 20) dimensions. Cluster weights follow a Zipf law (exponent ``zipf``), so a
   few "categories" are common and many are rare. Each cluster has its own axis-aligned spread, drawn
   uniformly in ``[within_std_min, within_std_max]`` per latent axis. With the defaults a cluster's
   nearest neighbouring centre is typically ≈ 3.6 away while its own radius is ≈ √20·0.9 ≈ 4, so
   clusters overlap: even the Bayes classifier that knows the mixture assigns ≈ 12% of items to the
   wrong component (measured on 5,000 draws), and a query's neighbours spread over several clusters.
2. **Fixed random map to ``dim`` (256) dimensions**, linear plus nonlinear:
   ``h(z) = A z + W₂ tanh(W₁ z + b₁) + c``, with Gaussian ``A`` (dim×latent), ``W₁`` (hidden×latent),
   ``W₂`` (dim×hidden) and a common direction ``c`` (embeddings of real models share a mean direction).
   The map bends the latent into a curved 20-dimensional manifold; its intrinsic dimension stays
   ``latent_dim``. ``h`` is rescaled so a typical item has norm 1.
3. **Ambient noise** of norm about ``ambient_noise`` in all ``dim`` directions (real embeddings are
   full rank), then L2 normalisation onto the unit sphere.

Text-like queries: a database item plus a fixed *modality offset* (the systematic gap between text and
shape embeddings, one random direction of norm ``query_offset``) plus isotropic noise of norm about
``query_noise``, normalised. The query's exact neighbours are therefore near, but not at, its source.

Items are generated in chunks of ``chunk`` rows, each from its own seeded stream, so memory beyond the
output stays bounded and the same ``(seed, n)`` always gives the same array whatever the caller does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from daer.errors import BadInputError


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of the synthetic embedding distribution (see the module docstring)."""

    dim: int = 256  # ambient (embedding) dimension
    latent_dim: int = 20  # intrinsic dimension of the manifold
    n_clusters: int = 1000  # latent mixture components
    centre_std: float = 1.0  # spread of cluster centres in the latent
    within_std_min: float = 0.6  # per-axis cluster spread, lower bound
    within_std_max: float = 1.2  # per-axis cluster spread, upper bound
    zipf: float = 0.8  # cluster weight ∝ rank^-zipf
    hidden: int = 64  # width of the nonlinear part of the map
    nonlinear_gain: float = 1.0  # weight of the tanh branch relative to the linear one
    common: float = 0.5  # norm of the shared mean direction, before rescaling
    ambient_noise: float = 0.05  # norm of the isotropic noise added to each item
    query_offset: float = 0.3  # norm of the fixed text-vs-shape modality offset
    query_noise: float = 0.5  # norm of the per-query isotropic noise
    chunk: int = 65536  # rows generated per seeded chunk


class SyntheticEmbeddings:
    """A fixed random embedding distribution: ``database(n)`` items and ``queries(db, m)`` against them.

    Args:
        config: distribution parameters.
        seed: seed of every random draw (map, clusters, items, queries).
    """

    def __init__(self, config: SynthConfig | None = None, seed: int = 0) -> None:
        self.config = cfg = config or SynthConfig()
        if cfg.dim < 2 or cfg.latent_dim < 1 or cfg.n_clusters < 1 or cfg.chunk < 1:
            raise BadInputError(f"synthetic config: dimensions, clusters and chunk must be positive, got {cfg}")
        self.seed = seed
        rng = np.random.default_rng([seed, 0])
        L, D, H = cfg.latent_dim, cfg.dim, cfg.hidden
        self.centres = rng.normal(0.0, cfg.centre_std, (cfg.n_clusters, L))  # (K, L)
        self.within = rng.uniform(cfg.within_std_min, cfg.within_std_max, (cfg.n_clusters, L))  # (K, L)
        w = np.arange(1, cfg.n_clusters + 1, dtype=np.float64) ** -cfg.zipf
        self.weights = rng.permutation(w / w.sum())  # (K,)
        self.A = rng.normal(0.0, 1.0 / np.sqrt(L), (D, L))
        self.W1 = rng.normal(0.0, 1.0 / np.sqrt(L), (H, L))
        self.b1 = rng.normal(0.0, 0.5, H)
        self.W2 = rng.normal(0.0, cfg.nonlinear_gain / np.sqrt(H), (D, H))
        self.c = _unit(rng.normal(size=D)) * cfg.common
        self.offset = _unit(rng.normal(size=D)) * cfg.query_offset  # (D,)
        pilot = self._map(self._latent(np.random.default_rng([seed, 1]), 4096))
        self.scale = 1.0 / float(np.sqrt(np.mean(np.sum(pilot**2, axis=1))))

    def _latent(self, rng: np.random.Generator, n: int) -> np.ndarray:
        comp = rng.choice(len(self.weights), size=n, p=self.weights)
        return self.centres[comp] + rng.standard_normal((n, self.config.latent_dim)) * self.within[comp]  # (n, L)

    def _map(self, z: np.ndarray) -> np.ndarray:
        return z @ self.A.T + np.tanh(z @ self.W1.T + self.b1) @ self.W2.T + self.c  # (n, D)

    def _chunk(self, index: int, rows: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2, index])
        h = self._map(self._latent(rng, rows)) * self.scale
        h += rng.standard_normal(h.shape) * (self.config.ambient_noise / np.sqrt(self.config.dim))
        return _normalise(h)

    def iter_database(self, n: int) -> Iterator[np.ndarray]:
        """Yield the first ``n`` database items as float32 chunks of at most ``config.chunk`` rows."""
        if n < 0:
            raise BadInputError(f"synthetic database size must be >= 0, got {n}")
        size = self.config.chunk
        for index, start in enumerate(range(0, n, size)):
            yield self._chunk(index, min(size, n - start))

    def database(self, n: int, out: np.ndarray | None = None) -> np.ndarray:
        """The first ``n`` items, (n, dim) float32, unit norm; written into ``out`` (e.g. a memmap) if given."""
        if n < 0:
            raise BadInputError(f"synthetic database size must be >= 0, got {n}")
        if out is None:
            out = np.empty((n, self.config.dim), dtype=np.float32)
        elif out.shape != (n, self.config.dim):
            raise BadInputError(f"synthetic database: out has shape {out.shape}, expected {(n, self.config.dim)}")
        start = 0
        for block in self.iter_database(n):
            out[start : start + len(block)] = block
            start += len(block)
        return out

    def queries(self, db: np.ndarray, m: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``m`` text-like queries: a random item of ``db`` + modality offset + noise, normalised.

        Returns:
            (queries (m, dim) float32, source row of each query (m,) int64).
        """
        if db.ndim != 2 or db.shape[1] != self.config.dim or len(db) == 0:
            raise BadInputError(f"synthetic queries: db must be (n>0, {self.config.dim}), got {db.shape}")
        rng = np.random.default_rng([self.seed, 3, seed])
        src = rng.integers(0, len(db), size=m).astype(np.int64)
        noise = rng.standard_normal((m, self.config.dim)) * (self.config.query_noise / np.sqrt(self.config.dim))
        return _normalise(db[src].astype(np.float64) + self.offset + noise), src


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
