"""Align3D-Synth build throughput: shapes per second of ``build_synth`` (generate + write shards).

Run: ``python -m benchmarks.bench_synth [--n 2000] [--workers 2] [--points 2048] [--runs 3]``.
Each run builds a fresh data set in a temporary folder; the median run is reported, beside a
single-process breakdown of where the time goes (generator alone, shard writing alone).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.report import git_sha, machine_line, publish
from daer.data.build import build_synth
from daer.data.shards import write_shard
from daer.synth.generator import generate_record

GOAL = 300.0  # shapes per second with 2 workers at 2,048 points


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its reaped children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _breakdown(n_points: int, seed: int, count: int) -> tuple[float, float]:
    """Shapes/s of the generator alone and of shard writing alone, in this process."""
    t = time.perf_counter()
    records = [generate_record(i, seed, n_points) for i in range(count)]
    gen = count / (time.perf_counter() - t)
    for r in records:
        r.normals = None
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_shard(tmp, 0, records)
        write = count / (time.perf_counter() - t)
    return gen, write


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="shapes per build (default 2000)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--points", type=int, default=2048, help="points per shape (default 2048)")
    ap.add_argument("--runs", type=int, default=3, help="builds; the median is reported (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS.md")
    args = ap.parse_args(argv)

    times, cpu, size_mb = [], [], 0.0
    for run in range(args.runs):
        out = Path(tempfile.mkdtemp(prefix="bench_synth_"))
        try:
            c = _cpu_seconds()
            t = time.perf_counter()
            manifest = build_synth(
                out, args.n, n_points=args.points, seed=args.seed, workers=args.workers, progress=False
            )
            times.append(time.perf_counter() - t)
            cpu.append(_cpu_seconds() - c)  # this process + its finished workers
            size_mb = sum(p.stat().st_size for p in out.glob("shard-*.parquet")) / 2**20
            assert manifest["n"] == args.n
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(f"run {run + 1}/{args.runs}: {args.n / times[-1]:.1f} shapes/s ({times[-1]:.2f} s)", flush=True)
    median = statistics.median(times)
    rate = args.n / median
    cpu_ms = 1000.0 * statistics.median(cpu) / args.n
    gen, write = _breakdown(args.points, args.seed, min(args.n, 200))
    verdict = "meets" if rate >= GOAL else "falls short of"
    print(
        f"median: {rate:.1f} shapes/s ({verdict} the {GOAL:.0f}/s goal); generator alone {gen:.1f}/s, "
        f"shard writing {write:.0f}/s (1 process); {cpu_ms:.2f} CPU-ms per shape"
    )

    cmd = "python -m benchmarks.bench_synth " + " ".join(
        f"--{k} {getattr(args, k)}" for k in ("n", "workers", "points", "runs")
    )
    md = f"""## Align3D-Synth build throughput

Command: `{cmd}` (git {git_sha()})
Machine: {machine_line()}

| shapes | points | workers | runs | median build (s) | shapes/s | shards on disk (MiB) |
|---:|---:|---:|---:|---:|---:|---:|
| {args.n:,} | {args.points:,} | {args.workers} | {args.runs} | {median:.2f} | {rate:.1f} | {size_mb:.1f} |

Every run (shapes/s): {", ".join(f"{args.n / t:.1f}" for t in times)}. The machine is shared, so wall-clock
rates move with other load; CPU time is steadier: {cpu_ms:.2f} CPU-ms per shape (median run, all processes),
i.e. at most {args.workers * 1000.0 / cpu_ms:.0f} shapes/s on {args.workers} otherwise idle cores.
Goal: >= {GOAL:.0f} shapes/s with 2 workers at 2,048 points; the median {verdict} it.
Where the time goes, one process, first {min(args.n, 200)} shapes: generator alone {gen:.1f} shapes/s,
Parquet shard writing alone {write:.0f} shapes/s.
"""
    publish("synth", md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
