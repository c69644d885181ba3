"""DAP ablation: static HAF vs MCTS, random search and coordinate ascent at the same simulation budget.

Run on a trained haf-mode checkpoint:

    python -m benchmarks.bench_dap --ckpt RUN --data DIR [--seeds 3] [--sims 64] [--max-shapes 600]

For every seed each search method calibrates a fresh copy of the checkpoint on a seeded validation
batch, then the test split is evaluated (the same test subset for every method). Static HAF is the
checkpoint as trained (its policy from training, DAP during training included if it ran).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from benchmarks.report import git_sha, machine_line, write_section
from daer.eval.evaluate import evaluate
from daer.models.model import load_model
from daer.train.calibrate import calibrate_model, validation_batch

METHODS = ("static", "mcts", "random", "coordinate")
KEYS = ("attr_acc", "zeroshot_top1", "t2s_r1", "spec_p10", "grounding")


def run_method(args: argparse.Namespace, method: str, seed: int) -> dict:
    """Calibrate (unless static) and evaluate one method at one seed."""
    model = load_model(args.ckpt)
    row: dict = {"method": method, "seed": seed, "seconds": 0.0, "reward_before": None, "reward": None}
    if method != "static":
        batch = validation_batch(args.data, size=args.val_size, seed=seed)
        cal = calibrate_model(model, batch, simulations=args.sims, method=method, alpha=args.alpha, seed=seed)
        row.update(seconds=cal.seconds, reward_before=cal.reward_before, reward=cal.best_reward)
    metrics = evaluate(model, args.data, split="test", max_shapes=args.max_shapes, seed=0)
    row.update({k: metrics[k] for k in KEYS})
    return row


def _mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def markdown(args: argparse.Namespace, rows: list[dict], wall: float) -> str:
    """The RESULTS.md section."""
    lines = [
        "## DAP ablation: policy search methods at the same budget",
        "",
        f"Command: `python -m benchmarks.bench_dap --ckpt {args.ckpt} --data {args.data} --seeds {args.seeds} "
        f"--sims {args.sims} --max-shapes {args.max_shapes} --val-size {args.val_size}` (git {git_sha()})",
        f"Machine: {machine_line()}. Total {wall / 60:.1f} min.",
        f"Each method searches {args.sims} simulations on a seeded validation batch of {args.val_size} shapes "
        f"(reward α={args.alpha}); test split subset of {args.max_shapes} shapes, the same for every method; "
        f"mean ± std over {args.seeds} seeds.",
        "",
        "| method | " + " | ".join(KEYS) + " | val reward (before → after) | calibration s |",
        "|---|" + "---:|" * (len(KEYS) + 2),
    ]
    means = {}
    for method in METHODS:
        sel = [r for r in rows if r["method"] == method]
        cells = [_mean_std([r[k] for r in sel]) for k in KEYS]
        means[method] = {k: statistics.mean(r[k] for r in sel) for k in KEYS}
        if method == "static":
            reward, secs = "—", "—"
        else:
            before = statistics.mean(r["reward_before"] for r in sel)
            reward = f"{before:.4f} → {statistics.mean(r['reward'] for r in sel):.4f}"
            secs = f"{statistics.median(r['seconds'] for r in sel):.2f}"
        lines.append(f"| {method} | {' | '.join(cells)} | {reward} | {secs} |")
    ahead = [k for k in KEYS if all(means["mcts"][k] > means[m][k] for m in METHODS if m != "mcts")]
    lines += [
        "",
        f"Goal: MCTS ahead of static, random and coordinate search. Measured: MCTS is ahead on "
        f"{', '.join(ahead) if ahead else 'none'} of {', '.join(KEYS)}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="trained haf-mode run folder")
    parser.add_argument("--data", required=True, help="data set folder (val and test splits)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sims", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--val-size", type=int, default=256)
    parser.add_argument("--max-shapes", type=int, default=600)
    parser.add_argument("--no-write", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    static = None
    for seed in range(args.seeds):
        for method in METHODS:
            if method == "static":  # no search, no seed: the checkpoint is evaluated once
                static = static or run_method(args, method, 0)
                row = {**static, "seed": seed}
            else:
                row = run_method(args, method, seed)
            print(json.dumps(row), flush=True)
            rows.append(row)
    md = markdown(args, rows, time.perf_counter() - start)
    print(md)
    if not args.no_write:
        write_section("dap_ablation", md)


if __name__ == "__main__":
    main()
