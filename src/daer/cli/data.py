"""``daer data``: build, import, describe and preview data sets."""

from __future__ import annotations

import argparse
import json

from daer.cli import data_import
from daer.data.record import SPLITS


def cmd_synth(args: argparse.Namespace) -> int:
    from daer.data.build import build_synth

    manifest = build_synth(args.out, args.n, n_points=args.points, seed=args.seed, workers=args.workers)
    print(f"wrote {manifest['n']:,} shapes in {len(manifest['shards'])} shards to {args.out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from daer.data.info import dataset_info, format_info
    from daer.data.shards import read_manifest

    info = dataset_info(args.dir)
    print(json.dumps(info) if args.json else format_info(info, read_manifest(args.dir)))
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from daer.data.shards import iter_records
    from daer.viz.sheet import contact_sheet, select_diverse

    records = select_diverse(iter_records(args.dir, split=args.split), args.n)
    path = contact_sheet(records, args.out, n=args.n, cols=args.cols)
    print(f"wrote {len(records)} shapes to {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build, import, describe and preview data sets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    p = dsub.add_parser("synth", help="build an Align3D-Synth data set (resumable)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, required=True, help="number of shapes")
    p.add_argument("--points", type=int, default=2048, help="points per shape (default 2048)")
    p.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.set_defaults(func=cmd_synth)

    p = dsub.add_parser("info", help="sizes per split and category")
    p.add_argument("dir", help="data set folder")
    p.add_argument("--json", action="store_true", help='print {"n", "splits", "categories"} as JSON')
    p.set_defaults(func=cmd_info)

    p = dsub.add_parser("preview", help="contact sheet of renders with captions")
    p.add_argument("dir", help="data set folder")
    p.add_argument("--out", required=True, help="image to write (.png)")
    p.add_argument("--n", type=int, default=16, help="number of shapes (default 16)")
    p.add_argument("--cols", type=int, default=4, help="shapes per row (default 4)")
    p.add_argument("--split", choices=SPLITS, default=None, help="show only this split")
    p.set_defaults(func=cmd_preview)

    data_import.add_parser(dsub)
