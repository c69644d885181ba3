"""``daer train``: train a model on a data set (one process, or N under ``torchrun``).

Multi-process: ``torchrun --nproc_per_node=N -m daer train ...`` (gloo on CPU, NCCL on GPUs).
With ``--resume`` the options not given again are taken from the run's ``train_config.json``.
"""

from __future__ import annotations

import argparse
import json

from daer.errors import BadInputError

# (flag, TrainConfig field, type, help); every default lives in TrainConfig.
_OPTIONS: list[tuple[str, str, type, str]] = [
    ("--data", "data", str, "data set folder (shards + manifest.json)"),
    ("--out", "out", str, "run folder (config, log, checkpoints, final model)"),
    ("--config", "config", str, "model config: tiny, small, base, or a JSON file (default small)"),
    ("--steps", "steps", int, "optimizer steps in the run (default 1000)"),
    ("--batch-size", "batch_size", int, "shapes per step per process (default 64)"),
    ("--lr", "lr", float, "peak learning rate (default 2e-3)"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay (default 0.05)"),
    ("--warmup-steps", "warmup_steps", int, "linear warm-up steps (default 100, at most steps/5)"),
    ("--grad-clip", "grad_clip", float, "max gradient norm, 0 = off (default 1.0)"),
    ("--fine-weight", "fine_weight", float, "weight of the fine HAF loss (default 1.0)"),
    ("--fine-negatives", "fine_negatives", int, "fine loss over each row's k hardest in-batch pairs (default 0: all)"),
    ("--weight-average", "weight_average", float, "the run ends with its weights' moving average, this decay (0.995)"),
    ("--swap-negatives", "swap_negatives", float, "weight of the attribute-swap caption loss (default 1.0)"),
    ("--swap-scope", "swap_scope", str, "which attribute swaps are negatives: train (default), stated or free"),
    ("--ground-weight", "ground_weight", float, "weight of the grounding loss on part-labelled shapes"),
    ("--part-weight", "part_weight", float, "weight of the part read-out loss on part-labelled shapes (default 0)"),
    ("--part-drop", "part_drop", float, "chance a shape loses an optional part, captioned absent (default 0.5)"),
    ("--part-swap", "part_swap", float, "chance a shape takes a part from another shape of its category (default 0)"),
    ("--text-noise", "text_noise", float, "std of noise on text features before projection (default 0.05; 0: off)"),
    ("--text-lr-scale", "text_lr_scale", float, "learning-rate factor of trained MiniLM layers (default 0.05)"),
    ("--stretch", "stretch", float, "each axis of a training shape scaled in [1-s, 1+s] (default 0: off)"),
    ("--ckpt-every", "ckpt_every", int, "checkpoint every N steps (default 200)"),
    ("--log-every", "log_every", int, "log every N steps (default 10)"),
    ("--seed", "seed", int, "seed of init, data order and augmentation (default 0)"),
    ("--workers", "workers", int, "data loader worker processes (default 0)"),
    ("--device", "device", str, "cpu or cuda (default: cuda when available)"),
    ("--text-encoder", "text_encoder", str, "local Hugging Face encoder folder replacing MiniLM"),
    ("--dap-every", "dap_every", int, "steps between DAP calibrations (default 500)"),
    ("--dap-sims", "dap_sims", int, "MCTS simulations per DAP calibration (default 64)"),
    ("--time-budget-s", "time_budget_s", float, "stop after this many seconds of training; the schedule follows"),
    ("--dap-alpha", "dap_alpha", float, "DAP reward weight of the loss drop vs recall/accuracy (default 0.5)"),
    ("--dap-reuse", "dap_reuse", float, "carry each DAP tree over to the next calibration, statistics x this (0: off)"),
]


def _given(args: argparse.Namespace) -> dict:
    """The TrainConfig fields the user set on the command line."""
    out = {field: getattr(args, field) for _, field, _, _ in _OPTIONS if getattr(args, field, None) is not None}
    for field in ("mode", "fine_loss", "bf16", "augment", "dap", "progress"):
        if getattr(args, field, None) is not None:
            out[field] = getattr(args, field)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from daer.train.distributed import cleanup_distributed, is_main
    from daer.train.train_config import TRAIN_CONFIG, TrainConfig
    from daer.train.trainer import train

    given = _given(args)
    if "out" not in given:
        raise BadInputError("--out RUN is required")
    if args.resume and (Path(given["out"]) / TRAIN_CONFIG).is_file():
        cfg = TrainConfig.load(given["out"], **given, resume=True)
    else:
        if "data" not in given:
            raise BadInputError("--data DIR is required to start a run")
        cfg = TrainConfig(**given, resume=args.resume)
    try:
        summary = train(cfg)
        if is_main():
            print(json.dumps(summary))
    finally:
        cleanup_distributed()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (HAF or the global baseline); resumable, torchrun-ready")
    for flag, field, typ, help_ in _OPTIONS:
        p.add_argument(flag, dest=field, type=typ, default=None, help=help_)
    p.add_argument("--mode", choices=("haf", "global"), default=None, help="haf (default) or the global baseline")
    p.add_argument("--fine-loss", dest="fine_loss", choices=("levels", "fused"), default=None,
                   help="fine InfoNCE per HAF level (default) or on the fused fine score")  # fmt: skip
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bfloat16 autocast")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="yaw/scale/jitter augmentation (default on)")  # fmt: skip
    p.add_argument("--dap", action=argparse.BooleanOptionalAction, default=None, help="DAP (on in haf mode)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.set_defaults(func=cmd_train)
