"""TimedPool: ordered results, killed and replaced workers, worker priority."""

from __future__ import annotations

import os
import time

from daer.data.timed_pool import TaskFailed, TimedPool


def _sleep_then_return(x: float) -> float:
    time.sleep(x)
    return x


def test_pool_keeps_task_order_and_replaces_killed_workers():
    tasks = [(0.3,), (0.01,), (5.0,), (0.02,), (0.0,)]
    with TimedPool(_sleep_then_return, workers=2, timeout=1.5) as pool:
        out = list(pool.map_ordered(tasks))
    assert out[:2] == [0.3, 0.01] and out[3:] == [0.02, 0.0]
    assert isinstance(out[2], TaskFailed) and out[2].code == "timeout"


def _own_niceness() -> int:
    return os.nice(0)


def test_pool_workers_run_at_the_given_niceness():
    base = os.nice(0)
    with TimedPool(_own_niceness, workers=1, niceness=7) as pool:
        assert list(pool.map_ordered([()])) == [min(base + 7, 19)]
    with TimedPool(_own_niceness, workers=1) as pool:
        assert list(pool.map_ordered([()])) == [base]
