"""A pool of worker processes in which every task has a time limit: a hung or crashed task costs only itself."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import signal
import sys
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


def _worker_main(conn: Connection, fn: Callable[..., Any], fn_args: tuple) -> None:
    """Worker loop: run ``fn(*fn_args, *task)`` for each task received; bad input comes back as TaskFailed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills its workers
    logging.disable(logging.CRITICAL)  # trimesh's complaints about hostile files; the reason is sent back
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
        except Exception as e:
            out = (idx, TaskFailed("loader-error", f"{type(e).__name__}: {e}"))
        try:
            conn.send(out)
        except (BrokenPipeError, EOFError):
            return
        except Exception as e:  # a result that cannot be pickled
            conn.send((idx, TaskFailed("loader-error", f"result cannot be sent back: {e}")))


@dataclass
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
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *fn_args: Any,
        workers: int = 1,
        timeout: float | None = 30.0,
        start_method: str | None = None,
    ) -> None:
        if workers < 1:
            raise BadInputError(f"workers must be >= 1, got {workers}")
        if timeout is not None and timeout <= 0:
            raise BadInputError(f"timeout must be > 0 seconds, got {timeout}")
        methods = mp.get_all_start_methods()
        self._ctx = mp.get_context(start_method or ("fork" if "fork" in methods else "spawn"))
        self._fn, self._fn_args = fn, fn_args
        self.workers, self.timeout = workers, timeout
        self._idle: list[_Worker] = []
        self._busy: dict[Connection, _Worker] = {}

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(child, self._fn, self._fn_args), daemon=True)
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

    def close(self) -> None:
        """Stop idle workers politely and kill busy ones."""
        for w in self._idle:
            with contextlib.suppress(BrokenPipeError, OSError):
                w.conn.send(None)
            w.proc.join(1)
            self._kill(w)
        for w in self._busy.values():
            self._kill(w)
        self._idle, self._busy = [], {}

    def __enter__(self) -> TimedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
