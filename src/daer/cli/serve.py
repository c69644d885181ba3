"""``daer serve``: the search service and web page over an index folder."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

LOOPBACK = "127.0.0.1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from daer.errors import BadInputError
    from daer.serve.app import create_app
    from daer.serve.security import API_KEY_ENV

    if not 0 <= args.port <= 65535:
        raise BadInputError(f"--port must be 0..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise BadInputError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    app = create_app(args.index, max_upload=int(args.max_upload_mb * 2**20), cache_dir=args.cache_dir, learn=args.learn)
    if not _is_loopback(args.host):
        keyed = "POST endpoints need the API key" if os.environ.get(API_KEY_ENV) else f"no {API_KEY_ENV} is set"
        print(f"warning: listening on {args.host}, reachable from other machines ({keyed})", file=sys.stderr)
    print(f"daer serve: http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve text-to-3D search, explanations and classification over HTTP")
    p.add_argument("--index", required=True, help="index folder made by 'daer index build'")
    p.add_argument("--host", default=LOOPBACK, help=f"address to bind (default {LOOPBACK}: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload for /api/classify (default 20)")
    p.add_argument("--cache-dir", default=None, help="folder for a persistent render cache (default: memory only)")
    p.add_argument("--learn", action="store_true", help="let ERS learn success statistics from served queries")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)
