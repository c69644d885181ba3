"""Model cost on CPU: one training step (forward + backward) and embedding throughput of a named config.

Run: ``python -m benchmarks.bench_model_step [--config small] [--batch 64] [--threads 1] [--runs 5]``.
Random unit-sphere clouds and distinct short captions; FPS/kNN groups are precomputed (as the training
loader caches them) and frozen text features are cached (as in training after the first epoch).
The step is global InfoNCE + fine InfoNCE over the in-batch HAF scores (mode haf) or global only.
Both wall and CPU seconds are reported: the machine is shared and CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from benchmarks.report import git_sha, machine_line, publish
from daer.models.model import create_model
from daer.models.text_cache import TextFeatureCache


def _clouds(b: int, n: int, seed: int) -> torch.Tensor:
    x = torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=-1, keepdim=True)


def _timed(fn, runs: int) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``fn`` over ``runs`` calls (after one warm-up)."""
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def measure(config: str, mode: str, batch: int, runs: int, cache: TextFeatureCache) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(config, mode=mode, text_cache=cache)
    n = model.config.n_points
    x = _clouds(batch, n, 0)
    captions = [f"a {w} chair with {i % 5 + 2} legs and a tall back" for i, w in enumerate(["red", "big"] * batch)][
        :batch
    ]
    labels = torch.arange(batch)
    t0 = time.perf_counter()
    groups = model.precompute_groups(x)
    groups_s = time.perf_counter() - t0

    def step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(x, captions, groups=groups)
        s = out["logit_scale"] * out["text_global"] @ out["shape_global"].T
        loss = (F.cross_entropy(s, labels) + F.cross_entropy(s.T, labels)) / 2
        if "fine_scores" in out:
            f = out["logit_scale"] * out["fine_scores"]
            loss = loss + (F.cross_entropy(f, labels) + F.cross_entropy(f.T, labels)) / 2
        loss.backward()

    def embed() -> None:
        with torch.no_grad():
            model.encode_points(x)  # groups computed inside, as for new shapes

    step_wall, step_cpu = _timed(step, runs)
    emb_wall, emb_cpu = _timed(embed, max(1, runs // 2))
    return {
        "groups_s": groups_s,
        "step_wall": step_wall,
        "step_cpu": step_cpu,
        "embed_rate": batch / emb_wall,
        "embed_rate_cpu": batch / emb_cpu,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = TextFeatureCache(os.path.join(tmp, "text.sqlite"))
        for mode in ("haf", "global"):
            r = rows[mode] = measure(args.config, mode, args.batch, args.runs, cache)
            print(
                f"{mode}: step {r['step_wall']:.3f} s wall / {r['step_cpu']:.3f} s CPU; groups {r['groups_s']:.3f} s; "
                f"embed {r['embed_rate']:.0f} shapes/s wall ({r['embed_rate_cpu']:.0f} by CPU time)",
                flush=True,
            )
    load = os.getloadavg()[0]
    cmd = f"python -m benchmarks.bench_model_step --config {args.config} --batch {args.batch} --threads {args.threads}"
    lines = "\n".join(
        f"| {m} | {r['params']:,} | {r['step_wall']:.3f} | {r['step_cpu']:.3f} | {r['groups_s']:.3f} | "
        f"{r['embed_rate']:.0f} | {r['embed_rate_cpu']:.0f} |"
        for m, r in rows.items()
    )
    md = f"""## Model step cost (`{args.config}` config)

Command: `{cmd} --runs {args.runs}` (git {git_sha()})
Machine: {machine_line()}; {args.threads} thread(s); 1-min load average at the end {load:.2f} (shared machine).

One training step = forward + backward of {args.batch} shapes, cached FPS/kNN groups, cached frozen text
features, global InfoNCE (+ fine InfoNCE over in-batch HAF scores in mode haf). Embedding = no-grad point
encoding including FPS/kNN.

| mode | trainable params | step wall (s) | step CPU (s) | FPS+kNN of the batch (s) | embed/s wall | embed/s CPU |
|---|---:|---:|---:|---:|---:|---:|
{lines}
"""
    publish("model_step", md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
