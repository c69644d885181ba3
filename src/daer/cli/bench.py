"""``daer bench``: benchmarks as commands. ``daer bench retrieval`` compares exact, ERS, IVF, HNSW and ScaNN.

The group is open: any module of ``daer.cli`` may add a ``daer bench <name>`` subcommand by defining
``register_bench(bench_subparsers)``; :func:`register` calls every such function after adding its own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from typing import Any


def cmd_retrieval(args: argparse.Namespace) -> int:
    from daer.retrieval.bench import METHODS, BenchConfig, run_retrieval_bench

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) or METHODS
    cfg = BenchConfig(
        n=args.n, dim=args.dim, queries=args.queries, target_recall=args.target_recall, seed=args.seed,
        threads=args.threads, methods=methods,
    )  # fmt: skip
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if (args.verbose or not args.json) else (lambda s: None)
    result = run_retrieval_bench(cfg, log=log)
    print(json.dumps(result) if args.json else format_retrieval(result))
    return 0


def format_retrieval(result: dict[str, Any]) -> str:
    """Human-readable table of a retrieval benchmark result."""
    lines = [
        f"n={result['n']:,} dim={result['dim']} queries={result['queries']} k={result['k']} "
        f"threads={result['threads']} target recall@10={result['target_recall']}",
        f"{'method':<8} {'recall@10':>9} {'qps 1/call':>11} {'qps batch':>10} {'build s':>8} {'B/vector':>9}  settings",
    ]
    for m in result["methods"]:
        params = ", ".join(f"{k}={v}" for k, v in m.get("params", {}).items())
        lines.append(
            f"{m['name']:<8} {m['recall_at_10']:>9.4f} {m['qps_single']:>11.1f} {m['qps_batch']:>10.1f} "
            f"{m['build_s']:>8.2f} {m['bytes_per_vector']:>9.1f}  {params}"
        )
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (retrieval, ...)")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH_COMMAND")

    p = bsub.add_parser("retrieval", help="exact vs ERS vs IVF vs HNSW vs ScaNN on synthetic embeddings")
    p.add_argument("--n", type=int, default=1_000_000, help="database size (default 1,000,000)")
    p.add_argument("--dim", type=int, default=256, help="embedding dimension (default 256)")
    p.add_argument("--queries", type=int, default=1000, help="queries, also the batch size (default 1000)")
    p.add_argument("--target-recall", type=float, default=0.98, help="recall@10 of the operating points (0.98)")
    methods_help = "comma-separated subset of exact,ers,ivf,hnsw,scann (default: all; scann only where installed)"
    p.add_argument("--methods", default="", help=methods_help)
    p.add_argument("--threads", type=int, default=0, help="FAISS threads (default: daer's thread policy)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--json", action="store_true", help='print {"n","dim","methods":[...]} as JSON')
    p.add_argument("--verbose", action="store_true", help="progress on stderr also with --json")
    p.set_defaults(func=cmd_retrieval)

    for info in sorted(pkgutil.iter_modules(importlib.import_module("daer.cli").__path__), key=lambda m: m.name):
        if info.name == __name__.rsplit(".", 1)[-1]:
            continue
        module = importlib.import_module(f"daer.cli.{info.name}")
        extra = getattr(module, "register_bench", None)
        if extra is not None:
            extra(bsub)
