"""A pool of worker processes in which every task has a time limit: a hung or crashed task costs only itself."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from tqdm import tqdm

from daer.data.mesh_io import BadFileError
from daer.errors import BadInputError


@dataclass(frozen=True)
class TaskFailed:
    """A task that raised, timed out or killed its worker."""

    code: str
    reason: str


def _limit_memory(extra_bytes: int) -> None:
    """Cap this process's address space at its present size plus ``extra_bytes`` (Linux; a no-op elsewhere).

    The cap is relative so that whatever the process inherited or imported is not counted against the task.
    """
    try:
        import resource

        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = size + extra_bytes
        resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
    except (ImportError, OSError, ValueError):
        pass


def _worker_main(
    conn: Connection, fn: Callable[..., Any], fn_args: tuple, memory_limit: int | None = None, niceness: int = 0
) -> None:
    """Worker loop: run ``fn(*fn_args, *task)`` for each task received; bad input comes back as TaskFailed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills its workers
    if niceness > 0 and hasattr(os, "nice"):
        os.nice(niceness)
    logging.disable(logging.CRITICAL)  # trimesh's complaints about hostile files; the reason is sent back
    if memory_limit is not None:
        _limit_memory(memory_limit)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        idx, args = msg
        try:
            out = (idx, fn(*fn_args, *args))
        except BadFileError as e:
            out = (idx, TaskFailed(e.code, str(e)))
        except BadInputError as e:
            out = (idx, TaskFailed("bad-input", str(e)))
        except MemoryError:
            allowed = f"the {memory_limit >> 20} MiB of memory allowed" if memory_limit else "the memory available"
            out = (idx, TaskFailed("too-large", f"needs more than {allowed}"))
        except Exception as e:
            out = (idx, TaskFailed("loader-error", f"{type(e).__name__}: {e}"))
        try:
            conn.send(out)
        except (BrokenPipeError, EOFError):
            return
        except Exception as e:  # a result that cannot be pickled
            conn.send((idx, TaskFailed("loader-error", f"result cannot be sent back: {e}")))


@dataclass(eq=False)
class _Worker:
    proc: Any
    conn: Connection
    idx: int = -1
    deadline: float = 0.0


class TimedPool:
    """Worker processes that run one task each at a time and are killed when a task overruns its limit.

    Unlike ``concurrent.futures``, a hung or crashed task costs only its own result: the worker is
    killed and replaced, and the task is reported as :class:`TaskFailed` ("timeout" or "crashed").

    Args:
        fn: module-level function run as ``fn(*fn_args, *task)``.
        *fn_args: leading arguments fixed for every task.
        workers: processes.
        timeout: seconds per task (None: no limit).
        start_method: multiprocessing start method (default "fork" where available: no re-imports).
        memory_limit: bytes of address space each worker may add to what it starts with (Linux
            RLIMIT_AS); a task over it fails with "too-large" (a MemoryError) or "crashed".
        niceness: added to the workers' nice value (POSIX), so that their tasks yield the CPU to the parent.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *fn_args: Any,
        workers: int = 1,
        timeout: float | None = 30.0,
        start_method: str | None = None,
        memory_limit: int | None = None,
        niceness: int = 0,
    ) -> None:
        if workers < 1:
            raise BadInputError(f"workers must be >= 1, got {workers}")
        if timeout is not None and timeout <= 0:
            raise BadInputError(f"timeout must be > 0 seconds, got {timeout}")
        methods = mp.get_all_start_methods()
        self._ctx = mp.get_context(start_method or ("fork" if "fork" in methods else "spawn"))
        self._fn, self._fn_args = fn, fn_args
        self.workers, self.timeout, self.memory_limit, self.niceness = workers, timeout, memory_limit, niceness
        self._idle: list[_Worker] = []
        self._busy: dict[Connection, _Worker] = {}
        self._lock = threading.Lock()  # guards _idle and _running for run() from several threads
        self._running: set[_Worker] = set()

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self._fn, self._fn_args, self.memory_limit, self.niceness), daemon=True
        )
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _submit(self, idx: int, args: tuple) -> None:
        w = self._idle.pop() if self._idle else self._start()
        try:
            w.conn.send((idx, args))
        except (BrokenPipeError, OSError):  # an idle worker died: replace it once
            self._kill(w)
            w = self._start()
            w.conn.send((idx, args))
        w.idx = idx
        w.deadline = time.monotonic() + self.timeout if self.timeout is not None else float("inf")
        self._busy[w.conn] = w

    @staticmethod
    def _kill(w: _Worker) -> None:
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(5)
        w.conn.close()

    def map_ordered(
        self, tasks: Iterable[tuple], total: int | None = None, progress: bool = False
    ) -> Iterator[Any | TaskFailed]:
        """Run every task; yield results (or TaskFailed) in task order, whatever order they finish in."""
        it = enumerate(tasks)
        done: dict[int, Any] = {}
        next_out, exhausted = 0, False
        bar = tqdm(total=total, disable=not progress, desc="import", unit="file", file=sys.stderr, leave=False)
        try:
            while True:
                while not exhausted and len(self._busy) < self.workers:
                    item = next(it, None)
                    if item is None:
                        exhausted = True
                    else:
                        self._submit(*item)
                if not self._busy:
                    break
                soonest = min(w.deadline for w in self._busy.values())
                wait_s = None if soonest == float("inf") else max(0.0, soonest - time.monotonic())
                for conn in wait(list(self._busy), timeout=wait_s):
                    w = self._busy.pop(conn)
                    try:
                        idx, result = conn.recv()
                        done[idx] = result
                        self._idle.append(w)
                    except (EOFError, OSError):
                        w.proc.join(5)
                        done[w.idx] = TaskFailed("crashed", f"loader process died (exit code {w.proc.exitcode})")
                        self._kill(w)
                    bar.update()
                now = time.monotonic()
                for conn, w in list(self._busy.items()):
                    if w.deadline <= now:
                        del self._busy[conn]
                        self._kill(w)
                        done[w.idx] = TaskFailed("timeout", f"took longer than {self.timeout:g} s (loader stopped)")
                        bar.update()
                while next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
        finally:
            bar.close()

    def run(self, *task: Any) -> Any | TaskFailed:
        """Run one task and return its result or TaskFailed; safe to call from several threads at once.

        Each call takes an idle worker (or starts one), so at most as many run at once as there are
        callers: bound those (e.g. with a semaphore). A worker that overruns ``timeout`` or dies is
        killed and not reused.
        """
        with self._lock:
            w = self._idle.pop() if self._idle else None
        if w is None:
            w = self._start()
        try:
            w.conn.send((0, task))
        except (BrokenPipeError, OSError):  # an idle worker died: replace it once
            self._kill(w)
            w = self._start()
            w.conn.send((0, task))
        with self._lock:
            self._running.add(w)
        try:
            try:
                ready = w.conn.poll(self.timeout)
            except (OSError, ValueError):  # closed under us by close()
                return TaskFailed("crashed", "the pool was closed")
            if not ready:
                self._kill(w)
                return TaskFailed("timeout", f"took longer than {self.timeout:g} s (stopped)")
            try:
                _, result = w.conn.recv()
            except (EOFError, OSError):
                w.proc.join(5)
                code = w.proc.exitcode
                self._kill(w)
                return TaskFailed("crashed", f"worker process died (exit code {code})")
        finally:
            with self._lock:
                self._running.discard(w)
        with self._lock:
            self._idle.append(w)
        return result

    def close(self) -> None:
        """Stop idle workers politely and kill busy ones."""
        for w in self._idle:
            with contextlib.suppress(BrokenPipeError, OSError):
                w.conn.send(None)
            w.proc.join(1)
            self._kill(w)
        with self._lock:
            busy = [*self._busy.values(), *self._running]
            self._idle, self._busy, self._running = [], {}, set()
        for w in busy:
            self._kill(w)

    def __enter__(self) -> TimedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
