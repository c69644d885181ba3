"""``daer index build``: embed a data set with a checkpoint and write a search index."""

from __future__ import annotations

import argparse
import json


def cmd_build(args: argparse.Namespace) -> int:
    from daer.models.packaged import resolve_checkpoint
    from daer.retrieval.indexer import build_index

    settings = json.loads(args.settings) if args.settings else None
    levels = None if args.fine_levels is None else [int(v) for v in args.fine_levels.split(",") if v.strip()]
    summary = build_index(
        resolve_checkpoint(args.ckpt), args.data, args.out, method=args.method, split=args.split, batch=args.batch,
        fine_levels=[] if args.no_fine else levels, settings=settings, progress=not args.quiet,
    )  # fmt: skip
    print(
        f"indexed {summary['n']:,} shapes ({summary['method']}, dim {summary['dim']}, fine levels "
        f"{summary['fine_levels'] or 'none'}) into {summary['path']} in {summary['seconds']:.1f} s"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    index = sub.add_parser("index", help="build search indexes")
    isub = index.add_subparsers(dest="index_command", required=True, metavar="INDEX_COMMAND")
    p = isub.add_parser("build", help="embed a data set with a checkpoint and write an index folder")
    p.add_argument("--ckpt", default=None, help="run folder of the model (default: the packaged model)")
    p.add_argument("--data", required=True, help="data set folder")
    p.add_argument("--out", required=True, help="index folder to write (replaced when complete)")
    p.add_argument("--method", default="ers", choices=["ers", "exact", "ivf", "hnsw"], help="index type (ers)")
    p.add_argument("--split", default=None, choices=["train", "val", "test"], help="index one split (default all)")
    p.add_argument("--batch", type=int, default=32, help="shapes per encoder batch (default 32)")
    p.add_argument("--fine-levels", default=None, help="HAF levels stored for re-ranking, e.g. 2,3 (default all)")
    p.add_argument("--no-fine", action="store_true", help="store no fine tokens (no re-ranking)")
    p.add_argument("--settings", default="", help='index settings as JSON, e.g. \'{"codes": "flat"}\'')
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_build)
