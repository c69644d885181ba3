"""Memory against data-set size: what training holds for its split, in memory and memory-mapped.

Run: ``python -m benchmarks.bench_memory --data DIR [DIR ...] [--steps 20] [--runs-dir DIR] [--no-write]``.

For each Align3D-Synth folder (built beforehand with ``daer data synth``), in a fresh process each:

- ``split in memory``: the train split as :meth:`ShapeTextDataset.from_folder` held it before (points,
  part labels and stored groups read into arrays), then one pass of batches of 64 over 2,000 shapes;
- ``split mapped``: the same with a cache folder (``SplitArray``: the arrays are ``.npy`` files mapped
  into memory, what training now does), first run (files written) and second run (files reused);
- ``training``: ``daer train``'s trainer (``small``, haf, DAP off) for ``--steps`` steps.

Reported: seconds to ready (the first batch served, or the first training step done), and the peak
*anonymous* resident memory (RssAnon, sampled every 20 ms), the memory the process needs: pages of a
mapped file are counted apart (RssFile at the end), since the kernel drops them under pressure and
reads them back. Writes the ``memory`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.report import command_line, git_sha, machine_line, publish

SERVED = 2000  # shapes served in the data-set modes (a pass of batches of 64)


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakAnon:
    """Samples RssAnon every ``every`` seconds in a thread; ``peak`` in MiB."""

    def __init__(self, every: float = 0.02) -> None:
        self.peak, self._every, self._stop = 0, every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kib("RssAnon"))
            self._stop.wait(self._every)

    def __enter__(self) -> PeakAnon:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib("RssAnon"))


def _measure(mode: str, data: str, cache: str, steps: int, queue: Any) -> None:
    """One measurement in a fresh process; puts a result dict on ``queue``."""
    import torch

    from daer.data.dataset import ShapeTextDataset, collate
    from daer.models.config import load_config
    from daer.models.pointops import precompute_groups
    from daer.train.train_config import TrainConfig
    from daer.train.trainer import Trainer

    torch.set_num_threads(2)
    base = _status_kib("RssAnon")
    t0 = time.perf_counter()
    with PeakAnon() as peak:
        if mode == "training":
            cfg = TrainConfig(data=data, out=cache, mode="haf", dap=False, steps=steps, progress=False)
            trainer = Trainer(cfg)
            loader = torch.utils.data.DataLoader(trainer.dataset, batch_sampler=trainer._sampler(0), collate_fn=collate)
            batches = iter(loader)
            trainer.train_step(next(batches))
            ready = time.perf_counter() - t0
            for _ in range(steps - 1):
                trainer.train_step(next(batches))
            n = len(trainer.dataset)
        else:
            mc = load_config("small")
            kw: dict[str, Any] = {
                "labels": True,
                "group_config": mc,
                "groups_fn": lambda p: precompute_groups(p, mc.level_sizes, mc.level_k),
                "n_points": mc.n_points,
            }
            if mode != "memory":
                kw["cache_dir"] = cache
            ds = ShapeTextDataset.from_folder(data, "train", **kw)
            ds.__getitems__(list(range(64)))
            ready = time.perf_counter() - t0
            for start in range(64, min(SERVED, len(ds)), 64):
                ds.__getitems__(list(range(start, min(start + 64, len(ds)))))
            n = len(ds)
    queue.put(
        {
            "mode": mode,
            "shapes": n,
            "ready_s": ready,
            "peak_anon_mib": (peak.peak - base) / 1024,
            "file_mib": _status_kib("RssFile") / 1024,
        }  # fmt: skip
    )


def run(mode: str, data: Path, cache: Path, steps: int) -> dict[str, Any]:
    """``_measure`` in a spawned process (its memory is its own)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(mode, str(data), str(cache), steps, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", required=True, help="Align3D-Synth folders of different sizes")
    ap.add_argument("--steps", type=int, default=20, help="training steps in the training mode (default 20)")
    ap.add_argument("--runs-dir", default="runs/bench_memory", help="scratch folder (cache files, runs)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    scratch = Path(args.runs_dir)
    rows = []
    for data in map(Path, args.data):
        cache = scratch / data.name / "cache"
        shutil.rmtree(scratch / data.name, ignore_errors=True)
        for mode, label in (("memory", "split in memory"), ("mapped", "split mapped, files written"),
                            ("mapped", "split mapped, files reused")):  # fmt: skip
            rows.append({**run(mode, data, cache, args.steps), "label": label, "data": data.name})
            print(json.dumps(rows[-1]), flush=True)
        rows.append({**run("training", data, scratch / data.name / "run", args.steps), "label": "training",
                     "data": data.name})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    lines = [
        "## Memory against data-set size (training's split: in memory and memory-mapped)",
        "",
        f"Command: `{command_line('benchmarks.bench_memory', argv)}` (git {git_sha()})  ",
        f"Machine: {machine_line()}.  ",
        f"Data-set modes serve batches of 64 over the first {SERVED} training shapes (`small` config: part labels "
        f"and stored groups); training = the trainer (`small`, haf, DAP off) for {args.steps} steps. Peak anonymous "
        "memory = RssAnon above the process's start, sampled every 20 ms; mapped file pages (RssFile at the end, "
        "the libraries' code included) are counted apart: the kernel drops them under pressure and reads them "
        "back. Ready = first batch served / first step done (the training row includes loading MiniLM).",
        "",
        "| data | train shapes | what | ready s | peak anonymous MiB | mapped file MiB at end |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['data']} | {r['shapes']:,} | {r['label']} | {r['ready_s']:.1f} | "
                     f"{r['peak_anon_mib']:,.0f} | {r['file_mib']:,.0f} |")  # fmt: skip
    text = "\n".join(lines)
    publish("memory", text, write=not args.no_write)


if __name__ == "__main__":
    main()
