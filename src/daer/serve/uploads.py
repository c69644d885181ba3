"""Uploads are read in worker processes with a time limit and a memory cap, after a pre-scan of their counts.

A hostile file can cost a parser far more than its size (``f 1 2 3`` is 8 bytes of OBJ and hundreds of
bytes of parser state), hang it, or crash a C extension. So the service reads every upload in a
:class:`~daer.data.timed_pool.TimedPool` worker whose address space is capped (RLIMIT_AS) and whose
task is killed after ``timeout`` seconds; the worker is replaced, the client gets a 4xx, and the server
process never holds the parser's memory. Before any parser runs, :func:`~daer.data.mesh_io.check_mesh_limits`
holds the file to :data:`SERVICE_LIMITS`.

Workers start from a forkserver (not forked from the threaded server). As with any multiprocessing
user, a script that embeds ``create_app`` must guard its top level with ``if __name__ == "__main__":``;
``daer serve`` and uvicorn do.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from pathlib import Path

import numpy as np

from daer.data.mesh_io import BadFileError, MeshLimits, load_points
from daer.data.timed_pool import TaskFailed, TimedPool
from daer.serve.security import RequestRefused, content_problem

log = logging.getLogger("daer.serve")

# Readers run at a lower CPU priority, so that parsing yields the cores to the searches answered meanwhile.
# Measured (benchmarks/RESULTS.md, hostile uploads) it did not bring search p99 beside hostile uploads down
# (3.5-4.6x alone, 3.8x before). Refusing a full house before the multipart parser runs (UploadSlotsMiddleware)
# brought the search p50 there from 106 to 68 ms; p99 stays about 3.1-3.6x. Readers under SCHED_IDLE (they run
# only on a core nothing else wants) left it where it was (p99 314-316 ms against 314, two runs). Nor is it the
# server process's handling of the 20 MB bodies: a py-spy profile of the server during bench_service --hostile
# (a one-off look, not a benchmark) showed multipart parsing and body reads as a small share of its samples.
# The bench's own upload clients, which build and send the bodies on the same two cores, are left to rule out.
READER_NICENESS = 10
# A classify request samples a couple of thousand points: a million triangles is far more than enough.
SERVICE_LIMITS = MeshLimits(max_vertices=2_000_000, max_triangles=1_000_000, max_face_corners=256)
_STATUS = {"too-large": 413, "unsupported": 415}


def read_upload(
    path: str, ext: str, n_points: int, max_bytes: int, limits: MeshLimits, up: str | None = None
) -> np.ndarray:
    """In a worker: check an upload's content and read it as ``(n_points, 3)`` float32 points, +z up."""
    reason = content_problem(Path(path).read_bytes(), ext) if ext in (".glb", ".npz") else None
    if reason:
        raise BadFileError("unsupported", reason)
    points, _ = load_points(path, n_points=n_points, max_bytes=max_bytes, limits=limits, up=up)
    return points


class UploadReader:
    """Reads uploads in ``workers`` processes, each capped at ``memory_mb`` MiB more than it starts with.

    Args:
        workers: processes (uploads read at once; bound the callers to the same number).
        timeout: seconds one upload may take to read.
        memory_mb: address space a worker may add while reading one upload.
        limits: counts a mesh is held to before it is parsed.
    """

    def __init__(
        self, workers: int = 2, timeout: float = 30.0, memory_mb: int = 1024, limits: MeshLimits = SERVICE_LIMITS
    ) -> None:
        start = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        if start == "forkserver":  # workers fork from a small clean process, not from the threaded server
            mp.get_context(start).set_forkserver_preload(["daer.serve.uploads"])
        self.timeout, self.limits = timeout, limits
        self.pool = TimedPool(
            read_upload,
            workers=workers,
            timeout=timeout,
            start_method=start,
            memory_limit=memory_mb << 20,
            niceness=READER_NICENESS,
        )

    def read(self, path: Path, ext: str, n_points: int, max_bytes: int, up: str | None = None) -> np.ndarray:
        """The upload's points (``up``: the file's up axis, None for its format's), or RequestRefused (4xx)
        with a message naming the problem."""
        out = self.pool.run(str(path), ext, n_points, max_bytes, self.limits, up)
        if not isinstance(out, TaskFailed):
            return out
        message = out.reason.replace(path.name, "upload")
        if out.code == "timeout":
            raise RequestRefused(422, f"reading the upload took longer than {self.timeout:g} s; send a simpler file")
        if out.code == "crashed":
            log.warning("upload reader stopped: %s", out.reason)
            raise RequestRefused(422, "reading the upload exceeded the reader's memory limit or crashed it")
        if out.code == "too-large" and not message.startswith("upload"):
            message = f"upload {message}"
        if out.code == "loader-error":
            log.warning("upload reader failed: %s", out.reason)
            raise RequestRefused(422, f"the upload could not be read as {ext[1:].upper()}")
        raise RequestRefused(_STATUS.get(out.code, 422), message)

    def close(self) -> None:
        """Stop the worker processes."""
        self.pool.close()
