"""``daer calibrate``: run DAP on a trained checkpoint and keep the better attention policy."""

from __future__ import annotations

import argparse
import json


def cmd_calibrate(args: argparse.Namespace) -> int:
    from daer.models.model import load_model
    from daer.train.calibrate import (
        calibrate_model,
        log_calibration,
        require_haf,
        summary_line,
        validation_batch,
    )
    from daer.train.dap_callback import DAP_LOG

    model = load_model(args.ckpt)
    require_haf(model)
    batch = validation_batch(args.data, size=args.batch_size, split=args.split, seed=args.seed)
    calibration = calibrate_model(
        model, batch, simulations=args.sims, method=args.method, alpha=args.alpha, seed=args.seed
    )
    if calibration.applied:
        model.save(args.ckpt, extra={"calibrated_by": "daer calibrate", "method": args.method})
    log_calibration(f"{args.ckpt}/{DAP_LOG}", calibration)
    print(json.dumps(calibration.to_json()) if args.json else summary_line(calibration))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="DAP: search the HAF attention policy of a checkpoint on held-out shapes")
    p.add_argument("--ckpt", required=True, help="run folder (model.safetensors + config.json)")
    p.add_argument("--data", required=True, help="data set folder with a validation split")
    p.add_argument("--split", default="val", help="split to calibrate on (default val)")
    p.add_argument("--sims", type=int, default=300, help="search simulations (default 300)")
    p.add_argument(
        "--method",
        choices=("mcts", "random", "coordinate", "gradient"),
        default="mcts",
        help="search (default mcts); gradient: the relaxed policy fitted by gradient descent",
    )
    p.add_argument("--alpha", type=float, default=0.5, help="reward weight of the loss drop (default 0.5)")
    p.add_argument("--batch-size", type=int, default=256, help="validation shapes (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the calibration as JSON")
    p.set_defaults(func=cmd_calibrate)
