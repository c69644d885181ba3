"""Retrieval benchmark: JSON contract at tiny n, Pareto and operating-point selection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from daer.cli import main
from daer.errors import BadInputError
from daer.retrieval.bench import BenchConfig, operating_point, pareto, recall_at, run_retrieval_bench
from daer.retrieval.scann_index import scann_available


def test_cli_json_keys_at_tiny_n(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "retrieval", "--n", "1500", "--dim", "32", "--queries", "40", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {"n", "dim", "methods"} <= set(out) and out["n"] == 1500 and out["dim"] == 32
    peers = ["scann"] if scann_available() else []  # an optional peer, skipped where not installed
    assert [m["name"] for m in out["methods"]] == ["exact", "ers", "ivf", "hnsw", *peers]
    for m in out["methods"]:
        assert {"name", "recall_at_10", "qps_single", "qps_batch", "build_s", "bytes_per_vector"} <= set(m)
        assert 0.0 <= m["recall_at_10"] <= 1.0 and m["qps_single"] > 0 and m["qps_batch"] > 0
    assert out["methods"][0]["recall_at_10"] == 1.0
    for name in ("ers", "ivf", "hnsw", *peers):
        assert any(p["pareto"] for p in out["sweeps"][name])


def test_table_output_and_bad_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "retrieval", "--n", "800", "--dim", "16", "--queries", "20", "--methods", "exact,ers"]) == 0
    text = capsys.readouterr().out
    assert "recall@10" in text and "ers" in text
    with pytest.raises(BadInputError):
        run_retrieval_bench(BenchConfig(n=100, dim=8, queries=5, methods=("exact", "lsh")))


def test_pareto_and_operating_point() -> None:
    pts = [
        {"recall_at_10": 0.90, "qps_single": 900.0},
        {"recall_at_10": 0.95, "qps_single": 500.0},
        {"recall_at_10": 0.94, "qps_single": 400.0},  # dominated
        {"recall_at_10": 0.99, "qps_single": 100.0},
    ]
    assert [p["recall_at_10"] for p in pareto(pts)] == [0.90, 0.95, 0.99]
    assert operating_point(pts, 0.95)["qps_single"] == 500.0
    assert operating_point(pts, 0.999)["recall_at_10"] == 0.99  # none reaches it: the most accurate


def test_recall_at_ignores_padding() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, -1], [5, 6, 7, 8]])
    assert recall_at(found, truth) == pytest.approx((2 / 4 + 1) / 2)


def test_ers_codes_add_methods_beside_the_main_ers() -> None:
    cfg = BenchConfig(n=1500, dim=32, queries=30, methods=("exact", "ers"), ers_codes=("pq4fs",), repeats=1)
    cfg.single_queries = cfg.exact_single_queries = 5
    out = run_retrieval_bench(cfg)
    by = {m["name"]: m for m in out["methods"]}
    assert list(by) == ["exact", "ers", "ers-pq4fs"]
    assert by["ers"]["params"]["codes"] == "sq8" and by["ers-pq4fs"]["params"]["codes"] == "pq4fs"
    assert by["ers-pq4fs"]["params"]["pq_m"] == 16 and by["ers-pq4fs"]["recall_at_10"] > 0.9
    assert {p["params"]["candidates"] for p in out["sweeps"]["ers-pq4fs"]} == set(cfg.pq4fs_reorders)
    assert by["ers-pq4fs"]["bytes_per_vector"] < by["ers"]["bytes_per_vector"]  # 16 code bytes instead of 32
    with pytest.raises(BadInputError, match="leaf codes"):
        run_retrieval_bench(BenchConfig(n=100, dim=8, queries=5, ers_codes=("pq",)))
