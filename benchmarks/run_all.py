"""``make bench``: regenerate benchmarks/RESULTS.md from every benchmark command, in dependency order.

Quick ones first; the training benchmark (30 minutes per mode, both modes at once) produces the
checkpoint that the DAP ablation and the model-retrieval benchmark then use. ``--quick`` skips the
long ones (training, 1M retrieval) and reuses the newest training run if there is one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from benchmarks.export_model import latest_run

DATA = "runs/bench_train/synth-20000"


def run(*args: str) -> None:
    cmd = [sys.executable, "-m", *args]
    print("\n$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 30-minute training and the 1M retrieval run")
    args = ap.parse_args(argv)
    run("benchmarks.bench_synth")
    run("benchmarks.bench_model_step")
    run("benchmarks.bench_embed")
    run("benchmarks.bench_retrieval")
    if not args.quick:
        run("benchmarks.bench_retrieval", "--full")
        run("benchmarks.bench_ablation", "--data", DATA)
        run("benchmarks.bench_train", "--data", DATA, "--minutes", "10", "--set", "dap=false", "--no-diagnose")
    runs = Path("runs/bench_train")
    if runs.is_dir() and any(runs.glob("*-haf")):
        haf = str(latest_run(runs, "haf"))
        glob_run = str(latest_run(runs, "global")) if any(runs.glob("*-global")) else None
        run("benchmarks.bench_diagnose", "--run", f"haf={haf}", *(["--run", f"global={glob_run}"] if glob_run else []),
            "--data", DATA)  # fmt: skip
        run("benchmarks.bench_dap", "--ckpt", haf, "--data", DATA)
        run("benchmarks.bench_model_retrieval", "--ckpt", haf, "--data", DATA)
    run("benchmarks.bench_service")


if __name__ == "__main__":
    main()
