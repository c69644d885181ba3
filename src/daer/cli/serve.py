"""``daer serve``: the search service and web page over an index folder."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from daer.utils.threads import ENV as THREADS_ENV

LOOPBACK = "127.0.0.1"
API_KEY_ENV = "DAER_API_KEY"  # the same name as daer.serve.security.API_KEY_ENV (not imported: keeps --help light)


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

    if not 0 <= args.port <= 65535:
        raise BadInputError(f"--port must be 0..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise BadInputError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    key = os.environ.get(API_KEY_ENV) or None
    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").strip() or None
        except OSError as e:
            raise BadInputError(f"--api-key-file {args.api_key_file}: {e.strerror or e}") from None
        if key is None:
            raise BadInputError(f"--api-key-file {args.api_key_file} is empty")
    app = create_app(
        args.index,
        api_key=key or "",
        max_upload=int(args.max_upload_mb * 2**20),
        cache_dir=args.cache_dir,
        learn=args.learn,
    )
    keyed = "every endpoint but /healthz and the page needs the API key" if key else "no API key: open to anyone"
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}, reachable from other machines ({keyed})", file=sys.stderr)
    else:
        print(f"daer serve: this machine only ({keyed})", file=sys.stderr)
    print(f"daer serve: http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve text-to-3D search, explanations and classification over HTTP",
        description="Serve text-to-3D search, explanations and classification over HTTP. With an API key "
        f"(--api-key-file or the {API_KEY_ENV} environment variable) every endpoint but /healthz and the page "
        "(/ and /static/) needs it, in the X-API-Key header or as 'Authorization: Bearer KEY'; the page has a "
        "field for it. Without a key, keep the default loopback address.",
    )
    p.add_argument("--index", required=True, help="index folder made by 'daer index build'")
    p.add_argument("--host", default=LOOPBACK, help=f"address to bind (default {LOOPBACK}: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload for /api/classify (default 20)")
    p.add_argument("--cache-dir", default=None, help="folder for a persistent render cache (default: memory only)")
    p.add_argument(
        "--api-key-file",
        default=None,
        metavar="PATH",
        help=f"file holding the API key (default: the {API_KEY_ENV} environment variable; none: no key)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch/FAISS threads per request (default: ${THREADS_ENV}, else 1: requests run side by side, and "
        "a one-query search is as fast on one thread and does not collapse when the cores are shared)",
    )
    p.add_argument("--learn", action="store_true", help="let ERS learn success statistics from served queries")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve, default_threads=1)  # applied by daer.cli.main with the thread policy
