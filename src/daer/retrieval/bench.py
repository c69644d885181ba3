"""Retrieval benchmark: exact, ERS, IVF, HNSW and ScaNN on the same synthetic embeddings, in the same run.

``ers_codes`` adds ERS indexes with other leaf codes (e.g. ``pq4fs``, ``flat``), built with the same settings
otherwise and reported as methods ``ers-<codes>`` beside the main ``ers`` (whose codes ``ers`` sets).

For every approximate method the search knobs are swept (ERS: beam × n_probe, for pq4fs leaves also
the candidates re-scored exactly; IVF: nprobe; HNSW: efSearch; ScaNN: leaves searched × candidates
re-scored exactly) in order of increasing cost, as FAISS's ``OperatingPoints`` does, and the Pareto
frontier of recall@k against single-query throughput is kept.
Each method is then reported at its *operating point*: the fastest swept setting whose recall reaches
``target_recall`` (or its most accurate setting if none does), so methods are compared at (nearly) equal
recall rather than at arbitrary settings. ScaNN is optional: where it is not installed it is skipped, with
a logged message.

Measurements:

- ``recall_at_10``: mean fraction of the exact top-k (FAISS flat inner product) found, over all queries.
- ``qps_single``: one query per call over ``single_queries`` queries; the median of ``repeats`` runs,
  with all FAISS threads and with one, whichever is faster (see :func:`time_single_best`).
- ``qps_batch``: all queries (1,000 by default) in one call; the median of ``repeats`` runs (ScaNN
  searches a batch on its own pool of the same number of threads as FAISS).
- ``build_s``: wall-clock seconds from embeddings to a searchable index.
- ``bytes_per_vector``: memory the index holds per item (see each index's ``bytes_per_vector``).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np

from daer.errors import BadInputError
from daer.retrieval.baselines import ExactIndex, HNSWIndex, IVFIndex
from daer.retrieval.ers import ERSIndex
from daer.retrieval.leaf_codes import CODES as ERS_CODES
from daer.retrieval.leaf_codes import PQ4FS
from daer.retrieval.scann_index import ScaNNIndex, scann_available
from daer.retrieval.synthetic import SynthConfig, SyntheticEmbeddings
from daer.utils.threads import resolve_threads

METHODS = ("exact", "ers", "ivf", "hnsw", "scann")


@dataclass
class BenchConfig:
    """Sizes, settings and sweep grids of one retrieval benchmark run."""

    n: int = 1_000_000
    dim: int = 256
    queries: int = 1000
    k: int = 10
    target_recall: float = 0.98
    seed: int = 0
    threads: int = 0  # FAISS / BLAS threads; 0 = daer's thread policy (daer.utils.threads)
    single_queries: int = 200  # queries timed one per call
    exact_single_queries: int = 20  # exact search is slow: fewer single-query calls
    repeats: int = 3
    stop_recall: float = 0.998  # a sweep stops once it reaches this recall
    methods: tuple[str, ...] = METHODS
    ers: dict[str, Any] = field(default_factory=lambda: {"codes": "sq8", "depth": 2, "leaf_size": 64, "spill": 2})
    ers_codes: tuple[str, ...] = ()  # further ERS leaf codes, each measured as method "ers-<codes>"
    ers_beams: tuple[int, ...] = (8, 16, 32)
    pq4fs_reorders: tuple[int, ...] = (128, 256)  # candidates re-scored exactly, swept for pq4fs leaves
    n_probes: tuple[int, ...] = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
    ivf: dict[str, Any] = field(default_factory=lambda: {"codes": "flat"})
    hnsw: dict[str, Any] = field(default_factory=lambda: {"m": 32, "ef_construction": 40})
    ef_searches: tuple[int, ...] = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)
    scann: dict[str, Any] = field(default_factory=lambda: {"num_leaves": 0, "reorder": 100})  # 0 leaves → 2·√n
    scann_leaves: tuple[int, ...] = (10, 20, 40, 80, 160)  # leaves_to_search
    scann_reorders: tuple[int, ...] = (50, 100, 250)  # pre_reorder_num_neighbors (raised to k where below it)


def make_data(cfg: BenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """Database (n, dim) and text-like queries (queries, dim) of the synthetic distribution."""
    gen = SyntheticEmbeddings(SynthConfig(dim=cfg.dim), seed=cfg.seed)
    x = gen.database(cfg.n)
    q, _ = gen.queries(x, cfg.queries, seed=cfg.seed + 1)
    return x, q


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` present in the same row of ``found``."""
    k = truth.shape[1]
    hits = (found[:, :, None] == truth[:, None, :]) & (truth[:, None, :] >= 0)
    return float(hits.any(axis=1).sum() / (len(truth) * k))


def time_single(search: Callable[[np.ndarray], Any], queries: np.ndarray, repeats: int) -> float:
    """Queries per second with one query per call: the median over ``repeats`` passes."""
    search(queries[:1])  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(len(queries)):
            search(queries[i : i + 1])
        rates.append(len(queries) / (time.perf_counter() - t0))
    return float(statistics.median(rates))


def time_single_best(search: Callable[[np.ndarray], Any], queries: np.ndarray, repeats: int, threads: int) -> float:
    """:func:`time_single` with all FAISS threads and with one, the faster: on a shared machine extra
    OpenMP threads can slow one small call down, and no method should be judged by a bad thread count."""
    rates = []
    for t in sorted({threads, 1}):
        faiss.omp_set_num_threads(t)
        try:
            rates.append(time_single(search, queries, repeats))
        finally:
            faiss.omp_set_num_threads(threads)
    return max(rates)


def time_batch(search: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], queries: np.ndarray, repeats: int):
    """(queries per second with all queries in one call, median over ``repeats``; ids of the last call)."""
    rates, ids = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, ids = search(queries)
        rates.append(len(queries) / (time.perf_counter() - t0))
    return float(statistics.median(rates)), ids


def pareto(points: list[dict[str, Any]], speed: str = "qps_single") -> list[dict[str, Any]]:
    """Points not dominated in (recall, speed), sorted by recall."""
    front = []
    for p in sorted(points, key=lambda p: (-p["recall_at_10"], -p[speed])):
        if not front or p[speed] > front[-1][speed]:
            front.append(p)
    return sorted(front, key=lambda p: p["recall_at_10"])


def operating_point(points: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Fastest single-query point reaching ``target`` recall, else the most accurate point."""
    ok = [p for p in points if p["recall_at_10"] >= target]
    if ok:
        return max(ok, key=lambda p: p["qps_single"])
    return max(points, key=lambda p: (p["recall_at_10"], p["qps_single"]))


def _measure(
    search: Callable[..., tuple[np.ndarray, np.ndarray]],
    params: dict[str, Any],
    q: np.ndarray,
    truth: np.ndarray,
    cfg: BenchConfig,
) -> dict[str, Any]:
    qps_batch, ids = time_batch(lambda x: search(x, cfg.k, **params), q, cfg.repeats)
    rec = recall_at(ids, truth)
    single = q[: cfg.single_queries]
    qps_single = time_single_best(lambda x: search(x, cfg.k, **params), single, cfg.repeats, _threads(cfg))
    return {"params": dict(params), "recall_at_10": rec, "qps_single": qps_single, "qps_batch": qps_batch}


def sweep(
    search: Callable[..., tuple[np.ndarray, np.ndarray]],
    grid: Iterable[Iterable[dict[str, Any]]],
    q: np.ndarray,
    truth: np.ndarray,
    cfg: BenchConfig,
    log: Callable[[str], None] = lambda s: None,
) -> list[dict[str, Any]]:
    """Measure every setting of each chain in ``grid`` (settings in increasing cost), stopping a chain
    once its recall reaches ``cfg.stop_recall`` (more cost cannot buy a better operating point)."""
    points = []
    for chain in grid:
        for params in chain:
            p = _measure(search, params, q, truth, cfg)
            points.append(p)
            log(
                f"  {params} recall={p['recall_at_10']:.4f} single={p['qps_single']:.0f}/s batch={p['qps_batch']:.0f}/s"
            )
            if p["recall_at_10"] >= cfg.stop_recall:
                break
    return points


def build_method(name: str, x: np.ndarray, cfg: BenchConfig) -> Any:
    """Build one method's index with the benchmark's settings."""
    if name == "exact":
        return ExactIndex.build(x)
    if name == "ers" or name.startswith("ers-"):
        settings = dict(cfg.ers)
        if name != "ers":
            settings["codes"] = name.removeprefix("ers-")
        leaf_size = settings.pop("leaf_size", 64)
        settings.setdefault("n_leaves", max(1, len(x) // leaf_size))
        return ERSIndex.build(x, seed=cfg.seed, **settings)
    if name == "ivf":
        return IVFIndex.build(x, seed=cfg.seed, **cfg.ivf)
    if name == "hnsw":
        return HNSWIndex.build(x, **cfg.hnsw)
    if name == "scann":
        return ScaNNIndex.build(x, threads=_threads(cfg), **cfg.scann)
    raise BadInputError(f"unknown retrieval method {name!r} (known: {', '.join(METHODS)})")


def method_grid(name: str, index: Any, cfg: BenchConfig) -> list[list[dict[str, Any]]]:
    """Sweep chains of one method, each in increasing cost."""
    if isinstance(index, ERSIndex):
        leaves = index.tree.n_leaves
        # pq4fs: how many candidates the exact reorder needs is measured, not guessed (search's ``candidates``)
        extra = [{"candidates": c} for c in cfg.pq4fs_reorders] if index.config.codes == PQ4FS else [{}]
        return [
            [{"beam": b, "n_probe": p, **e} for p in cfg.n_probes if p <= leaves] for b in cfg.ers_beams for e in extra
        ]
    if name == "ivf":
        nlist = index.settings["nlist"]
        return [[{"nprobe": p} for p in cfg.n_probes if p <= nlist]]
    if name == "hnsw":
        return [[{"ef_search": e} for e in cfg.ef_searches]]
    if name == "scann":
        nl = index.settings["num_leaves"]
        leaves = [s for s in cfg.scann_leaves if s <= nl] or [nl]
        reorders = sorted({max(r, cfg.k) for r in cfg.scann_reorders})
        return [[{"leaves_to_search": s, "pre_reorder_num_neighbors": r} for s in leaves] for r in reorders]
    return [[{}]]


def run_retrieval_bench(
    cfg: BenchConfig,
    log: Callable[[str], None] = lambda s: None,
    on_index: Callable[[str, Any, dict[str, Any], np.ndarray, np.ndarray], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns ``{"n", "dim", "methods": [...], ...}`` (see the module docstring).

    Args:
        cfg: sizes, settings and sweep grids.
        log: progress sink.
        on_index: called as ``on_index(name, index, entry, queries, truth)`` after each approximate method
            is measured, while its index is still alive (for ablations on the same index).
    """
    for m in cfg.methods:
        if m not in METHODS:
            raise BadInputError(f"unknown retrieval method {m!r} (known: {', '.join(METHODS)})")
    for c in cfg.ers_codes:
        if c not in ERS_CODES:
            raise BadInputError(f"unknown ERS leaf codes {c!r} (known: {', '.join(ERS_CODES)})")
    runs = [r for m in cfg.methods for r in ([m, *(f"ers-{c}" for c in cfg.ers_codes)] if m == "ers" else [m])]
    if len(set(runs)) != len(runs):
        raise BadInputError(f"bench: methods and ers_codes name a method twice: {runs}")
    if cfg.n < 1 or cfg.queries < 1 or cfg.k < 1:
        raise BadInputError(f"bench: n, queries and k must be >= 1, got n={cfg.n} queries={cfg.queries} k={cfg.k}")
    threads = _threads(cfg)
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    x, q = make_data(cfg)
    log(f"data: n={cfg.n} dim={cfg.dim} queries={cfg.queries} ({time.perf_counter() - t0:.1f} s)")
    exact_entry, truth = _exact(cfg, x, q, log)
    results = [exact_entry] if "exact" in cfg.methods else []
    sweeps: dict[str, list[dict[str, Any]]] = {}
    for name in runs:
        if name == "exact":
            continue
        if name == "scann" and not scann_available():
            log("scann: skipped, ScaNN is not installed (pip install 'daer[scann]')")
            continue
        t0 = time.perf_counter()
        index = build_method(name, x, cfg)
        build_s = time.perf_counter() - t0
        log(f"{name}: built in {build_s:.1f} s")
        points = sweep(index.search, method_grid(name, index, cfg), q, truth, cfg, log)
        best = operating_point(points, cfg.target_recall)
        front = pareto(points)
        for p in points:
            p["pareto"] = p in front
        sweeps[name] = points
        results.append(
            _entry(
                name, best["recall_at_10"], best["qps_single"], best["qps_batch"], build_s,
                index.bytes_per_vector(), {**_settings(name, index), **best["params"]},
            )
        )  # fmt: skip
        if on_index is not None:
            on_index(name, index, results[-1], q, truth)
        del index
        gc.collect()
    return {
        "n": cfg.n,
        "dim": cfg.dim,
        "queries": cfg.queries,
        "k": cfg.k,
        "target_recall": cfg.target_recall,
        "threads": threads,
        "methods": results,
        "sweeps": sweeps,
        "config": asdict(cfg),
    }


def _exact(
    cfg: BenchConfig, x: np.ndarray, q: np.ndarray, log: Callable[[str], None]
) -> tuple[dict[str, Any], np.ndarray]:
    """Exact search: the ground truth ids and, measured on the same index, the exact method's entry."""
    t0 = time.perf_counter()
    exact = ExactIndex.build(x)
    build_s = time.perf_counter() - t0
    qps_batch, truth = time_batch(lambda z: exact.search(z, cfg.k), q, 1)
    qps_single = 0.0
    if "exact" in cfg.methods:
        single = q[: cfg.exact_single_queries]
        qps_single = time_single_best(lambda z: exact.search(z, cfg.k), single, cfg.repeats, _threads(cfg))
        log(f"exact: single={qps_single:.1f}/s batch={qps_batch:.0f}/s build={build_s:.1f}s")
    return _entry("exact", 1.0, qps_single, qps_batch, build_s, exact.bytes_per_vector(), {}), truth


def _threads(cfg: BenchConfig) -> int:
    return cfg.threads or resolve_threads()


def _settings(name: str, index: Any) -> dict[str, Any]:
    if isinstance(index, ERSIndex):
        c = index.config
        out = {"codes": c.codes, "refine": c.refine, "depth": c.depth, "n_leaves": index.tree.n_leaves}
        return {**out, "pq_m": c.pq_m, "reorder": c.reorder or "auto"} if c.codes == PQ4FS else out
    return dict(getattr(index, "settings", {}))


def _entry(
    name: str, rec: float, qps_single: float, qps_batch: float, build_s: float, bpv: float, params: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "recall_at_10": round(rec, 4),
        "qps_single": round(qps_single, 1),
        "qps_batch": round(qps_batch, 1),
        "build_s": round(build_s, 2),
        "bytes_per_vector": round(bpv, 1),
        "params": params,
    }


def success_ablation(
    index: ERSIndex,
    train_queries: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    params: dict[str, Any],
    betas: Iterable[float] = (0.0, 0.01, 0.03, 0.1),
    explores: Iterable[float] = (0.01, 0.03),
    k: int = 10,
) -> list[dict[str, Any]]:
    """Success-rate and exploration terms on and off, at fixed beam / n_probe.

    Statistics are learned from ``train_queries`` (served with β = c = 0, so they record plain descent),
    then frozen; every setting is measured on the held-out ``queries``. The index is left as found
    (statistics cleared, β = c = 0).
    """
    index.reset_stats()
    index.set_weights(0.0, 0.0)
    index.set_learning(True)
    for s in range(0, len(train_queries), 1000):
        index.search(train_queries[s : s + 1000], k, **params)
    index.set_learning(False)
    rows = []
    settings = [(b, 0.0) for b in betas] + [(0.0, c) for c in explores]
    for beta, explore in settings:
        index.set_weights(beta, explore)
        qps, ids = time_batch(lambda x: index.search(x, k, **params), queries, 1)
        rows.append({"beta": beta, "explore": explore, "recall_at_10": recall_at(ids, truth), "qps_batch": qps})
    index.reset_stats()
    index.set_weights(0.0, 0.0)
    return rows
