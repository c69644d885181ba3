"""Bounded load over loopback: 50 concurrent clients x 20 requests each, no errors.

The same code as ``python -m benchmarks.bench_service`` (which writes p50/p99 to RESULTS.md); here
only the zero-error outcome and the bookkeeping are asserted, since latencies on a shared 2-core
machine are not a pass/fail matter.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from benchmarks.bench_service import MIX, run_load, section, serve_process

from daer.data.shards import iter_records


def test_fifty_clients_twenty_requests_no_errors(stack: dict[str, Path]) -> None:
    """``daer serve --index`` in its own process on 127.0.0.1, hit by 50 concurrent clients."""
    records = list(iter_records(stack["data"], columns=["captions"]))
    ids = [r.id for r in records]
    queries = [r.captions[0] for r in records]
    with serve_process(stack["index"]) as base:
        health = httpx.get(base + "/healthz").json()
        assert health["method"] == "ers" and health["shapes"] == len(ids)
        result = run_load(base, queries, ids, clients=50, per_client=20)
    assert result.errors == [], result.errors[:5]
    assert result.total == 1000
    assert set(result.latencies) == {k for k, _ in MIX}
    p50, p99, worst = result.percentiles()
    assert 0 < p50 <= p99 <= worst
    md = section(result, render_rate=25.0, render_points_n=256, setting="test")
    assert "**0 errors**" in md and "| search |" in md
