"""DAP ablation: static HAF vs MCTS, random search, coordinate ascent and a gradient fit at the same budgets.

Run on a trained haf-mode checkpoint:

    python -m benchmarks.bench_dap --ckpt RUN --data DIR [--seeds 3] [--sims 16 64 256] [--max-shapes 600]

For every seed and budget each method calibrates a fresh copy of the checkpoint on a seeded validation
batch, then the test split is evaluated (the same test subset for every method). Static HAF is the
checkpoint as trained (its policy from training, DAP during training included if it ran). The gradient
fit spends its budget as optimiser steps on the relaxed policy (one reward evaluation at the end).
A second table follows the best validation reward against the number of reward evaluations.

``--carry-over RUN`` measures instead what carrying the MCTS tree from one calibration to the next buys
(``dap_reuse``, :class:`daer.train.dap.SearchMemory`): the run's checkpoints are walked in order, as DAP
would meet them during training, and at each one a fresh MCTS, an MCTS over the space anchored at the first
policy with a fresh tree, the same with the tree carried over (decay 0.5) and random search calibrate at the
same budget, each starting from the policy it chose at the previous checkpoint (the weights are the
checkpoint's: trained without DAP, so this is the search problem DAP meets, not the training trajectory it
would shape). Reported: the validation accuracy under the chosen policy per checkpoint, and the test
metrics at the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from benchmarks.report import git_sha, machine_line, publish
from daer.eval.evaluate import evaluate
from daer.models.model import load_model
from daer.train.calibrate import apply_policy, build_cache, calibrate_model, current_policy, validation_batch
from daer.train.checkpoint import list_checkpoints
from daer.train.dap import Policy, SearchMemory, identity_assignment, reward_terms, search_policy

METHODS = ("static", "mcts", "random", "coordinate", "gradient")
KEYS = ("attr_acc", "zeroshot_top1", "t2s_r1", "spec_p10", "grounding")


def run_method(args: argparse.Namespace, method: str, seed: int, sims: int, batch: object) -> dict:
    """Calibrate (unless static) and evaluate one method at one seed and budget."""
    model = load_model(args.ckpt)
    row: dict = {"method": method, "sims": sims, "seed": seed, "seconds": 0.0, "reward_before": None, "reward": None}
    if method != "static":
        cal = calibrate_model(model, batch, simulations=sims, method=method, alpha=args.alpha, seed=seed)
        row.update(seconds=cal.seconds, reward_before=cal.reward_before, reward=cal.best_reward)
    metrics = evaluate(model, args.data, split="test", max_shapes=args.max_shapes, seed=0)
    row.update({k: metrics[k] for k in KEYS})
    return row


def _mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def traces(args: argparse.Namespace, seed: int, batch: object) -> dict[str, list[float]]:
    """Best validation reward after each number of evaluations (1 .. max budget), per search method."""
    model = load_model(args.ckpt)
    base = current_policy(model)
    cache = build_cache(model, batch, base)
    budget = max(args.sims)
    out = {}
    for method in ("mcts", "random", "coordinate"):
        _, result = search_policy(cache, base, budget, method=method, alpha=args.alpha, seed=seed)
        best = [max(result.rewards[: i + 1]) for i in range(len(result.rewards))]
        out[method] = best + best[-1:] * (budget - len(best))
    out["gradient"] = [  # the fit after each mark's number of steps, scored by the same reward
        search_policy(cache, base, steps, method="gradient", alpha=args.alpha)[0].best_reward
        for steps in _marks(budget)
    ]
    return out


def _marks(budget: int) -> list[int]:
    return sorted({1, 4, 16, 64, budget} | {b for b in (256,) if b <= budget})


def markdown(args: argparse.Namespace, rows: list[dict], curves: list[dict], wall: float) -> str:
    """The RESULTS.md section."""
    sims = " ".join(str(s) for s in args.sims)
    lines = [
        f"## {args.title}",
        "",
        f"Command: `python -m benchmarks.bench_dap --ckpt {args.ckpt} --data {args.data} --seeds {args.seeds} "
        f"--sims {sims} --max-shapes {args.max_shapes} --val-size {args.val_size}"
        + (f" --section {args.section} --title '{args.title}'" if args.section != "dap_ablation" else "")
        + f"` (git {git_sha()})",
        f"Machine: {machine_line()}. Total {wall / 60:.1f} min.",
        f"Each method searches with each budget ({sims} reward evaluations; gradient: optimiser steps) on a "
        f"seeded validation batch of {args.val_size} shapes (reward α={args.alpha}); test split subset of "
        f"{args.max_shapes} shapes, the same for every method; mean ± std over {args.seeds} seeds.",
        "",
        "| method | budget | " + " | ".join(KEYS) + " | val reward (before → after) | calibration s |",
        "|---|---:|" + "---:|" * (len(KEYS) + 2),
    ]
    means: dict[tuple[str, int], dict[str, float]] = {}
    for method in METHODS:
        for budget in [0] if method == "static" else args.sims:
            sel = [r for r in rows if r["method"] == method and (method == "static" or r["sims"] == budget)]
            cells = [_mean_std([r[k] for r in sel]) for k in KEYS]
            means[method, budget] = {k: statistics.mean(r[k] for r in sel) for k in KEYS}
            if method == "static":
                reward, secs, shown = "—", "—", "—"
            else:
                before = statistics.mean(r["reward_before"] for r in sel)
                reward = f"{before:.4f} → {statistics.mean(r['reward'] for r in sel):.4f}"
                secs, shown = f"{statistics.median(r['seconds'] for r in sel):.2f}", str(budget)
            lines.append(f"| {method} | {shown} | {' | '.join(cells)} | {reward} | {secs} |")
    marks = _marks(max(args.sims))
    lines += ["", "Best validation reward after n evaluations (mean over seeds; gradient: after n steps):", "",
              "| method | " + " | ".join(f"n={m}" for m in marks) + " |", "|---|" + "---:|" * len(marks)]  # fmt: skip
    for method in ("mcts", "random", "coordinate", "gradient"):
        if method == "gradient":
            vals = [statistics.mean(c[method][i] for c in curves) for i in range(len(marks))]
        else:
            vals = [statistics.mean(c[method][m - 1] for c in curves) for m in marks]
        lines.append(f"| {method} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    ahead = [
        (k, b) for k in KEYS for b in args.sims
        if all(means["mcts", b][k] > means[m, 0 if m == "static" else b][k] for m in METHODS if m != "mcts")
    ]  # fmt: skip
    lines += [
        "",
        "Goal: MCTS ahead of static, random, coordinate search and the gradient fit. Measured: MCTS is ahead on "
        + (", ".join(f"{k} at {b}" for k, b in ahead) if ahead else "none")
        + f" of {', '.join(KEYS)} at budgets {sims}.",
    ]
    return "\n".join(lines)


CARRY_METHODS = ("mcts", "mcts_anchored", "mcts_carried", "random")
ACCURACY_TERMS = ("t2s_r1", "s2t_r1", "zeroshot_top1", "attr_acc")


def validation_accuracy(model: object, batch: object) -> float:
    """Mean of the reward's accuracy terms under the model's policy: comparable across methods, unlike each
    search's reward, whose loss-drop term is relative to the policy that search started from."""
    policy = current_policy(model)
    terms = reward_terms(build_cache(model, batch, policy), identity_assignment(len(policy.tau)), policy)
    return statistics.mean(terms[k] for k in ACCURACY_TERMS if k in terms)


def carry_over(args: argparse.Namespace) -> str:
    """The ``--carry-over`` section: fresh, anchored and carried-over MCTS and random along a run's checkpoints."""
    start = time.perf_counter()
    checkpoints = list_checkpoints(args.carry_over)
    if len(checkpoints) < 2:
        raise SystemExit(
            f"--carry-over needs a run with at least 2 checkpoints, {args.carry_over} has {len(checkpoints)}"
        )
    accuracy: dict[tuple[str, int], list[list[float]]] = {}  # (method, budget) -> per seed, per checkpoint
    last: dict[tuple[str, int], list[dict]] = {}
    for budget in args.sims:
        for seed in range(args.seeds):
            batch = validation_batch(args.data, size=args.val_size, seed=seed)
            for method in CARRY_METHODS:
                memory = SearchMemory(decay=0.5) if method in ("mcts_anchored", "mcts_carried") else None
                policy: Policy | None = None
                values = []
                for i, (step, folder) in enumerate(checkpoints):
                    model = load_model(folder)
                    if policy is not None:
                        apply_policy(model, policy)  # what DAP chose at the previous checkpoint
                    if method == "mcts_anchored":
                        memory.tree = None  # the anchored space, a fresh tree each time
                    search = "random" if method == "random" else "mcts"
                    cal = calibrate_model(model, batch, simulations=budget, method=search, alpha=args.alpha,
                                          seed=seed * 1000 + i, memory=memory)  # fmt: skip
                    policy = cal.policy
                    values.append(validation_accuracy(model, batch))
                    print(json.dumps({"method": method, "budget": budget, "seed": seed, "step": step,
                                      "val_accuracy": values[-1], "applied": cal.applied}), flush=True)  # fmt: skip
                accuracy.setdefault((method, budget), []).append(values)
                metrics = evaluate(model, args.data, split="test", max_shapes=args.max_shapes, seed=0)
                last.setdefault((method, budget), []).append({k: metrics[k] for k in KEYS})
    steps = [s for s, _ in checkpoints]
    lines = [
        f"## {args.title}",
        "",
        f"Command: `python -m benchmarks.bench_dap --carry-over {args.carry_over} --data {args.data} "
        f"--seeds {args.seeds} --sims {' '.join(map(str, args.sims))} --max-shapes {args.max_shapes} "
        f"--val-size {args.val_size} --section {args.section} --title '{args.title}'` (git {git_sha()})",
        f"Machine: {machine_line()}. Total {(time.perf_counter() - start) / 60:.1f} min.",
        f"Checkpoints at steps {', '.join(map(str, steps))}, walked in order; at each, every method calibrates "
        f"with the budget on a seeded validation batch of {args.val_size} shapes (reward α={args.alpha}) from the "
        "policy it chose at the previous one. mcts: a fresh tree over factors of the current policy (the "
        "default); mcts_anchored: a fresh tree over factors of the first policy (SearchMemory without its tree); "
        "mcts_carried: the same anchored space with the tree carried over (statistics × 0.5, its 4 best "
        "assignments evaluated again first: --dap-reuse 0.5). Val accuracy = mean of the reward's accuracy "
        "terms (R@1 both ways, zero-shot, attribute accuracy) on the validation batch under the chosen policy, "
        "comparable across methods (each search's own reward is not: its loss-drop term is relative to its "
        f"starting policy). Mean over {args.seeds} seeds; test metrics (mean ± std) on {args.max_shapes} test "
        "shapes at the last checkpoint.",
        "",
        "| method | budget | " + " | ".join(f"val acc @ {s}" for s in steps) + " | mean | " + " | ".join(KEYS) + " |",
        "|---|---:|" + "---:|" * (len(steps) + 1 + len(KEYS)),
    ]
    for budget in args.sims:
        for method in CARRY_METHODS:
            per = accuracy[method, budget]
            cols = [statistics.mean(r[i] for r in per) for i in range(len(steps))]
            tests = [_mean_std([m[k] for m in last[method, budget]]) for k in KEYS]
            lines.append(f"| {method} | {budget} | " + " | ".join(f"{v:.4f}" for v in cols)
                         + f" | {statistics.mean(cols):.4f} | " + " | ".join(tests) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="trained haf-mode run folder")
    parser.add_argument("--carry-over", metavar="RUN", help="a haf run with several checkpoints: measure "
                        "carrying the MCTS tree from one calibration to the next instead")  # fmt: skip
    parser.add_argument("--data", required=True, help="data set folder (val and test splits)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sims", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--val-size", type=int, default=256)
    parser.add_argument("--max-shapes", type=int, default=600)
    parser.add_argument("--no-write", action="store_true", help="print only; do not touch RESULTS.md")
    parser.add_argument("--section", default="dap_ablation", help="RESULTS.md section (one per checkpoint)")
    parser.add_argument("--title", default="DAP ablation: policy search methods at the same budget")
    args = parser.parse_args(argv)
    if args.carry_over:
        publish(args.section, carry_over(args), write=not args.no_write)
        return
    if not args.ckpt:
        parser.error("--ckpt (or --carry-over) is required")
    start = time.perf_counter()
    rows, curves = [], []
    static = None
    for seed in range(args.seeds):
        batch = validation_batch(args.data, size=args.val_size, seed=seed)
        curves.append(traces(args, seed, batch))
        for method in METHODS:
            for sims in [0] if method == "static" else args.sims:
                if method == "static":  # no search, no seed: the checkpoint is evaluated once
                    static = static or run_method(args, method, 0, 0, batch)
                    row = {**static, "seed": seed}
                else:
                    row = run_method(args, method, seed, sims, batch)
                print(json.dumps(row), flush=True)
                rows.append(row)
    md = markdown(args, rows, curves, time.perf_counter() - start)
    publish(args.section, md, write=not args.no_write)


if __name__ == "__main__":
    main()
