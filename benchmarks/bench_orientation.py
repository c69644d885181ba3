"""Classification of files stored with x, y or z up: the file read as it is, the right axis named, auto.

Run: ``python -m benchmarks.bench_orientation [--ckpt RUN] --data DIR [--split test] [--shapes 300]``.

Files in the wild disagree on "up" (Blender's OBJ export and ShapeNet: +y; CAD and 3D-printing STL: +z),
and a model trained upright reads a lying shape badly. Each shape of the split is stored three ways
(its +z turned to the file's x, y or z) and classified over the data set's categories: read as the file
is (+z up: daer's default before ``--up auto``), with the right axis named (the best a user can do), and
with ``auto`` (:func:`daer.models.zeroshot.classify_upright`: each axis tried, the best label's score
decides). Latency: median of single-shape calls, one orientation against auto's three.
Writes the ``orientation`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks.report import command_line, git_sha, machine_line, publish


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=None, help="run folder (default: the packaged model)")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--shapes", type=int, default=300)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    from daer.data.mesh_io import UP_ROTATIONS
    from daer.data.shards import iter_records
    from daer.models.model import load_model
    from daer.models.packaged import resolve_checkpoint
    from daer.models.zeroshot import classify_points, classify_upright
    from daer.utils.threads import configure_threads

    threads = configure_threads(args.threads)
    ckpt = resolve_checkpoint(args.ckpt)
    model = load_model(ckpt)
    records = []
    for rec in iter_records(args.data, args.split, columns=["points", "category"]):
        records.append(rec)
        if len(records) == args.shapes:
            break
    labels = sorted({r.category for r in iter_records(args.data, None, columns=["category"])})
    rows, t_one, t_auto = [], [], []
    for axis, turn in UP_ROTATIONS.items():
        hits = {"as is": 0, "named": 0, "auto": 0, "auto up": 0}
        for rec in records:
            stored = rec.points @ turn  # the file: turning it by UP_ROTATIONS[axis] gives the shape +z up
            t0 = time.perf_counter()
            hits["as is"] += classify_points(model, stored, labels)[0]["label"] == rec.category
            t1 = time.perf_counter()
            up, ranked = classify_upright(model, stored, labels)
            t_one.append(t1 - t0)
            t_auto.append(time.perf_counter() - t1)
            hits["auto"] += ranked[0]["label"] == rec.category
            hits["auto up"] += up == axis
            hits["named"] += classify_points(model, stored @ turn.T, labels)[0]["label"] == rec.category
        rows.append((axis, {k: v / len(records) for k, v in hits.items()}))

    command = command_line("benchmarks.bench_orientation", argv)
    lines = [f"## Classification of files stored with x, y or z up ({len(records)} {args.split} shapes, "
             f"{len(labels)} labels)", "",
             f"Command: `{command.strip()}` (git {git_sha()})  ", f"Machine: {machine_line()}, {threads} threads.  ",
             f"Model: {Path(ckpt).name}. Top-1 zero-shot accuracy of each shape stored with its up along the "
             "file's x, y or z: read as the file is (+z up, the default before auto), with the right axis "
             "named (--up), and with auto (each axis tried, the best label's score decides); 'auto up' is the "
             "share where auto chose the stored axis.", "",
             "| stored up | as is | named | auto | auto up |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for axis, r in rows:
        lines.append(f"| {axis} | {r['as is']:.3f} | {r['named']:.3f} | {r['auto']:.3f} | {r['auto up']:.3f} |")
    ms_one, ms_auto = statistics.median(t_one) * 1e3, statistics.median(t_auto) * 1e3
    lines += ["", f"Latency per shape (median of {len(t_one)} single-shape calls): one orientation "
              f"{ms_one:.1f} ms, auto {ms_auto:.1f} ms ({ms_auto / ms_one:.2f}x)."]  # fmt: skip
    md = "\n".join(lines)
    publish("orientation", md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
