"""Thread policy for torch, OpenMP and FAISS in every entry point.

Measured on 2 cores (``python -m benchmarks.bench_embed``): with OpenMP's default *active* waiting a
2-thread job beside one busy core, or beside a second 2-thread job, loses two thirds of its speed,
because each thread spins at every barrier waiting for the one that shares its core. The policy:

- ``OMP_WAIT_POLICY=PASSIVE`` (set when :mod:`daer` is imported, before torch starts OpenMP, unless
  the user set it): waiting threads sleep instead of spinning.
- Threads = ``--threads`` if given, else ``DAER_THREADS``, else the command's own default where it has one
  (``daer serve``: 1 per request), else *auto*: the cores this process may use minus the cores other work
  keeps busy, sampled from ``/proc/stat`` for 0.1 s (at least 1).
- The count reaches torch and FAISS through ``OMP_NUM_THREADS`` when they load later, or directly when
  they are loaded already (torch then also gets one inter-op thread: model work is a chain of ops).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from daer.errors import BadInputError

ENV = "DAER_THREADS"


def available_cores() -> int:
    """Cores this process may run on (affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies summed over all cores, from /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(window_s: float = 0.1) -> float:
    """How many cores other processes keep busy, sampled over ``window_s`` (0 where unknown)."""
    a = _cpu_times()
    time.sleep(window_s)
    b = _cpu_times()
    if a is None or b is None or b[1] <= a[1]:
        return 0.0
    return (os.cpu_count() or 1) * (b[0] - a[0]) / (b[1] - a[1])


def resolve_threads(requested: int | None = None, default: int | None = None) -> int:
    """The thread count to use: ``requested`` (> 0), else ``$DAER_THREADS``, else ``default`` (> 0), else the
    idle cores.

    Raises:
        BadInputError: ``DAER_THREADS`` is set but not a positive integer.
    """
    if requested is not None and requested > 0:
        return int(requested)
    env = os.environ.get(ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise BadInputError(f"{ENV}={env!r}: expected a positive integer")
        return int(env)
    if default is not None and default > 0:
        return int(default)
    cores = available_cores()
    return max(1, min(cores, round(cores - busy_cores())))


def configure_threads(requested: int | None = None, default: int | None = None) -> int:
    """Apply the policy to torch and FAISS; returns the thread count used.

    Neither is imported here (a command that never runs a model should not pay for loading torch):
    ``OMP_NUM_THREADS`` carries the count to whichever loads later, and one already loaded is set
    directly (torch also to one inter-op thread, while that is still allowed).
    """
    n = resolve_threads(requested, default)
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
        with contextlib.suppress(RuntimeError):  # allowed only before the first parallel work
            torch.set_num_interop_threads(1)
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(n)
    return n
