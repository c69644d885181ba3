"""The ``daer`` command line: thin subcommands composed from library calls.

Every module in this package that defines ``register(subparsers)`` adds its subcommands; each
subcommand sets ``func`` (taking the parsed ``argparse.Namespace`` and returning an exit status).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from daer import __version__
from daer.errors import DaerError
from daer.utils.threads import ENV, configure_threads


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand module registered."""
    parser = argparse.ArgumentParser(prog="daer", description="Text-3D alignment (HAF, DAP) and shape search (ERS).")
    parser.add_argument("--version", action="version", version=f"daer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    _add_threads(sub)
    return parser


def _add_threads(sub: argparse._SubParsersAction) -> None:
    """``--threads N`` on every (nested) subcommand that does not define its own."""
    for p in sub.choices.values():
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for n in nested:
                _add_threads(n)
        elif not any("--threads" in a.option_strings for a in p._actions):
            p.add_argument(
                "--threads",
                type=int,
                default=None,
                help=f"torch/FAISS threads (default: ${ENV}, else the cores not busy with other work)",
            )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``daer`` console script."""
    args = build_parser().parse_args(argv)
    try:
        configure_threads(getattr(args, "threads", None) or None, getattr(args, "default_threads", None))
        return int(args.func(args) or 0)
    except DaerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
