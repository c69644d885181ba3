"""The real training step, profiled: ``Trainer.train_step`` on batches of a data set, per mode and per checkout.

Run: ``python -m benchmarks.bench_train_step --data DIR [--src NAME=SRC ...] [--modes haf global]
[--steps 12] [--threads 2] [--rounds 3] [--no-write]``.

Unlike bench_model_step (random clouds, the contrastive terms only), this step is what ``daer train``
runs with the default settings: attribute-swap negatives, the grounding loss, part drop, text noise.
Each (checkout, mode) runs in a fresh process whose ``daer`` comes from ``SRC`` (default: this checkout's
``src``), so a change is measured against the code before it in the same run: batches are drawn first,
3 warm-up steps, then the median of ``--steps`` timed steps, then a torch profile of 4 more steps (the
ops with the most self CPU time). Writes the ``train_step`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import command_line, git_sha, machine_line, publish

ROOT = Path(__file__).resolve().parent.parent
TOP_OPS = 6


def worker(data: str, mode: str, steps: int, threads: int) -> dict:
    """Measure in this process (its ``daer`` is whichever PYTHONPATH gives)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    import daer
    from daer.data.dataset import collate
    from daer.train.train_config import TrainConfig
    from daer.train.trainer import Trainer

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainConfig(data=data, out=f"{tmp}/run", mode=mode, dap=False, steps=100, progress=False))
        loader = torch.utils.data.DataLoader(trainer.dataset, batch_sampler=trainer._sampler(0), collate_fn=collate)
        batches = iter(loader)
        t = time.perf_counter()
        drawn = [next(batches) for _ in range(3 + steps + 4)]
        load_s = (time.perf_counter() - t) / len(drawn)
        for b in drawn[:3]:
            trainer.train_step(b)
        times = []
        for b in drawn[3 : 3 + steps]:
            t = time.perf_counter()
            trainer.train_step(b)
            times.append(time.perf_counter() - t)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in drawn[3 + steps :]:
                trainer.train_step(b)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    return {
        "daer": str(Path(daer.__file__).parent),
        "step_s": statistics.median(times),
        "load_s": load_s,
        "batch": trainer.cfg.batch_size,
        "ops": [(e.key, e.self_cpu_time_total / total) for e in ops[:TOP_OPS]],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="a data set folder (Align3D-Synth for the default settings)")
    ap.add_argument("--src", action="append", default=[], metavar="NAME=SRC", help="a checkout's src folder")
    ap.add_argument("--modes", nargs="+", default=["haf", "global"])
    ap.add_argument("--steps", type=int, default=12, help="timed steps (default 12)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="processes per checkout and mode (default 3)")
    ap.add_argument("--worker", nargs=2, metavar=("DATA", "MODE"), help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.steps, args.threads)))
        return
    if not args.data:
        ap.error("--data is required")
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    sources = [s.split("=", 1) for s in args.src] or [["this checkout", str(ROOT / "src")]]
    runs: dict[tuple[str, str], list[dict]] = {}
    order = [(name, src, mode) for name, src in sources for mode in args.modes]
    for r in range(args.rounds):  # every other round in reverse: a machine that drifts favours no one
        for name, src, mode in order if r % 2 == 0 else order[::-1]:
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
            cmd = [sys.executable, "-m", "benchmarks.bench_train_step", "--worker", args.data, mode,
                   "--steps", str(args.steps), "--threads", str(args.threads)]  # fmt: skip
            done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{name} {mode}: the measuring process failed:\n{done.stderr[-2000:]}")
            runs.setdefault((name, mode), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps({"name": name, "mode": mode, "round": r, **runs[(name, mode)][-1]}), flush=True)
    rows = []
    for (name, mode), measured in runs.items():  # the round with the median step (its own load and ops)
        mid = sorted(measured, key=lambda m: m["step_s"])[(len(measured) - 1) // 2]
        rows.append({"name": name, "mode": mode, **mid, "rounds": [m["step_s"] for m in measured]})
    by = {(r["name"], r["mode"]): r for r in rows}
    lines = [
        "## Training step, profiled (`small`, default training settings)",
        "",
        f"Command: `{command_line('benchmarks.bench_train_step', argv)}` (git {git_sha()})  ",
        f"Machine: {machine_line()}; {args.threads} thread(s).  ",
        f"One `Trainer.train_step` (forward, backward, AdamW) on a batch of the data set with the default settings "
        f"(swap negatives, grounding loss, part drop, text noise); median of {args.steps} steps after 3 warm-up "
        f"steps, each checkout and mode in its own process, {args.rounds} processes each in rounds (every other "
        "round in reverse order), the process with the median step reported (the lower middle one for an even count; "
        "per-round steps in the last column). "
        "Load = drawing one batch (augmentation, part drop, "
        "groups of dropped views).",
        "",
        "| checkout | mode | step s | shapes/s | load s/batch | haf / global step | top ops by self CPU | rounds (s) |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        ratio = ""
        if r["mode"] == "haf" and (r["name"], "global") in by:
            ratio = f"{r['step_s'] / by[(r['name'], 'global')]['step_s']:.2f}"
        ops = ", ".join(f"{k} {share:.0%}" for k, share in r["ops"])
        rounds = " / ".join(f"{v:.3f}" for v in r["rounds"])
        lines.append(f"| {r['name']} | {r['mode']} | {r['step_s']:.3f} | {r['batch'] / r['step_s']:.0f} | "
                     f"{r['load_s']:.3f} | {ratio} | {ops} | {rounds} |")  # fmt: skip
    if len(sources) > 1:
        base = sources[0][0]
        lines.append("")
        for name, _ in sources[1:]:
            for mode in args.modes:
                if (base, mode) in by and (name, mode) in by:
                    speed = by[(base, mode)]["step_s"] / by[(name, mode)]["step_s"]
                    lines.append(f"- {mode}: {name} step {speed:.2f}x as fast as {base}")
    text = "\n".join(lines)
    publish("train_step", text, write=not args.no_write)


if __name__ == "__main__":
    main()
