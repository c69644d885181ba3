"""Embedding throughput, one figure per condition: raw points -> global embedding and HAF point tokens.

Run: ``python -m benchmarks.bench_embed [--config small] [--seconds 4] [--repeats 3]``.

Each cell runs in a fresh process (so OpenMP settings take effect) on random unit-sphere clouds of the
config's size: FPS/kNN grouping plus the point encoder, no grad; the encoder returns the global
embedding and the three levels of HAF tokens in one pass, so one rate covers both. Conditions:
``idle``; ``busy core`` (a process spinning on one core); ``two jobs`` (a second copy of the same
measurement at the same time; its rate is reported, the mean of the two). Rates are the median over
``--repeats`` windows of ``--seconds``. The breakdown times grouping and encoder apart at batch 64.
OpenMP waits passively (daer's policy) unless the column says ``active``.

Writes the ``embedding`` section of benchmarks/RESULTS.md (``--no-write`` prints only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks.report import command_line, git_sha, machine_line, publish

GOALS = {"busy core": 0.70, "two jobs": 0.40}  # share of the idle rate each condition must keep


def measure(config: str, threads: int, batch: int, seconds: float, repeats: int) -> dict[str, float]:
    """Shapes/s of grouping + encoder (and of each part), in this process."""
    import torch

    torch.set_num_threads(threads)
    from daer.models.config import load_config
    from daer.models.point_encoder import PointEncoder
    from daer.models.pointops import precompute_groups

    cfg = load_config(config)
    enc = PointEncoder(cfg).eval()
    x = torch.randn(batch, cfg.n_points, 3, generator=torch.Generator().manual_seed(0))
    x = x / x.norm(dim=-1, keepdim=True)
    rates, group_s, enc_s = [], [], []
    with torch.no_grad():
        enc(x)
        for _ in range(repeats):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                a = time.perf_counter()
                groups = precompute_groups(x, cfg.level_sizes, cfg.level_k)
                b = time.perf_counter()
                enc(x, groups)
                c = time.perf_counter()
                group_s.append(b - a)
                enc_s.append(c - b)
                n += batch
            rates.append(n / (time.perf_counter() - t0))
    return {
        "rate": statistics.median(rates),
        "group_ms": 1000 * statistics.median(group_s) / batch,
        "encoder_ms": 1000 * statistics.median(enc_s) / batch,
    }


def _cell(args: argparse.Namespace, threads: int, batch: int, condition: str, wait: str) -> dict[str, float]:
    """Run one measurement (and its companion load) in fresh processes."""
    env = {**os.environ, "OMP_WAIT_POLICY": wait.upper()}
    cmd = [sys.executable, "-m", "benchmarks.bench_embed", "--child", f"{args.config},{threads},{batch}",
           "--seconds", str(args.seconds), "--repeats", str(args.repeats)]  # fmt: skip
    spinner = None
    if condition == "busy core":
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)]
        if condition == "two jobs":
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return {k: statistics.mean(o[k] for o in outs) for k in outs[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.child:
        config, threads, batch = args.child.split(",")
        print(json.dumps(measure(config, int(threads), int(batch), args.seconds, args.repeats)))
        return 0
    cores = os.cpu_count() or 1
    rows = []
    for threads in sorted({1, cores}):
        for batch in (1, 64):
            for wait in ("passive", "active") if threads > 1 and batch == 64 else ("passive",):
                cells = {c: _cell(args, threads, batch, c, wait) for c in ("idle", "busy core", "two jobs")}
                rows.append({"threads": threads, "batch": batch, "wait": wait, **cells})
                print(json.dumps(rows[-1]), flush=True)
    command = command_line("benchmarks.bench_embed", argv)
    lines = [f"## Embedding throughput (`{args.config}` config, raw points -> global + HAF tokens)", "",
             f"Command: `{command.strip()}` (git {git_sha()})  ", f"Machine: {machine_line()}.  ",
             f"Median of {args.repeats} windows of {args.seconds:g} s per cell, each cell in fresh processes; "
             "`busy core` = one process spinning beside it, `two jobs` = two copies at once (mean of the two). "
             "Share = rate / idle rate of the same row.", "",
             "| threads | batch | OpenMP wait | idle shapes/s | busy core | share | two jobs | share "
             "| FPS/kNN ms/shape | encoder ms/shape |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        idle = r["idle"]["rate"]
        lines.append(
            f"| {r['threads']} | {r['batch']} | {r['wait']} | {idle:.0f} | {r['busy core']['rate']:.0f} "
            f"| {r['busy core']['rate'] / idle:.0%} | {r['two jobs']['rate']:.0f} | {r['two jobs']['rate'] / idle:.0%} "
            f"| {r['idle']['group_ms']:.2f} | {r['idle']['encoder_ms']:.2f} |"
        )
    best_idle = max(r["idle"]["rate"] for r in rows if r["batch"] == 64)
    lines.append("")
    for cond, goal in GOALS.items():
        got = {(r["threads"], r["wait"]): r[cond]["rate"] for r in rows if r["batch"] == 64}
        policy = max(got[(t, "passive")] for t in sorted({1, cores}))  # the auto policy picks the idle cores
        lines.append(f"- {cond}: goal ≥ {goal:.0%} of the best idle rate ({best_idle:.0f}/s) at batch 64; the "
                     f"best passive setting keeps {policy:.0f}/s = {policy / best_idle:.0%}, "
                     f"**{'met' if policy / best_idle >= goal else 'missed'}**.")  # fmt: skip
    md = "\n".join(lines)
    publish("embedding", md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
