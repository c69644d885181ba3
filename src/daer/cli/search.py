"""``daer search``: text queries against an index folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from daer.errors import BadInputError


def _queries(args: argparse.Namespace) -> list[str]:
    if args.queries:
        try:
            lines = Path(args.queries).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise BadInputError(f"cannot read queries file {args.queries}: {e}") from e
        queries = [line.strip() for line in lines if line.strip()]
        if not queries:
            raise BadInputError(f"queries file {args.queries} holds no query")
        return queries
    if not args.query or not args.query.strip():
        raise BadInputError("give a QUERY or --queries FILE")
    return [args.query]


def cmd_search(args: argparse.Namespace) -> int:
    from daer.retrieval.searcher import Searcher

    if args.query and args.queries:
        raise BadInputError("give either a QUERY or --queries FILE, not both")
    if args.k < 1:
        raise BadInputError(f"-k must be >= 1, got {args.k}")
    queries = _queries(args)
    searcher = Searcher(args.index, ckpt=args.ckpt, verify=not args.no_verify)
    for res in searcher.search_many(queries, k=args.k, rerank=not args.no_rerank):
        if args.json:
            print(json.dumps(res, ensure_ascii=False), flush=True)
            continue
        print(f"{res['query']}  ({res['latency_ms']:.1f} ms)")
        for rank, r in enumerate(res["results"], 1):
            attrs = ", ".join(f"{k}={v}" for k, v in r["attributes"].items())
            print(f"  {rank:>2}. {r['score']:.4f}  {r['id']}  [{r['category']}] {attrs}\n      {r['caption']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an index with text queries")
    p.add_argument("query", nargs="?", default=None, help="query text")
    p.add_argument("--index", required=True, help="index folder (from daer index build)")
    p.add_argument("--queries", default=None, help="file with one query per line")
    p.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--json", action="store_true", help='one JSON line per query: {"query","latency_ms","results"}')
    p.add_argument("--no-rerank", action="store_true", help="global cosine only, no HAF re-ranking")
    p.add_argument("--ckpt", default=None, help="checkpoint (default: the one recorded in the index)")
    p.add_argument("--no-verify", action="store_true", help="skip checksum verification of the index files")
    p.set_defaults(func=cmd_search)
