"""Training quality on Align3D-Synth: HAF against the global baseline, trained for the same wall-clock budget.

Run: ``python -m benchmarks.bench_train [--n 20000] [--minutes 30] [--modes haf,global] [--data DIR]
[--runs-dir DIR] [--threads N] [--parallel | --no-parallel] [--eval-max N] [--set FIELD=VALUE ...]``.

1. Builds the data set if it is missing (resumable) and fills the text-feature cache with every train
   and val caption (frozen MiniLM, batched); both are one-time preparation, timed but outside the budget.
2. Trains every mode with ``TrainConfig.time_budget_s`` = the budget: the loop (steps, DAP
   calibrations, checkpoints) stops when the budget is spent and its cosine schedule ends there,
   whatever the machine's speed. Building a run's FPS/kNN group cache is timed apart ("set-up").
   With ``--parallel`` (the default) the modes train at once, one process each with ``--threads``
   threads (1 by default), so on a 2-core machine both get the same conditions.
3. Evaluates each model on the test split (unseen attribute combinations, held-out templates) and,
   to tell under-training from a generalisation gap, on a sample of training shapes.
4. Measures embedding throughput (FPS/kNN + point encoder, no grad) with all threads.
5. Writes the ``train_quality`` section of benchmarks/RESULTS.md (``--no-write`` prints only).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.report import command_line, git_sha, machine_line, publish

GOALS: tuple[tuple[str, float], ...] = (
    ("attr_acc", 0.88), ("zeroshot_top1", 0.97), ("spec_p10", 0.90), ("grounding", 0.6)
)  # fmt: skip
MARGINS: tuple[tuple[str, float], ...] = (("attr_acc", 0.05), ("spec_p10", 0.05))  # HAF minus global
EMBED_GOAL = 300.0  # shapes/s for the small config on 2 cores
DIAG_SHAPES = 1000  # training shapes evaluated for the diagnosis


# ----------------------------------------------------------------------------------------------
# preparation


def ensure_data(data: Path, n: int, seed: int, workers: int) -> tuple[dict[str, Any], float | None]:
    """The data set's manifest, building (or finishing) it first when needed; build seconds or None."""
    from daer.data.build import build_synth
    from daer.data.shards import read_manifest

    try:
        manifest = read_manifest(data)
        if int(manifest["n"]) == n:
            return manifest, None
    except Exception:  # missing or unfinished: build (the build resumes where it stopped)
        pass
    t0 = time.perf_counter()
    manifest = build_synth(data, n, seed=seed, workers=workers, progress=True)
    return manifest, time.perf_counter() - t0


def prefill_text(data: Path, config: str, swaps: bool) -> tuple[int, float]:
    """Encode every train and val caption (and, with ``swaps``, every attribute-swap negative) once into
    the text-feature cache; (captions, seconds)."""
    import torch

    from daer.data.shards import iter_records
    from daer.models.model import create_model

    t0 = time.perf_counter()
    captions: dict[str, None] = {}
    for split in ("train", "val"):
        for rec in iter_records(data, split, columns=["captions"]):
            captions.update(dict.fromkeys(rec.captions))
    if swaps:
        from daer.train.hard_negatives import SwapNegatives

        captions.update(dict.fromkeys(SwapNegatives.from_folder(data).captions()))
    model = create_model(config)
    if getattr(model.text, "cache", None) is None:
        return 0, 0.0
    texts = list(captions)
    with torch.no_grad():
        for start in range(0, len(texts), 256):
            model.encode_text(texts[start : start + 256])
    return len(texts), time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------
# one mode: train, evaluate (runs in its own process)


def run_mode(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one mode under the time budget, then evaluate it; returns (and writes) its results."""
    import torch

    torch.set_num_threads(spec["threads"])
    from daer.eval.evaluate import evaluate
    from daer.models.model import load_model
    from daer.train.train_config import TrainConfig
    from daer.train.trainer import build_trainer

    cfg = TrainConfig(**spec["train"])
    t0 = time.perf_counter()
    trainer = build_trainer(cfg)
    setup_s = time.perf_counter() - t0
    summary = trainer.fit()
    dap = next((cb for cb in trainer.callbacks if hasattr(cb, "calibrations")), None)
    epochs = trainer.step / trainer.sampler.batches_per_epoch
    del trainer
    model = load_model(cfg.out)
    t0 = time.perf_counter()
    test = evaluate(model, cfg.data, "test", max_shapes=spec["eval_max"])
    eval_s = time.perf_counter() - t0
    train_split = evaluate(model, cfg.data, "train", max_shapes=DIAG_SHAPES) if spec["diagnose"] else None
    out = {
        "mode": cfg.mode,
        "summary": summary,
        "setup_s": setup_s,
        "epochs": epochs,
        "dap_calibrations": getattr(dap, "calibrations", 0),
        "dap_seconds": getattr(dap, "seconds", 0.0),
        "policy": model.haf.get_policy() if model.haf is not None else None,
        "test": test,
        "eval_s": eval_s,
        "train_split": train_split,
    }
    Path(spec["result"]).write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out


def _child(spec: dict[str, Any]) -> None:
    try:
        run_mode(spec)
    except BaseException as e:  # noqa: BLE001 (reported by the parent)
        Path(spec["result"]).write_text(json.dumps({"error": f"{type(e).__name__}: {e}"}), encoding="utf-8")
        raise


def run_all(specs: list[dict[str, Any]], parallel: bool) -> dict[str, dict[str, Any]]:
    """Run every mode in its own (spawned) process, all at once or one after another."""
    ctx = mp.get_context("spawn")
    results: dict[str, dict[str, Any]] = {}
    batches = [specs] if parallel else [[s] for s in specs]
    for batch in batches:
        procs = [ctx.Process(target=_child, args=(s,), name=f"bench-{s['train']['mode']}") for s in batch]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        for s, p in zip(batch, procs, strict=True):
            path = Path(s["result"])
            res = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"error": f"exit {p.exitcode}"}
            if "error" in res:
                raise RuntimeError(f"mode {s['train']['mode']} failed: {res['error']}")
            results[s["train"]["mode"]] = res
    return results


# ----------------------------------------------------------------------------------------------
# embedding throughput


def embed_rate(run: Path, data: Path, threads: int, batch: int = 64, shapes: int = 1024) -> dict[str, float]:
    """Shapes/s of ``encode_points`` (FPS/kNN included) on test shapes, and the share spent in FPS/kNN."""
    import numpy as np
    import torch

    from daer.data.shards import load_points
    from daer.models.model import load_model

    torch.set_num_threads(threads)
    model = load_model(run)
    _, pts = load_points(data, "test")
    n = model.config.n_points
    if pts.shape[1] > n:  # the fixed subset training serves
        pts = pts[:, np.sort(np.random.default_rng(0).permutation(pts.shape[1])[:n])]
    x = torch.from_numpy(np.ascontiguousarray(pts[:shapes]))
    with torch.inference_mode():
        model.encode_points(x[:batch])  # warm-up
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            model.encode_points(x[i : i + batch])
        total = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            model.precompute_groups(x[i : i + batch])
        groups = time.perf_counter() - t0
    return {"shapes_per_s": len(x) / total, "groups_share": groups / total, "shapes": len(x), "batch": batch}


# ----------------------------------------------------------------------------------------------
# report


def _f(v: Any, nd: int = 3) -> str:
    return "–" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def diagnose(key: str, goal: float, res: dict[str, Any]) -> str:
    """What limits a missed absolute goal, read from the same model's training-split figure."""
    test, train = res["test"].get(key), (res.get("train_split") or {}).get(key)
    n_train = (res.get("train_split") or {}).get("n_shapes")
    s = res["summary"]
    budget = f"{s['step']} steps, {res['epochs']:.1f} epochs in {s['train_seconds'] / 60:.1f} min"
    if train is None:
        return f"{key} {test:.3f} < {goal} ({budget}; run without --no-diagnose to see train vs test)"
    if train < goal:
        return (
            f"{key}: {test:.3f} on test and only {train:.3f} on {n_train} training shapes, so the model "
            f"does not reach the goal even on what it trained on: under-trained or too small for the budget ({budget})"
        )
    return (
        f"{key}: {train:.3f} on training shapes but {test:.3f} on test: a generalisation gap to unseen "
        f"attribute combinations and held-out templates ({budget})"
    )


def render(args: argparse.Namespace, info: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    modes = list(results)
    lines = [f"## Training quality (`{args.config}` config, {info['n']:,} shapes, {args.minutes:g} min per mode)", ""]
    lines.append(f"Command: `{info['command']}` (git {git_sha()})  ")
    lines.append(f"Machine: {machine_line()}; 1-min load average {info['load_start']:.2f} at the start, "
                 f"{info['load_end']:.2f} at the end.  ")  # fmt: skip
    how = (
        f"all at once, one process each with {args.threads} thread(s)"
        if args.parallel
        else f"one after another, {args.threads} thread(s)"
    )
    lines.append(f"Modes trained {how}.")
    lines.append("")
    c = info["counts"]
    built = "reused" if info["build_s"] is None else f"built in {info['build_s']:.0f} s"
    lines.append(
        f"Data: Align3D-Synth seed {info['seed']}, {info['n']:,} shapes (train {c.get('train', 0):,}, "
        f"val {c.get('val', 0):,}, test {c.get('test', 0):,}), {built}; text-feature cache filled with "
        f"{info['prefill_captions']:,} captions in {info['prefill_s']:.0f} s (one-time, outside the budget)."
    )
    t = info["train"]
    lines.append(
        f"Settings: batch {t['batch_size']}, AdamW lr {t['lr']:g} (warm-up {t['warmup_steps']} steps, cosine to "
        f"{t['min_lr_ratio']:g}x over the time budget), weight decay {t['weight_decay']:g}, clip {t['grad_clip']:g}, "
        f"fine loss `{t['fine_loss']}` x{t['fine_weight']:g}, attribute-swap negatives x{t['swap_negatives']:g}, "
        f"category-grouped batches {t['batch_categories'] or 'off'}, augment {t['augment']}, DAP {t['dap']} "
        f"(every {t['dap_every']} steps, {t['dap_sims']} simulations; haf only), seed {t['seed']}"
        + (f", overrides {info['overrides']}" if info["overrides"] else "")
        + "."
    )
    lines += ["", "Test split" + (f" ({args.eval_max} shapes sampled)" if args.eval_max else "") + ":", ""]
    head = "| metric | " + " | ".join(modes) + (" | haf − global |" if {"haf", "global"} <= set(modes) else " |")
    lines += [head, "|---|" + "---:|" * (head.count("|") - 2)]
    from daer.eval.evaluate import EVAL_KEYS

    for k in EVAL_KEYS:
        vals = [results[m]["test"].get(k) for m in modes]
        row = f"| {k} | " + " | ".join(_f(v) for v in vals) + " |"
        if {"haf", "global"} <= set(modes):
            a, b = results["haf"]["test"].get(k), results["global"]["test"].get(k)
            row += f" {_f(a - b) if isinstance(a, float) and isinstance(b, float) else '–'} |"
        lines.append(row)
    lines += ["", "Training:", ""]
    lines += [
        "| mode | steps | epochs | loop (s) | set-up (s) | shapes/s | final loss (global / fine) | DAP runs (s) | "
        "eval (s) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for m in modes:
        r, s = results[m], results[m]["summary"]
        lines.append(
            f"| {m} | {s['step']:,} | {r['epochs']:.1f} | {s['train_seconds']:.0f} | {r['setup_s']:.0f} | "
            f"{s['shapes_per_s']:.1f} | {_f(s.get('loss_global'))} / {_f(s.get('loss_fine'))} | "
            f"{r['dap_calibrations']} ({r['dap_seconds']:.0f}) | {r['eval_s']:.0f} |"
        )
    if "haf" in results and results["haf"].get("policy"):
        p = results["haf"]["policy"]
        lines.append("")
        lines.append(
            f"HAF policy at the end: tau {[round(x, 3) for x in p['tau']]}, level weights "
            f"{[round(x, 3) for x in p['level_weight']]}, mix {p['mix']:.3f}."
        )
    e = info["embed"]
    lines.append("")
    lines.append(
        f"Embedding throughput (`{e['mode']}` model, {e['threads']} thread(s), batches of {e['batch']}, "
        f"{e['shapes']} test shapes, FPS/kNN included): **{e['shapes_per_s']:.0f} shapes/s**, of which FPS/kNN "
        f"take {100 * e['groups_share']:.0f}% of the time."
    )
    lines += ["", "Goals:", ""]
    missed: list[str] = []
    main = "haf" if "haf" in results else modes[0]
    for k, goal in GOALS:
        v = results[main]["test"].get(k)
        ok = v is not None and v >= goal
        lines.append(f"- {main} {k} >= {goal}: {_f(v)}, **{'met' if ok else 'missed'}**")
        if not ok and v is not None:
            missed.append(diagnose(k, goal, results[main]))
    if {"haf", "global"} <= set(modes):
        for k, margin in MARGINS:
            a, b = results["haf"]["test"].get(k), results["global"]["test"].get(k)
            ok = a is not None and b is not None and a - b >= margin
            verdict = "met" if ok else "missed"
            lines.append(f"- haf − global {k} >= {margin}: {_f(a)} − {_f(b)} = {_f(a - b)}, **{verdict}**")
            if not ok:
                tr = [(results[m].get("train_split") or {}).get(k) for m in ("haf", "global")]
                extra = f" (on training shapes {_f(tr[0])} vs {_f(tr[1])})" if None not in tr else ""
                steps = [results[m]["summary"]["step"] for m in ("haf", "global")]
                missed.append(
                    f"haf − global {k} = {_f(a - b)}{extra}; in the same time the global baseline took "
                    f"{steps[1]:,} steps against haf's {steps[0]:,} (its step is cheaper)"
                )
    ok = e["shapes_per_s"] >= EMBED_GOAL
    lines.append(f"- embedding >= {EMBED_GOAL:.0f} shapes/s: {e['shapes_per_s']:.0f}, **{'met' if ok else 'missed'}**")
    if not ok:
        missed.append(
            f"embedding {e['shapes_per_s']:.0f} shapes/s: FPS/kNN take {100 * e['groups_share']:.0f}% of the time, "
            "the point encoder the rest"
        )
    if missed:
        lines += ["", "What limits the missed goals (from this run's own figures):", ""]
        lines += [f"- {m}" for m in missed]
    if any(results[m].get("train_split") for m in modes):
        n_train = max((results[m].get("train_split") or {}).get("n_shapes") or 0 for m in modes)
        lines += ["", f"Same models on {n_train} training shapes (seen combinations, training templates):", ""]
        lines += ["| metric | " + " | ".join(modes) + " |", "|---|" + "---:|" * len(modes)]
        for k in ("t2s_r1", "s2t_r1", "zeroshot_top1", "attr_acc", "spec_p10"):
            lines.append(
                f"| {k} | " + " | ".join(_f((results[m].get("train_split") or {}).get(k)) for m in modes) + " |"
            )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set needs FIELD=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="Align3D-Synth shapes (default 20000)")
    ap.add_argument("--minutes", type=float, default=30.0, help="training budget per mode (default 30)")
    ap.add_argument("--modes", default="haf,global", help="comma-separated modes (default haf,global)")
    ap.add_argument("--data", type=Path, default=None, help="data set folder (default RUNS_DIR/synth-N)")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/bench_train"), help="where runs go")
    ap.add_argument("--config", default="small", help="model config (default small)")
    ap.add_argument("--threads", type=int, default=None, help="threads per training process (default 1 in "
                    "parallel, else all cores)")  # fmt: skip
    ap.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=False,
                    help="train the modes at once (default off: side by side they slow each other)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="data and training seed (default 0)")
    ap.add_argument("--eval-max", type=int, default=None, help="evaluate a sample of this many test shapes")
    ap.add_argument("--diagnose", action=argparse.BooleanOptionalAction, default=True,
                    help=f"also evaluate {DIAG_SHAPES} training shapes (default on)")  # fmt: skip
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="TrainConfig override, JSON value (repeatable), e.g. --set lr=2e-3")  # fmt: skip
    ap.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS.md")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("haf", "global") for m in modes) or len(set(modes)) != len(modes):
        raise SystemExit(f"--modes must list haf and/or global once each, got {args.modes!r}")
    if args.minutes <= 0 or args.n < 100:
        raise SystemExit("--minutes must be > 0 and --n >= 100")
    cores = os.cpu_count() or 1
    if args.threads is None:
        args.threads = 1 if args.parallel else cores
    data = args.data or args.runs_dir / f"synth-{args.n}-s{args.seed}"
    overrides = _parse_set(args.overrides)
    load_start = os.getloadavg()[0]

    import torch

    torch.set_num_threads(cores)
    from daer.eval.evaluate import EVAL_KEYS
    from daer.train.train_config import TrainConfig

    manifest, build_s = ensure_data(data, args.n, args.seed, workers=min(2, cores))
    swaps = float(overrides.get("swap_negatives", TrainConfig.swap_negatives)) > 0
    n_caps, prefill_s = prefill_text(data, args.config, swaps)
    print(f"data {data}: {manifest['counts']}; text cache filled with {n_caps} captions in {prefill_s:.0f} s")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    specs = []
    for mode in modes:
        out = args.runs_dir / f"{stamp}-{mode}"
        base = TrainConfig(data=str(data), out=str(out), config=args.config, mode=mode, seed=args.seed)
        train = {**base.to_dict(), **overrides, "mode": mode, "data": str(data), "out": str(out)}
        # The budget ends the run; steps stays a cap (none unless --set steps=N).
        train.update(steps=int(overrides.get("steps", 10**7)), time_budget_s=args.minutes * 60.0, progress=False)
        TrainConfig(**train)  # a bad override fails here, before any training
        specs.append({"train": train, "threads": args.threads, "eval_max": args.eval_max,
                      "diagnose": args.diagnose, "result": str(args.runs_dir / f"{stamp}-{mode}.json")})  # fmt: skip
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    results = run_all(specs, args.parallel)
    for m, r in results.items():
        print(m, json.dumps({k: r["test"].get(k) for k in EVAL_KEYS}), f"steps {r['summary']['step']}", flush=True)

    pick = "haf" if "haf" in results else modes[0]
    embed = embed_rate(Path(results[pick]["summary"]["run"]), data, threads=cores)
    embed.update(mode=pick, threads=cores)
    cmd = command_line("benchmarks.bench_train", argv)
    info = {
        "command": cmd.strip(),
        "n": int(manifest["n"]),
        "seed": args.seed,
        "counts": manifest["counts"],
        "build_s": build_s,
        "prefill_captions": n_caps,
        "prefill_s": prefill_s,
        "train": specs[0]["train"],
        "overrides": overrides,
        "embed": embed,
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
    }
    md = render(args, info, results)
    (args.runs_dir / f"{stamp}-report.json").write_text(
        json.dumps({"info": info, "results": results}, indent=1), encoding="utf-8"
    )
    publish("train_quality", md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
