"""Hand-written queries: spec P@1 / P@10 of trained runs on queries no caption template of ours produced.

Run: ``python -m benchmarks.bench_handwritten --run NAME=RUN [--run NAME=RUN ...] --data DIR [--split test]``.

The queries (benchmarks/queries/handwritten.jsonl) were written by hand in everyday words ("a loveseat
for two people", "a fir tree", "a stepladder that narrows towards the top"); a shape is relevant when
its category and every named attribute match. Same scoring as the generated spec queries of
``daer eval`` (global shortlist of 100, then the model's full score), per split: ``test`` holds only
attribute combinations never trained on (so a query whose values never occur together there is left
out), ``train`` the trained ones (every query has relevant shapes; the wording is still new).
Writes the ``handwritten`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.report import command_line, git_sha, machine_line, publish

QUERIES = Path(__file__).resolve().parent / "queries" / "handwritten.jsonl"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, metavar="NAME=RUN", help="a trained run folder")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", nargs="+", default=["test", "train"])
    ap.add_argument("--queries", type=Path, default=QUERIES)
    ap.add_argument("--max-shapes", type=int, default=None)
    ap.add_argument("--section", default="handwritten", help="RESULTS.md section name (default handwritten)")
    ap.add_argument("--title", default="Hand-written queries", help="the section's heading")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    from daer.data.shards import iter_records
    from daer.eval import metrics as M
    from daer.eval.evaluate import evaluate
    from daer.eval.queries import read_spec_queries
    from daer.models.model import load_model

    queries = read_spec_queries(args.queries)
    rows = []
    for split in args.split:
        records = iter_records(args.data, split, columns=["category", "attributes"])
        shapes = [(r.category, r.attributes) for r in records]
        mask, codes = M.relevance_table([(q.category, q.attributes) for q in queries], shapes)
        answerable = int(((mask @ np.bincount(codes, minlength=mask.shape[1])) > 0).sum())
        for item in args.run:
            name, _, run = item.partition("=")
            model = load_model(run)
            start = time.perf_counter()
            both = {
                "handwritten": evaluate(model, args.data, split, max_shapes=args.max_shapes, spec=queries,
                                        grounding_shapes=0),
                "generated": evaluate(model, args.data, split, max_shapes=args.max_shapes, grounding_shapes=0),
            }  # fmt: skip
            rows.append((name, model.config.mode, split, answerable, both, time.perf_counter() - start))
            print(name, split, {k: (v["spec_p1"], v["spec_p10"], v["spec_cat_p10"]) for k, v in both.items()},
                  flush=True)  # fmt: skip
    command = command_line("benchmarks.bench_handwritten", argv)
    sizes = ", ".join(f"{r[4]['handwritten']['n_shapes']:,} {r[2]}" for r in rows[:: len(args.run)])
    lines = [
        f"## {args.title} ({len(queries)} queries; {sizes} shapes)",
        "",
        f"Command: `{command.strip()}` (git {git_sha()})  ",
        f"Machine: {machine_line()}.  ",
        f"Queries: `{args.queries.name}`, written by hand in everyday words, none produced by a caption template; "
        "relevant = same category and every named attribute. Generated = the held-out-template spec queries of "
        "`daer eval` on the same shapes. A query counts only on a split where some shape is relevant to it "
        "(the test split holds only held-out combinations). cat@10 = share of the top 10 in the query's category, "
        "whatever their attributes: where it is low, the query's category word was misread.",
        "",
        "| run | mode | split | queries answerable in the split | hand-written P@1 | hand-written P@10 "
        "| hand-written cat@10 | generated P@1 | generated P@10 | generated cat@10 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, mode, split, answerable, both, _ in rows:
        h, g = both["handwritten"], both["generated"]
        lines.append(f"| {name} | {mode} | {split} | {answerable} | {h['spec_p1']:.3f} | {h['spec_p10']:.3f} | "
                     f"{h['spec_cat_p10']:.3f} | {g['spec_p1']:.3f} | {g['spec_p10']:.3f} | "
                     f"{g['spec_cat_p10']:.3f} |")  # fmt: skip
    md = "\n".join(lines)
    publish(args.section, md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
