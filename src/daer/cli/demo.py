"""``daer demo``: the whole pipeline on the embedded default data, with progress the whole way.

Align3D-Synth data → model (the packaged checkpoint trained by ``make demo-train``, or a short training
run when none is packaged) → evaluation → ERS index → example queries → HTML gallery with per-word
heat maps → how to open the web page.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from daer.models.packaged import packaged_checkpoint

EXAMPLE_QUERIES = (
    "a chair with three legs and armrests",
    "a four-legged chair without armrests",
    "a wide bookshelf with five shelves",
    "an airplane with four engines and swept wings",
    "a two-storey house with a chimney",
    "a floor lamp with a cone-shaped shade",
)


def _stage(number: int, title: str) -> float:
    print(f"\n== {number}. {title}", flush=True)
    return time.perf_counter()


def _done(t0: float) -> None:
    print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)


def _model(args: argparse.Namespace, data_dir: Path, out: Path) -> Path:
    if args.ckpt:
        return Path(args.ckpt)
    shipped = packaged_checkpoint()
    if shipped is not None and not args.train:
        print(f"   using the packaged checkpoint {shipped} (reproduce it with `make demo-train`)")
        return shipped
    from daer.train.train_config import TrainConfig
    from daer.train.trainer import train

    run = out / "run"
    print(f"   training the {args.train_config} model for {args.train_steps} steps (no packaged checkpoint or --train)")
    cfg = TrainConfig(
        data=str(data_dir), out=str(run), config=args.train_config, steps=args.train_steps, batch_size=32,
        dap_every=max(1, args.train_steps // 2), resume=(run / "train_config.json").is_file(),
    )  # fmt: skip
    train(cfg)
    return run


def _table(results: list[dict]) -> None:
    for res in results:
        print(f"\n   “{res['query']}”  ({res['latency_ms']:.1f} ms)")
        for rank, hit in enumerate(res["results"], start=1):
            print(f"   {rank:>2}. {hit['score']:.3f}  {hit['category']:<10} {hit['caption'][:80]}")


def cmd_demo(args: argparse.Namespace) -> int:
    from daer.data.build import build_synth
    from daer.data.info import dataset_info, format_info
    from daer.data.shards import iter_records, read_manifest
    from daer.eval.evaluate import evaluate
    from daer.models.model import load_model
    from daer.retrieval.indexer import build_index
    from daer.retrieval.searcher import Searcher
    from daer.viz.gallery import write_gallery
    from daer.viz.sheet import contact_sheet, select_diverse

    start = time.perf_counter()
    out = Path(args.out)
    data_dir = out / "data"
    t0 = _stage(1, f"Align3D-Synth: {args.n:,} shapes at {args.points} points, seed {args.seed} -> {data_dir}")
    build_synth(data_dir, args.n, n_points=args.points, seed=args.seed, workers=args.workers)
    print(format_info(dataset_info(data_dir), read_manifest(data_dir)))
    sheet = contact_sheet(select_diverse(iter_records(data_dir), 16), out / "preview.png", n=16)
    print(f"   preview sheet: {sheet}")
    _done(t0)

    t0 = _stage(2, "Model")
    ckpt = _model(args, data_dir, out)
    model = load_model(ckpt)
    _done(t0)

    t0 = _stage(3, f"Evaluation on the test split (unseen attribute combinations), {args.eval_shapes} shapes")
    metrics = evaluate(model, data_dir, split="test", max_shapes=args.eval_shapes, progress=True)
    print("   " + "  ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float)))
    _done(t0)

    t0 = _stage(4, "ERS index")
    index_dir = out / "index"
    build_index(ckpt, data_dir, index_dir, method="ers", model=model)
    _done(t0)

    t0 = _stage(5, "Example queries (ERS candidates, HAF re-rank)")
    searcher = Searcher(index_dir, model=model)
    results = searcher.search_many(list(EXAMPLE_QUERIES), k=5)
    _table(results)
    _done(t0)

    t0 = _stage(6, "Gallery")
    points = {r.id: r.points for r in iter_records(data_dir)}
    explain = model.explain if model.config.mode == "haf" else None
    page = write_gallery(results, points.__getitem__, explain, out / "gallery", k=5)
    print(f"   open {page.resolve()} in a browser")
    _done(t0)

    print(f"\nDone in {(time.perf_counter() - start) / 60:.1f} min. To search in the web page:")
    print(f"   .venv/bin/daer serve --index {index_dir}   then open http://127.0.0.1:8000/")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on a small Align3D-Synth set")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--n", type=int, default=2000, help="shapes to generate (default 2000)")
    p.add_argument("--points", type=int, default=2048, help="points per shape (default 2048)")
    p.add_argument("--seed", type=int, default=1, help="data seed (default 1: shapes the packaged model never saw)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--ckpt", default=None, help="use this checkpoint instead of the packaged one")
    p.add_argument("--train", action="store_true", help="train a model even if one is packaged")
    p.add_argument("--train-steps", type=int, default=300, help="steps when training (default 300)")
    p.add_argument("--train-config", default="small", help="model config when training (default small)")
    p.add_argument("--eval-shapes", type=int, default=300, help="test shapes to evaluate (default 300)")
    p.set_defaults(func=cmd_demo)
