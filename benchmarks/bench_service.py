"""Search service under load: latency percentiles over loopback, thumbnail render rate, hostile uploads.

Run: ``python -m benchmarks.bench_service [--index INDEX] [--clients 50] [--requests 20] [--hostile]``.
Without ``--index`` it builds a small Align3D-Synth set, a tiny model and an ERS index in a temporary
folder first. The service runs as ``daer serve`` in its own process on 127.0.0.1; ``clients``
concurrent clients (asyncio + httpx, one keep-alive connection each) send ``requests`` requests each,
a fixed mix of search (50%), render (30%), shape metadata (10%) and explanation JSON (10%). Every
non-2xx answer or transport failure counts as an error. Latency is per request, client side.
The thumbnail rate is cold renders (256 px PNG, no cache) of distinct shapes in one process.

``--hostile`` adds the mixed load of issue 17 (row 5): 4 clients x 50 searches alone, then the same
searches while 4 other clients send 25 hostile 20 MB OBJ uploads each (a 10.5M-corner face, 2.3M
mixed faces, 2.6M triangles on 3 vertices); it reports search p99 in both runs, how the uploads were
answered (each must be a 4xx; a 5xx or a dropped connection is an error) and the peak RSS of the
server's process tree, sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.report import git_sha, machine_line, publish

RENDER_GOAL = 20.0  # thumbnails per second on 2 cores
MIX = (("search", 0.5), ("render", 0.3), ("shape", 0.1), ("explain", 0.1))


@dataclass
class LoadResult:
    """Per-request outcomes of one load run."""

    clients: int
    per_client: int
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)  # kind -> ms
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def percentiles(self, kind: str | None = None) -> tuple[float, float, float]:
        """(p50, p99, max) in ms over one kind of request or all of them."""
        values = self.latencies.get(kind, []) if kind else [x for v in self.latencies.values() for x in v]
        if not values:
            return (float("nan"),) * 3
        a = np.asarray(values)
        return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def plan(
    queries: list[str], ids: list[str], clients: int, per_client: int, seed: int = 0
) -> list[list[tuple[str, str]]]:
    """The (kind, path) each client sends, in order: a seeded draw from ``MIX``."""
    rng = np.random.default_rng(seed)
    kinds = [k for k, _ in MIX]
    probs = np.array([p for _, p in MIX])
    out = []
    for _ in range(clients):
        reqs = []
        for kind in rng.choice(kinds, size=per_client, p=probs / probs.sum()):
            q, sid = queries[rng.integers(len(queries))], ids[rng.integers(len(ids))]
            path = {
                "search": "/api/search?" + str(httpx.QueryParams({"q": q, "k": 10})),
                "render": f"/api/shapes/{sid}/render.png",
                "shape": f"/api/shapes/{sid}",
                "explain": "/api/explain?" + str(httpx.QueryParams({"q": q, "id": sid, "format": "json"})),
            }[str(kind)]
            reqs.append((str(kind), path))
        out.append(reqs)
    return out


async def _client(base: str, reqs: list[tuple[str, str]], result: LoadResult, timeout: float) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
        for kind, path in reqs:
            t0 = time.perf_counter()
            try:
                r = await client.get(path)
                await r.aread()
                ok, why = r.status_code < 300, f"{r.status_code} {path}: {r.text[:120]}"
            except httpx.HTTPError as e:
                ok, why = False, f"{type(e).__name__} {path}: {e}"
            result.latencies.setdefault(kind, []).append((time.perf_counter() - t0) * 1000.0)
            if not ok:
                result.errors.append(why)


def run_load(
    base: str, queries: list[str], ids: list[str], clients: int = 50, per_client: int = 20, timeout: float = 60.0
) -> LoadResult:
    """``clients`` concurrent clients, ``per_client`` requests each, against a running service at ``base``."""
    reqs = plan(queries, ids, clients, per_client)
    result = LoadResult(clients, per_client, 0.0)

    async def main() -> None:
        await asyncio.gather(*(_client(base, r, result, timeout) for r in reqs))

    t0 = time.perf_counter()
    asyncio.run(main())
    result.seconds = time.perf_counter() - t0
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    """Poll ``/healthz`` until it answers 200 (or the server process dies, or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/healthz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{base} did not become ready in {timeout:.0f} s")


@contextlib.contextmanager
def serve_process(
    index: str | os.PathLike[str], extra_env: dict[str, str] | None = None, pids: list[int] | None = None
) -> Iterator[str]:
    """Run ``daer serve --index INDEX`` on a free loopback port; yields its base URL (its pid goes to ``pids``)."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(extra_env or {})}
    cmd = [sys.executable, "-m", "daer", "serve", "--index", str(index), "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if pids is not None:
        pids.append(proc.pid)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def serve_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread of this process on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def thumbnail_rate(points: list[np.ndarray], size: int = 256) -> float:
    """Cold renders per second: render + PNG encode, as the service does on a cache miss."""
    from daer.viz.render import render_points

    t0 = time.perf_counter()
    for p in points:
        buf = io.BytesIO()
        render_points(p, size=size).save(buf, "PNG", compress_level=1)
    return len(points) / (time.perf_counter() - t0)


def hostile_uploads(limit: int = 20 * 2**20) -> list[tuple[str, bytes]]:
    """Issue 17's rows 2-4, each just under ``limit`` bytes: OBJ files whose parse costs far more than their size."""
    head = b"v 0 0 0\nv 1 0 0\nv 0 1 0\n"
    corners = (limit - len(head) - 8) // 2
    one_face = head + b"f" + b" 1 2 3" * (corners // 3 - 1) + b"\n"
    pair = b"f 1 2 3\nf 1 2 3 4\n"
    mixed = head + b"v 1 1 0\n" + pair * ((limit - 40) // len(pair))
    triangles = head + b"f 1 2 3\n" * ((limit - 30) // 8)
    return [("one_face.obj", one_face), ("mixed_faces.obj", mixed), ("triangles.obj", triangles)]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, MiB (Linux /proc; 0 where it cannot be read)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total / 1024


@dataclass
class MixedResult:
    """Searches alone, then beside hostile uploads: latencies, how uploads were answered, peak memory."""

    alone: LoadResult
    mixed: LoadResult
    upload_status: dict[str, int]
    upload_errors: list[str]
    rss_alone_mb: float
    rss_peak_mb: float


async def _uploader(base: str, files: list[tuple[str, bytes]], n: int, status: dict, errors: list[str]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=120.0) as client:
        for i in range(n):
            name, data = files[i % len(files)]
            try:
                r = await client.post("/api/classify", files={"file": (name, data, "application/octet-stream")})
                key = f"{r.status_code}"
                if r.status_code >= 500 or r.status_code < 400:
                    errors.append(f"{r.status_code} {name}: {r.text[:120]}")
            except httpx.HTTPError as e:
                key = type(e).__name__
                errors.append(f"{key} {name}: {e}")
            status[key] = status.get(key, 0) + 1


def run_mixed(base: str, pid: int, queries: list[str], search_clients: int = 4, searches: int = 50,
              upload_clients: int = 4, uploads: int = 25) -> MixedResult:  # fmt: skip
    """Searches alone, then the same searches beside hostile uploads, sampling the server's memory."""
    files = hostile_uploads()
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_mb(pid))
            time.sleep(0.05)

    def searches_only() -> list[list[tuple[str, str]]]:
        rng = np.random.default_rng(1)
        return [
            [("search", "/api/search?" + str(httpx.QueryParams({"q": queries[rng.integers(len(queries))], "k": 10})))
             for _ in range(searches)]
            for _ in range(search_clients)
        ]  # fmt: skip

    def load(with_uploads: bool) -> tuple[LoadResult, dict[str, int], list[str]]:
        result, status, errors = LoadResult(search_clients, searches, 0.0), {}, []

        async def main() -> None:
            jobs = [_client(base, r, result, 60.0) for r in searches_only()]
            if with_uploads:
                jobs += [_uploader(base, files, uploads, status, errors) for _ in range(upload_clients)]
            await asyncio.gather(*jobs)

        t0 = time.perf_counter()
        asyncio.run(main())
        result.seconds = time.perf_counter() - t0
        return result, status, errors

    alone, _, _ = load(False)
    rss_alone = tree_rss_mb(pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        mixed, status, errors = load(True)
    finally:
        stop.set()
        sampler.join()
    return MixedResult(alone, mixed, status, errors, rss_alone, peak[0])


def hostile_section(r: MixedResult, setting: str) -> str:
    """The RESULTS.md section of a mixed run."""
    a, m = r.alone.percentiles("search"), r.mixed.percentiles("search")
    n_up = sum(r.upload_status.values())
    lines = [
        "## Service under hostile uploads (`python -m benchmarks.bench_service --hostile`)",
        "",
        f"Machine: {machine_line()}; commit {git_sha()}. {setting}",
        f"Load: {r.alone.clients} clients x {r.alone.per_client} searches alone, then the same beside "
        f"{n_up} hostile 20 MB OBJ uploads from 4 more clients (issue 17 rows 2-4: a 10.5M-corner face, 2.3M "
        "mixed faces, 2.6M triangles on 3 vertices).",
        "",
        "| run | searches | search errors | p50 ms | p99 ms | max ms | server RSS MiB (process tree) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| searches alone | {len(r.alone.latencies.get('search', []))} | {len(r.alone.errors)} | {a[0]:.1f} | "
        f"{a[1]:.1f} | {a[2]:.1f} | {r.rss_alone_mb:.0f} |",
        f"| beside hostile uploads | {len(r.mixed.latencies.get('search', []))} | {len(r.mixed.errors)} | "
        f"{m[0]:.1f} | {m[1]:.1f} | {m[2]:.1f} | peak {r.rss_peak_mb:.0f} |",
        "",
        "Uploads answered: " + ", ".join(f"{k}: {v}" for k, v in sorted(r.upload_status.items()))
        + f"; **{len(r.upload_errors)} upload errors** (5xx or dropped). Goals: search p99 <= 2x alone "
        f"({m[1] / a[1]:.2f}x), peak RSS <= 2048 MiB, no 5xx.",
    ]  # fmt: skip
    return "\n".join(lines)


def section(result: LoadResult, render_rate: float, render_points_n: int, setting: str) -> str:
    """The RESULTS.md section for one run."""
    p50, p99, worst = result.percentiles()
    lines = [
        "## Service under load (`python -m benchmarks.bench_service`)",
        "",
        f"Machine: {machine_line()}; commit {git_sha()}. {setting}",
        f"Load: {result.clients} concurrent clients x {result.per_client} requests over loopback "
        f"({result.total} requests, mix {', '.join(f'{k} {int(p * 100)}%' for k, p in MIX)}); "
        f"**{len(result.errors)} errors**; {result.total / result.seconds:.0f} requests/s.",
        "",
        "| requests | n | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        f"| all | {result.total} | {p50:.1f} | {p99:.1f} | {worst:.1f} |",
    ]
    for kind, _ in MIX:
        a, b, c = result.percentiles(kind)
        lines.append(f"| {kind} | {len(result.latencies.get(kind, []))} | {a:.1f} | {b:.1f} | {c:.1f} |")
    lines += [
        "",
        f"Thumbnails: {render_rate:.0f} cold 256 px renders/s (render + PNG, {render_points_n} points per shape, "
        f"one process; goal >= {RENDER_GOAL:.0f}/s).",
    ]
    return "\n".join(lines)


def build_small_index(root: Path, n: int, n_points: int = 2048) -> Path:
    """A synth set of ``n`` shapes, a tiny untrained model (256 points) and an ERS index over them, under ``root``."""
    import torch

    from daer.data.build import build_synth
    from daer.models.model import create_model
    from daer.retrieval.indexer import build_index

    build_synth(root / "data", n, n_points=n_points, workers=1, progress=False)
    torch.manual_seed(0)
    create_model("tiny").save(root / "run")
    build_index(root / "run", root / "data", root / "index", method="ers", progress=False)
    return root / "index"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", default=None, help="index folder (default: build a small one in a temporary folder)")
    ap.add_argument("--n", type=int, default=200, help="shapes in the built data set (without --index)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=20, help="requests per client")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing RESULTS.md")
    ap.add_argument("--hostile", action="store_true", help="also run searches beside hostile uploads (issue 17)")
    args = ap.parse_args()

    from daer.data.shards import iter_records
    from daer.retrieval.store import open_index_dir

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(args.index) if args.index else build_small_index(Path(tmp), args.n)
        data = open_index_dir(index, verify=False).meta["data_dir"]
        records = list(iter_records(data))
        ids = [r.id for r in records]
        queries = [r.captions[0] for r in records][:200]
        rate = thumbnail_rate([r.points for r in records[:100]])
        pids: list[int] = []
        with serve_process(index, pids=pids) as base:
            result = run_load(base, queries, ids, args.clients, args.requests)
            mixed = run_mixed(base, pids[0], queries) if args.hostile else None
        n_pts = len(records[0].points)
        setting = f"Index: {len(ids)} shapes ({'given' if args.index else 'tiny model, built by the bench'})."
        md = section(result, rate, n_pts, setting)
        hostile_md = hostile_section(mixed, setting) if mixed is not None else None
    for e in result.errors[:10]:
        print("error:", e, file=sys.stderr)
    if hostile_md is not None:
        for e in mixed.upload_errors[:10]:  # type: ignore[union-attr]
            print("upload error:", e, file=sys.stderr)
    publish("service", md, write=not args.no_write)
    if hostile_md is not None:
        publish("service_hostile", hostile_md, write=not args.no_write)


if __name__ == "__main__":
    main()
