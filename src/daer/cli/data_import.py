"""``daer data import``: users' meshes with a captions CSV, or a public data set by format name.

Added to the ``data`` group by ``daer.cli.data`` (this module has no ``register`` on purpose).
"""

from __future__ import annotations

import argparse
import re

from daer.errors import BadInputError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """``"1048576"``, ``"512K"``, ``"256M"``, ``"2G"`` (binary units) -> bytes."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256M)")
    return int(float(m.group(1)) * 1024 ** "_kmgt".index(m.group(2).lower() or "_"))


def cmd_import(args: argparse.Namespace) -> int:
    from daer.data.formats import FORMATS
    from daer.data.importer import import_format, import_meshes
    from daer.data.mesh_io import AUTO_UP

    common = {
        "n_points": args.points,
        "seed": args.seed,
        "max_bytes": args.max_bytes,
        "overwrite": args.overwrite,
        "progress": not args.no_progress,
    }
    if args.format is not None:
        if args.source is None or args.meshes is not None:
            raise BadInputError(f"--format {args.format} takes --source PATH (not --meshes)")
        if args.up == AUTO_UP:
            raise BadInputError(f"--format {args.format} has a known up axis; --up x, y or z overrides it, not auto")
        summary = import_format(
            args.format,
            args.source,
            args.out,
            captions=args.captions,
            shape_names=args.shape_names,
            timeout=args.timeout,
            workers=args.workers,
            up=args.up,
            **common,
        )
    else:
        if args.meshes is None or args.captions is None:
            raise BadInputError(f"give --meshes DIR --captions CSV, or --format {{{','.join(FORMATS)}}} --source PATH")
        from functools import partial

        from daer.data.mesh_io import load_points

        up = _vote_up(args, common) if args.up == AUTO_UP else args.up
        loader = load_points if up is None else partial(load_points, up=up)  # picklable for the workers
        summary = import_meshes(
            args.meshes, args.captions, args.out, timeout=args.timeout, workers=args.workers, loader=loader, **common
        )
    print(summary.format())
    if summary.imported == 0:
        raise BadInputError(f"nothing was imported; reasons in {summary.rejected_path}")
    return 0


AUTO_UP_SAMPLE = 64  # files read to choose a data set's up axis


def _vote_up(args: argparse.Namespace, common: dict) -> str:
    """The up axis most of a seeded sample of the CSV's files read best with, by the model's caption scores.

    The sample is imported as the files are (+z up), through the same workers, limits and timeout as the
    import itself, into a temporary folder that is removed afterwards.
    """
    import csv
    import tempfile
    from functools import partial
    from pathlib import Path

    import numpy as np

    from daer.data.importer import import_meshes, read_captions
    from daer.data.mesh_io import load_points
    from daer.data.shards import iter_records
    from daer.models.model import load_model
    from daer.models.packaged import resolve_checkpoint
    from daer.models.zeroshot import vote_up

    entries = read_captions(args.captions, reject=lambda _: None)
    rng = np.random.default_rng(args.seed)
    picked = sorted(rng.choice(len(entries), min(AUTO_UP_SAMPLE, len(entries)), replace=False)) if entries else []
    records: list[tuple[np.ndarray, str]] = []
    with tempfile.TemporaryDirectory(prefix="daer-up-") as tmp:
        sample_csv, sample_dir = Path(tmp) / "sample.csv", Path(tmp) / "sample"
        with open(sample_csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "caption"])
            writer.writerows([entries[i].file, entries[i].captions[0]] for i in picked)
        if picked:
            opts = {**common, "overwrite": False, "progress": False}
            summary = import_meshes(args.meshes, sample_csv, sample_dir, timeout=args.timeout, workers=args.workers,
                                    loader=partial(load_points, up="z"), **opts)  # fmt: skip
            if summary.imported:
                records = [(r.points, r.captions[0]) for r in iter_records(sample_dir)]
    if not records:
        print("up axis z (auto: no sampled file could be read, so the files are taken as they are)")
        return "z"
    votes = vote_up(load_model(resolve_checkpoint(args.ckpt)), *zip(*records, strict=True))
    axis = max(votes, key=votes.__getitem__)
    print(f"up axis {axis} (auto: {votes[axis]} of {len(records)} sampled files score their caption best with "
          f"{axis} up; votes {votes})")  # fmt: skip
    return axis


def add_parser(data_sub: argparse._SubParsersAction) -> None:
    """Add ``import`` to the ``daer data`` subcommands."""
    from daer.data.formats import FORMATS
    from daer.data.mesh_io import AUTO_UP, DEFAULT_MAX_BYTES, UP_HELP, UP_ROTATIONS

    p = data_sub.add_parser(
        "import",
        help="import meshes with captions, or a public data set",
        description="Either --meshes DIR --captions CSV (columns file, caption[, category, attributes, split, "
        "id]) or --format NAME --source PATH. Rows that cannot be used go to OUT/rejected.jsonl.",
    )
    p.add_argument("--meshes", help="folder the CSV's file paths are relative to")
    p.add_argument("--captions", help="captions CSV (meshes; cap3d; text2shape) or uid->text JSON/CSV (openshape-npy)")
    p.add_argument("--format", choices=list(FORMATS), help="public data set format")
    p.add_argument("--source", help="the format's shape data: .h5 file or folder, .npy folder, points/mesh folder")
    p.add_argument("--shape-names", help="modelnet40-h5 class names (default: shape_names.txt beside the data)")
    p.add_argument("--out", required=True, help="data set folder to create")
    p.add_argument("--points", type=int, default=2048, help="points per shape (default 2048)")
    p.add_argument("--seed", type=int, default=0, help="sampling and split seed (default 0)")
    p.add_argument(
        "--max-bytes", type=parse_bytes, default=DEFAULT_MAX_BYTES, help="skip larger files, e.g. 256M (default 256M)"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per file before it is skipped (default 30)")
    p.add_argument("--workers", type=int, default=2, help="loader processes (default 2)")
    p.add_argument(
        "--up",
        choices=[AUTO_UP, *sorted(UP_ROTATIONS)],
        default=None,
        help=f"{UP_HELP}; auto: the axis most of {AUTO_UP_SAMPLE} sampled files score their caption best "
        "with, by --ckpt",
    )
    p.add_argument("--ckpt", default=None, help="the model --up auto asks (default: the packaged model)")
    p.add_argument("--overwrite", action="store_true", help="replace a data set already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import)
