"""Parallel resumable synth build: determinism, resume after loss or damage, refusal of changed settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daer.data.build import BUILD_LOG, build_synth
from daer.data.shards import DatasetWriter, iter_records, verify_dataset
from daer.errors import BadInputError
from daer.synth.generator import generate_record, shape_id

N_POINTS = 128


def build(out: Path, n: int = 10, **kw) -> dict:
    kw = {"n_points": N_POINTS, "seed": 0, "workers": 1, "shard_size": 4, "progress": False, **kw}
    return build_synth(out, n, **kw)


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / BUILD_LOG).read_text().splitlines()]


def test_build_layout_and_order(tmp_path: Path) -> None:
    manifest = build(tmp_path)
    assert manifest["n"] == 10 and manifest["n_points"] == N_POINTS and manifest["seed"] == 0
    assert [s["rows"] for s in manifest["shards"]] == [4, 4, 2]
    assert sum(manifest["counts"].values()) == 10 and sum(manifest["categories"].values()) == 10
    verify_dataset(tmp_path)
    recs = list(iter_records(tmp_path))
    assert [r.id for r in recs] == [shape_id(i, 0) for i in range(10)]  # shard i holds [i*s, (i+1)*s)
    ref = generate_record(7, 0, N_POINTS)
    assert np.array_equal(recs[7].points, ref.points)
    assert (recs[7].category, recs[7].attributes, recs[7].captions) == (ref.category, ref.attributes, ref.captions)
    assert recs[7].normals is None  # normals are off by default


def test_parallel_build_is_identical(tmp_path: Path) -> None:
    one = build(tmp_path / "one", workers=1)
    two = build(tmp_path / "two", workers=2)
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]
    spawned = build(tmp_path / "spawn", n=5, workers=2, mp_context="spawn")
    assert [s["sha256"] for s in spawned["shards"]][0] == one["shards"][0]["sha256"]


def test_resume_builds_only_missing_shard(tmp_path: Path) -> None:
    first = build(tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("shard-*.parquet")}
    (tmp_path / "shard-000001.parquet").unlink()
    again = build(tmp_path)
    lines = log_lines(tmp_path)
    assert [e["index"] for e in lines] == [0, 2, 1]  # only shard 1 was built again
    assert again == first  # same settings and seed: same bytes, same manifest
    for name in ("shard-000000.parquet", "shard-000002.parquet"):
        assert (tmp_path / name).stat().st_mtime_ns == stamps[name]
    assert build(tmp_path) == first and len(log_lines(tmp_path)) == 3  # complete: nothing to do


def test_resume_after_interruption(tmp_path: Path) -> None:
    first = build(tmp_path)
    # What a kill leaves: no manifest yet, a torn log line, a temp file, a damaged shard.
    (tmp_path / "manifest.json").unlink()
    with open(tmp_path / BUILD_LOG, "a") as f:
        f.write('{"index": 2, "file": "shard-0')
    (tmp_path / ".shard-000002.parquet.abc123.tmp").write_bytes(b"partial")
    shard = tmp_path / "shard-000002.parquet"
    shard.write_bytes(shard.read_bytes()[:-10])
    again = build(tmp_path)
    assert again == first
    assert [e["index"] for e in log_lines(tmp_path)] == [0, 1, 2]
    assert not list(tmp_path.glob(".*.tmp"))
    verify_dataset(tmp_path)


def test_changed_settings_refused(tmp_path: Path) -> None:
    build(tmp_path)
    with pytest.raises(BadInputError, match=r"other settings \(seed: 0 -> 1\)"):
        build(tmp_path, seed=1)
    with pytest.raises(BadInputError, match="n: 10 -> 12"):
        build(tmp_path, n=12)
    with pytest.raises(BadInputError, match="n_points"):
        build(tmp_path, n_points=64)
    build(tmp_path, workers=2)  # the worker count is not a setting: same result


def test_refuses_foreign_data_set(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path, source="import") as w:
        w.add(generate_record(0, 0, N_POINTS))
    with pytest.raises(BadInputError, match="already holds a data set"):
        build(tmp_path)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="--n must be >= 1"):
        build(tmp_path, n=0)
    with pytest.raises(BadInputError, match="--workers"):
        build(tmp_path, workers=0)
    with pytest.raises(BadInputError, match="cannot load the shape generator"):
        build(tmp_path, generator="daer.no_such_module:generate")


def test_changed_generator_code_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "src" / "mygen"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    code = "from daer.synth.generator import generate_record as make\n"
    (pkg / "gen.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    out = tmp_path / "set"
    first = build(out, n=3, generator="mygen.gen:make")
    assert first["generator_version"].startswith("src-")
    (pkg / "gen.py").write_text(code + "# a change to the generator's code\n")
    with pytest.raises(BadInputError, match="generator_version"):
        build(out, n=3, generator="mygen.gen:make")
