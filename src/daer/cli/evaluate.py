"""``daer eval``: evaluate a checkpoint on one split of a data set (retrieval, zero-shot, attributes, spec queries)."""

from __future__ import annotations

import argparse
import json
import sys

from daer.data.record import SPLITS

_ROWS: tuple[tuple[str, str], ...] = (
    ("text->shape R@1 / R@5 / R@10", "t2s"),
    ("shape->text R@1 / R@5 / R@10", "s2t"),
    ("zero-shot top-1", "zeroshot_top1"),
    ("attribute accuracy", "attr_acc"),
    ("spec query P@1 / P@10", "spec"),
    ("grounding (attention on part)", "grounding"),
)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_table(result: dict) -> str:
    """A readable table of an ``evaluate`` result."""
    lines = [f"shapes evaluated: {result['n_shapes']}"]
    for label, key in _ROWS:
        if key in ("t2s", "s2t"):
            text = " / ".join(_fmt(result[f"{key}_r{k}"]) for k in (1, 5, 10))
        elif key == "spec":
            text = f"{_fmt(result['spec_p1'])} / {_fmt(result['spec_p10'])}"
        else:
            text = _fmt(result.get(key))
        lines.append(f"{label:<32} {text}")
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    from daer.eval.evaluate import evaluate
    from daer.eval.queries import read_class_prompts, read_spec_queries
    from daer.models.model import load_model
    from daer.models.packaged import resolve_checkpoint

    spec = read_spec_queries(args.queries) if args.queries else None  # a bad file fails before the model loads
    class_names = read_class_prompts(args.class_names) if args.class_names else None
    model = load_model(resolve_checkpoint(args.ckpt), map_location=args.device)
    result = evaluate(
        model,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        max_shapes=args.max_shapes,
        seed=args.seed,
        rerank=args.rerank,
        progress=not args.json and sys.stderr.isatty(),
        spec=spec,
        class_names=class_names,
    )
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: retrieval R@k, zero-shot, attribute accuracy, spec P@k")
    p.add_argument("--ckpt", default=None, help="run folder or its model.safetensors (default: the packaged model)")
    p.add_argument("--data", required=True, help="data set folder (shards + manifest.json)")
    p.add_argument("--split", default="test", choices=SPLITS, help="split to evaluate (default test)")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--max-shapes", type=int, default=None, help="evaluate a seeded random subset of N shapes")
    p.add_argument("--batch-size", type=int, default=64, help="shapes encoded at a time (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-shapes subset (default 0)")
    p.add_argument("--rerank", type=int, default=100, help="candidates re-scored per query (default 100)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--queries",
        default=None,
        metavar="JSONL",
        help="spec queries in your own words ({text, category, attributes} per line) for spec_p1/p10",
    )
    p.add_argument(
        "--class-names",
        default=None,
        metavar="JSON",
        help='zero-shot class names by category id, e.g. {"pin_header": "pin header connector"} '
        "(a list of prompts also works; ids left out keep their own words)",
    )
    p.set_defaults(func=cmd_eval)
