"""``daer viz``: pictures of what a model attends to."""

from __future__ import annotations

import argparse


def cmd_attention(args: argparse.Namespace) -> int:
    from daer.data.shards import iter_records
    from daer.models.model import load_model
    from daer.models.packaged import resolve_checkpoint
    from daer.train.calibrate import calibrate_model, require_haf, summary_line, validation_batch
    from daer.viz.attention_pictures import one_per_category, write_attention_pictures

    model = load_model(resolve_checkpoint(args.ckpt))
    require_haf(model)
    records = one_per_category(iter_records(args.data, split=args.split))
    change = None
    if args.calibrate:

        def change() -> str:
            batch = validation_batch(args.data, size=args.batch_size, split="val", seed=args.seed)
            calibration = calibrate_model(model, batch, simulations=args.sims, seed=args.seed)
            print(summary_line(calibration))
            return f"DAP, {calibration.simulations} simulations"

    paths = write_attention_pictures(model, records, args.out, change_policy=change)
    print(f"wrote {len(paths)} pictures to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    viz = sub.add_parser("viz", help="pictures of what a model attends to")
    vsub = viz.add_subparsers(dest="viz_command", required=True, metavar="VIZ_COMMAND")
    p = vsub.add_parser("attention", help="per-word attention heat maps of one shape per category")
    p.add_argument("--ckpt", default=None, help="run folder of a haf-mode model (default: the packaged model)")
    p.add_argument("--data", required=True, help="data set folder")
    p.add_argument("--out", required=True, help="output folder for the PNGs")
    p.add_argument("--split", default="test", help="split to draw shapes from (default test)")
    p.add_argument("--calibrate", action="store_true", help="draw before and after a DAP calibration on val")
    p.add_argument("--sims", type=int, default=300, help="DAP simulations with --calibrate (default 300)")
    p.add_argument("--batch-size", type=int, default=256, help="validation shapes for --calibrate (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.set_defaults(func=cmd_attention)
