"""Copy the final model of a benchmark training run (weights + config only) to a folder, e.g. the packaged demo model.

python -m benchmarks.export_model --runs runs/bench_train --mode haf --out src/daer/assets/demo_model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from daer.models.model import load_model


def latest_run(runs: Path, mode: str) -> Path:
    """The newest ``<stamp>-<mode>`` run folder that holds a final model."""
    found = sorted(p for p in runs.glob(f"*-{mode}") if (p / "model.safetensors").is_file())
    if not found:
        raise SystemExit(f"no finished {mode} run under {runs}")
    return found[-1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="run folder (default: the newest under --runs)")
    ap.add_argument("--runs", type=Path, default=Path("runs/bench_train"))
    ap.add_argument("--mode", default="haf")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    run = args.run or latest_run(args.runs, args.mode)
    model = load_model(run)
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    model.save(args.out, extra={"exported_from": run.name, "git": info.get("git"), "data": info.get("data")})
    size = (args.out / "model.safetensors").stat().st_size / 2**20
    print(f"exported {run} -> {args.out} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
