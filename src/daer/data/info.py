"""A data set's summary: sizes per split and per category (the ``daer data info`` contract)."""

from __future__ import annotations

import os
from typing import Any

from daer.data.record import SPLITS
from daer.data.shards import read_manifest


def dataset_info(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Summary of a data set, read from its manifest.

    Returns:
        ``{"n": int, "splits": {"train", "val", "test"}: int, "categories": {name: count}}``.
    """
    manifest = read_manifest(data_dir)
    return {
        "n": int(manifest["n"]),
        "splits": {s: int(manifest["counts"].get(s, 0)) for s in SPLITS},
        "categories": {k: int(v) for k, v in sorted(manifest["categories"].items())},
    }


def format_info(info: dict[str, Any], manifest: dict[str, Any] | None = None) -> str:
    """Human-readable text for ``dataset_info`` output (plus source details when a manifest is given)."""
    n = info["n"]
    lines = [f"shapes: {n:,}"]
    if manifest is not None:
        details = [f"source {manifest.get('source', '?')}", f"{manifest.get('n_points', '?')} points per shape"]
        if "seed" in manifest:
            details.append(f"seed {manifest['seed']}")
        details.append(f"{len(manifest.get('shards', []))} shards")
        groups = manifest.get("point_groups")
        sets = groups.get("sets", []) if isinstance(groups, dict) else []
        if sets:
            names = [f"{s.get('config') or '?'} ({s.get('n_points')} points)" for s in sets if isinstance(s, dict)]
            details.append("FPS/kNN groups stored for " + ", ".join(names))
        lines.append("  " + ", ".join(details))
    lines.append("splits:")
    for split, count in info["splits"].items():
        lines.append(f"  {split:<6} {count:>10,}  ({100.0 * count / max(n, 1):5.1f}%)")
    lines.append(f"categories ({len(info['categories'])}):")
    width = max((len(c) for c in info["categories"]), default=0)
    for category, count in info["categories"].items():
        lines.append(f"  {category or '(none)':<{width}} {count:>10,}")
    return "\n".join(lines)
