"""Parallel, resumable build of an Align3D-Synth data set.

Shard ``i`` holds shape indices ``[i*s, (i+1)*s)``; each shape depends only on (index, seed,
n_points), so shards can be built in any order, by any number of worker processes, and the result
is the same. Progress is kept in two files beside the shards:

- ``build_state.json``: the settings; a re-run with other settings into the same folder is refused.
- ``build_log.jsonl``: one line per finished shard (file, rows, sha256, counts), appended and
  fsynced as shards finish. A re-run skips every shard whose file still matches its logged
  SHA-256 and builds only the rest, so an interrupted build resumes where it stopped.

The manifest is written last, atomically; until then the folder is not a data set. Memory is
bounded by one shard per worker whatever ``n`` is.

Each shard also stores the FPS/kNN groups of its shapes for the built-in model configs
(:mod:`daer.data.point_groups`), computed by the worker that writes it, so no later evaluation, index build or
training run groups these shapes again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from daer.data.point_groups import GroupSpec, applicable, default_specs
from daer.data.record import ShapeRecord
from daer.data.shards import MANIFEST, SHARD_PATTERN, assemble_manifest, shard_name, write_manifest, write_shard
from daer.errors import BadInputError, DaerError, IntegrityError
from daer.synth.generator import SYNTH_GENERATOR
from daer.utils.atomic import atomic_open, write_json
from daer.utils.hashing import sha256_file

BUILD_STATE = "build_state.json"
BUILD_LOG = "build_log.jsonl"
DEFAULT_GENERATOR = "daer.synth.generator:generate_record"

RecordFn = Callable[[int, int, int], ShapeRecord]


def _resolve(spec: str) -> RecordFn:
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise BadInputError(f"cannot load the shape generator {spec!r}: {e}") from e


def _generator_version(spec: str) -> str:
    """The generator's ``GENERATOR_VERSION``, else a digest of its package's sources.

    Part of the build settings, so shards made by different generator code are never mixed on resume.
    """
    module = importlib.import_module(spec.partition(":")[0])
    version = getattr(module, "GENERATOR_VERSION", None)
    if version is not None:
        return str(version)
    root = Path(module.__file__ or "").parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return "src-" + h.hexdigest()[:16]


def _build_one(task: tuple[str, str, int, int, int, int, int, str, bool, tuple[GroupSpec, ...]]) -> dict[str, Any]:
    """Worker: generate shard ``index`` and write it atomically; returns its log entry."""
    out_dir, generator, index, start, stop, seed, n_points, points_dtype, normals, groups = task
    fn = _resolve(generator)
    records = []
    for i in range(start, stop):
        try:
            rec = fn(i, seed, n_points)
        except DaerError as e:
            raise type(e)(f"shape {i} (seed {seed}): {e}") from e
        if not normals:
            rec.normals = None
        records.append(rec)
    entry = write_shard(out_dir, index, records, points_dtype, groups)
    entry["index"] = index
    return entry


def _read_log(path: Path) -> dict[int, dict[str, Any]]:
    """Last logged entry per shard index; a torn last line (crash mid-write) is ignored."""
    entries: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return entries
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
                entries[int(entry["index"])] = entry
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    return entries


def _append_log(path: Path, entry: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _rewrite_log(path: Path, entries: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e, sort_keys=True) + "\n" for e in entries)


def _check_settings(out_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Load or create the build state; refuse a folder built with other settings or by something else."""
    state_path = out_dir / BUILD_STATE
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
            old = state["settings"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise IntegrityError(f"{state_path}: unreadable build state ({e}); remove the folder to start over") from e
        keys = sorted(set(old) | set(settings))
        diff = [f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in keys if old.get(k) != settings.get(k)]
        if diff:
            raise BadInputError(
                f"{out_dir} was built with other settings ({'; '.join(diff)}); "
                "use the same settings to resume, or another folder"
            )
        return state
    if (out_dir / MANIFEST).exists() or any(SHARD_PATTERN.match(p.name) for p in out_dir.iterdir()):
        raise BadInputError(f"{out_dir} already holds a data set that this build did not make; choose another folder")
    state = {"settings": settings, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(state_path, state)
    return state


def _valid(out_dir: Path, index: int, entry: dict[str, Any], rows: int) -> bool:
    """Whether shard ``index`` on disk is the one its log entry describes (name, rows, SHA-256)."""
    path = out_dir / shard_name(index)
    return (
        entry.get("file") == path.name
        and entry.get("rows") == rows
        and path.is_file()
        and sha256_file(path) == entry.get("sha256")
    )


def _init_worker() -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool (the next run resumes), and group points on one
    thread each, as DataLoader workers do: there are ``workers`` of them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "torch" in sys.modules:  # inherited from the parent by fork
        sys.modules["torch"].set_num_threads(1)
    else:
        os.environ["OMP_NUM_THREADS"] = "1"


def _run(tasks: list[tuple], workers: int, mp_context: str | None) -> Iterator[dict[str, Any]]:
    if workers == 1 or len(tasks) == 1:
        for t in tasks:
            yield _build_one(t)
        return
    ctx = mp.get_context(mp_context)
    with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker) as pool:
        yield from pool.imap_unordered(_build_one, tasks)


def build_synth(
    out_dir: str | os.PathLike[str],
    n: int,
    n_points: int = 2048,
    seed: int = 0,
    workers: int = 2,
    shard_size: int = 500,
    progress: bool = True,
    *,
    points_dtype: str = "float32",
    normals: bool = False,
    generator: str = DEFAULT_GENERATOR,
    mp_context: str | None = None,
    groups: Sequence[GroupSpec] | None = None,
) -> dict[str, Any]:
    """Build (or resume building) ``n`` synthetic shapes into ``out_dir``.

    Args:
        out_dir: target folder; created if needed.
        n: number of shapes (indices 0..n-1).
        n_points: points per shape.
        seed: data set seed; shape ``i`` is the same for a given (i, seed, n_points) at every ``n``.
        workers: worker processes (1 builds in this process).
        shard_size: shapes per shard (small enough to balance workers and lose little on a kill).
        progress: show a tqdm progress bar.
        points_dtype: "float32" or "float16" storage.
        normals: also store normals (doubles the size on disk).
        generator: ``"module:function"`` taking (index, seed, n_points) and returning a ShapeRecord.
        mp_context: multiprocessing start method (None: the platform default; "spawn" works too).
        groups: FPS/kNN group sets stored with every shape (None: those of the built-in configs,
            :func:`daer.data.point_groups.default_specs`; ``()``: none); sets for more than ``n_points`` points
            are skipped.

    Returns:
        the manifest.
    """
    if n < 1:
        raise BadInputError(f"--n must be >= 1, got {n}")
    if n_points < 1:
        raise BadInputError(f"--points must be >= 1, got {n_points}")
    if workers < 1:
        raise BadInputError(f"--workers must be >= 1, got {workers}")
    if shard_size < 1:
        raise BadInputError(f"shard_size must be >= 1, got {shard_size}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInputError(f"{out_dir}: exists and is not a folder")
    _resolve(generator)  # fail early, in this process, if the generator cannot be loaded
    specs = applicable(default_specs() if groups is None else groups, n_points)
    settings = {
        "n": n,
        "n_points": n_points,
        "seed": seed,
        "shard_size": shard_size,
        "points_dtype": points_dtype,
        "normals": normals,
        "generator": generator,
        "generator_version": _generator_version(generator),
    }
    if specs:  # absent without groups, so that such builds made before groups were stored still resume
        settings["point_groups"] = [s.to_json() for s in specs]
    out_dir.mkdir(parents=True, exist_ok=True)
    state = _check_settings(out_dir, settings)
    for stale in out_dir.glob(".shard-*.tmp"):  # left by a killed worker
        stale.unlink(missing_ok=True)

    n_shards = math.ceil(n / shard_size)
    bounds = [(i * shard_size, min(n, (i + 1) * shard_size)) for i in range(n_shards)]
    log_path = out_dir / BUILD_LOG
    logged = _read_log(log_path)
    done = {i: e for i, e in logged.items() if i < n_shards and _valid(out_dir, i, e, bounds[i][1] - bounds[i][0])}
    todo = [i for i in range(n_shards) if i not in done]
    if todo:
        (out_dir / MANIFEST).unlink(missing_ok=True)  # the folder is not a complete data set until the end
        _rewrite_log(log_path, [done[i] for i in sorted(done)])  # drops torn lines and stale entries
        tasks = [
            (str(out_dir), generator, i, *bounds[i], seed, n_points, points_dtype, normals, specs)
            for i in todo  # in index order, so a partial build holds a prefix of the data set
        ]
        initial = sum(e["rows"] for e in done.values())
        if done and progress:
            print(f"resuming {out_dir}: {len(done)} of {n_shards} shards already built", file=sys.stderr)
        with tqdm(total=n, initial=initial, unit="shape", desc="synth", disable=not progress, smoothing=0.1) as bar:
            for entry in _run(tasks, workers, mp_context):
                _append_log(log_path, entry)
                done[entry["index"]] = entry
                bar.update(entry["rows"])
    entries = [done[i] for i in range(n_shards)]
    manifest = assemble_manifest(
        "synth",
        entries,
        created=state["created"],
        groups=specs,
        generator=SYNTH_GENERATOR,
        generator_version=settings["generator_version"],
        seed=seed,
        n_points=n_points,
        shard_size=shard_size,
        points_dtype=points_dtype,
    )
    write_manifest(out_dir, manifest)
    return manifest
