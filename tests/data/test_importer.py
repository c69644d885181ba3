"""CSV import of users' meshes: merging, splits, every rejected-row reason, time limits, atomicity, CLI."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import trimesh

from daer.cli.data_import import add_parser, parse_bytes
from daer.data.formats import RejectLog, seeded_split
from daer.data.importer import import_meshes, write_records
from daer.data.mesh_io import load_points
from daer.data.record import ShapeRecord
from daer.data.shards import MANIFEST, iter_records, read_manifest
from daer.errors import BadInputError


def _csv(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header or ["file", "caption", "category", "attributes", "split"])
        w.writerows(rows)
    return path


@pytest.fixture
def meshes(tmp_path: Path) -> Path:
    d = tmp_path / "meshes"
    (d / "sub").mkdir(parents=True)
    (d / "box.obj").write_text(trimesh.creation.box().export(file_type="obj"))
    (d / "sub" / "cyl.stl").write_bytes(trimesh.creation.cylinder(0.5, 2.0).export(file_type="stl"))
    (d / "ico.ply").write_bytes(trimesh.creation.icosphere(1).export(file_type="ply"))
    np.save(d / "cloud.npy", np.random.default_rng(0).random((500, 3)))
    return d


def _rejected(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]


def test_import_merges_captions_and_keeps_metadata(tmp_path, meshes):
    csv_path = _csv(
        tmp_path / "c.csv",
        [
            ["box.obj", "a plain box", "box", '{"size": "small", "legs": 0}', "train"],
            ["sub/cyl.stl", "a tall cylinder", "cylinder", "", ""],
            ["./box.obj", "a  cube\nwith six faces", "", "", ""],  # same file, second caption
            ["ico.ply", "a ball", "", "", "test"],
            ["cloud.npy", "random points", "", "", "val"],
        ],
    )
    out = tmp_path / "out"
    summary = import_meshes(meshes, csv_path, out, n_points=256, progress=False)
    assert summary.imported == 4 and summary.rejected == {}
    recs = {r.id: r for r in iter_records(out)}
    assert list(recs) == ["box", "sub/cyl", "ico", "cloud"]  # CSV order
    box = recs["box"]
    assert box.captions == ["a plain box", "a cube with six faces"]
    assert box.category == "box" and box.attributes == {"size": "small", "legs": "0"} and box.split == "train"
    assert box.source == "box.obj" and box.normals is not None
    assert recs["cloud"].normals is None and recs["ico"].split == "test"
    assert recs["sub/cyl"].split == seeded_split("sub/cyl", 0)
    for r in recs.values():
        assert r.points.shape == (256, 3)
        assert np.linalg.norm(r.points, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    manifest = read_manifest(out)
    assert manifest["n"] == 4 and manifest["source"] == "import:meshes"
    assert _rejected(out) == []


def test_import_matches_direct_loading_and_is_deterministic(tmp_path, meshes):
    from daer.data.formats import key_rng

    csv_path = _csv(tmp_path / "c.csv", [["box.obj", "box", "", "", ""], ["ico.ply", "ball", "", "", ""]])
    import_meshes(meshes, csv_path, tmp_path / "a", n_points=64, seed=3, progress=False)
    import_meshes(meshes, csv_path, tmp_path / "b", n_points=64, seed=3, progress=False, workers=2)
    a = {r.id: r.points for r in iter_records(tmp_path / "a")}
    b = {r.id: r.points for r in iter_records(tmp_path / "b")}
    direct = load_points(meshes / "box.obj", 64, key_rng(3, "box"))[0]
    np.testing.assert_array_equal(a["box"], direct)  # the worker pool changes nothing
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_seeded_split_is_80_10_10_and_stable():
    keys = [f"shape-{i}" for i in range(6000)]
    counts = Counter(seeded_split(k, 0) for k in keys)
    assert counts["train"] / 6000 == pytest.approx(0.8, abs=0.02)
    assert counts["val"] / 6000 == pytest.approx(0.1, abs=0.015)
    assert counts["test"] / 6000 == pytest.approx(0.1, abs=0.015)
    assert [seeded_split(k, 0) for k in keys[:50]] == [seeded_split(k, 0) for k in keys[:50]]
    assert [seeded_split(k, 0) for k in keys[:200]] != [seeded_split(k, 1) for k in keys[:200]]


def test_every_bad_row_is_rejected_with_its_reason(tmp_path, meshes):
    (meshes / "empty.obj").write_bytes(b"")
    (meshes / "junk.ply").write_bytes(os.urandom(2000))
    (meshes / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 nan 0\nf 1 2 3\n")
    (meshes / "flat.obj").write_text("v 0 0 0\nv 1 1 1\nv 2 2 2\nf 1 2 3\n")
    (meshes / "one.xyz").write_text("1 2 3\n")
    (meshes / "big.stl").write_bytes(trimesh.creation.icosphere(3).export(file_type="stl"))
    (meshes / "model.fbx").write_bytes(b"Kaydara FBX Binary  \x00")
    (meshes / "box.ply").write_bytes(trimesh.creation.box().export(file_type="ply"))
    header = ["file", "caption", "id", "attributes", "split", "category"]
    rows = [
        ["box.obj", "good box", "", "", "", ""],  # line 2: imported
        ["missing.obj", "nothing here", "", "", "", ""],
        ["empty.obj", "empty", "", "", "", ""],
        ["junk.ply", "garbage", "", "", "", ""],
        ["nan.obj", "nan", "", "", "", ""],
        ["flat.obj", "flat", "", "", "", ""],
        ["one.xyz", "one point", "", "", "", ""],
        ["big.stl", "too big", "", "", "", ""],
        ["model.fbx", "fbx", "", "", "", ""],
        ["box.ply", "same id as box.obj", "", "", "", ""],  # id "box" taken
        ["ico.ply", "   ", "", "", "", ""],
        ["ico.ply", "bad attrs", "", "[1, 2]", "", ""],
        ["ico.ply", "bad split", "", "", "holdout", ""],
        ["../outside.obj", "escape", "", "", "", ""],
        ["", "no file", "", "", "", ""],
        ["sub/cyl.stl", "cylinder", "", "", "", "tube"],  # imported
        ["sub/cyl.stl", "cylinder again", "", "", "", "pipe"],  # conflicting category
    ]
    csv_path = _csv(tmp_path / "c.csv", rows, header)
    with open(csv_path, "ab") as f:
        f.write(b"ico.ply,caf\xe9 latin-1 caption,,,,\n")  # line 19: not UTF-8
        f.write(b"ico.ply," + b"x" * 200_000 + b",,,,\n")  # line 20: over the csv module's field limit
        f.write(b"sub/cyl.stl,still read after a broken row,,,,\n")  # line 21: merged into cyl
    out = tmp_path / "out"
    summary = import_meshes(meshes, csv_path, out, n_points=32, max_bytes=20_000, progress=False)
    assert summary.imported == 2
    got = {(r["row"], r["code"]) for r in _rejected(out)}
    expected = {
        (3, "missing"),
        (4, "empty"),
        (5, "unreadable"),
        (6, "non-finite"),
        (7, "degenerate"),
        (8, "degenerate"),
        (9, "too-large"),
        (10, "unsupported"),
        (11, "duplicate-id"),
        (12, "empty-caption"),
        (13, "bad-attributes"),
        (14, "bad-split"),
        (15, "outside-root"),
        (16, "no-file"),
        (18, "conflict"),
        (19, "undecodable-caption"),
        (20, "malformed-row"),
    }
    assert got == expected
    for r in _rejected(out):
        assert r["reason"] and set(r) == {"row", "file", "reason", "code"}
    assert [r["row"] for r in _rejected(out)] == sorted(r["row"] for r in _rejected(out))
    assert sum(summary.rejected.values()) == len(expected)
    assert "rejected 17 rows" in summary.format()
    recs = {r.id: r for r in iter_records(out)}
    assert set(recs) == {"box", "sub/cyl"}
    assert recs["sub/cyl"].captions == ["cylinder", "still read after a broken row"]


def blocking_loader(path, n_points, rng, max_bytes):
    """Reads a FIFO nobody writes to: blocks forever (stands in for a loader stuck on a hostile file)."""
    if path.endswith(".fifo.obj"):
        with open(path.replace(".obj", ""), "rb") as f:
            f.read()
    if path.endswith("crash.obj"):
        os._exit(7)
    return load_points(path, n_points, rng, max_bytes)


def test_hanging_and_crashing_files_are_cut_off(tmp_path, meshes):
    os.mkfifo(meshes / "stuck.fifo")
    (meshes / "stuck.fifo.obj").write_text("v 0 0 0\n")
    (meshes / "crash.obj").write_text("v 0 0 0\n")
    rows = [
        ["box.obj", "box", "", "", ""],
        ["stuck.fifo.obj", "hangs", "", "", ""],
        ["crash.obj", "kills its worker", "", "", ""],
        ["ico.ply", "ball", "", "", ""],
    ]
    csv_path = _csv(tmp_path / "c.csv", rows)
    t0 = time.monotonic()
    summary = import_meshes(
        meshes, csv_path, tmp_path / "out", n_points=32, timeout=1.0, progress=False, loader=blocking_loader
    )
    assert time.monotonic() - t0 < 20
    assert summary.imported == 2 and summary.rejected == {"timeout": 1, "crashed": 1}
    reasons = {r["code"]: r["reason"] for r in _rejected(tmp_path / "out")}
    assert "longer than 1 s" in reasons["timeout"] and "exit code 7" in reasons["crashed"]


def test_unusable_csv_raises(tmp_path, meshes):
    with pytest.raises(BadInputError, match="missing column"):
        import_meshes(meshes, _csv(tmp_path / "a.csv", [["x"]], ["path", "text"]), tmp_path / "o1", progress=False)
    with pytest.raises(BadInputError, match="cannot read CSV"):
        import_meshes(meshes, tmp_path / "nope.csv", tmp_path / "o2", progress=False)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(BadInputError, match="empty CSV"):
        import_meshes(meshes, tmp_path / "empty.csv", tmp_path / "o3", progress=False)
    (tmp_path / "header.csv").write_text("file,caption\n")
    with pytest.raises(BadInputError, match="no rows"):
        import_meshes(meshes, tmp_path / "header.csv", tmp_path / "o5", progress=False)
    (tmp_path / "garbage.csv").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(BadInputError, match="missing column") as info:
        import_meshes(meshes, tmp_path / "garbage.csv", tmp_path / "o6", progress=False)
    assert str(info.value).isascii()
    with pytest.raises(BadInputError, match="meshes folder"):
        import_meshes(tmp_path / "nodir", tmp_path / "a.csv", tmp_path / "o4", progress=False)


def test_nothing_imported_writes_no_data_set(tmp_path, meshes):
    csv_path = _csv(tmp_path / "c.csv", [["missing.obj", "x", "", "", ""]])
    summary = import_meshes(meshes, csv_path, tmp_path / "out", progress=False)
    assert summary.imported == 0 and summary.rejected == {"missing": 1}
    assert not (tmp_path / "out" / MANIFEST).exists()
    assert not list((tmp_path / "out").glob("shard-*"))
    assert len(_rejected(tmp_path / "out")) == 1


def test_interrupted_import_leaves_no_partial_data_set(tmp_path):
    def records():
        for i in range(5):
            yield ShapeRecord(f"s{i}", "", {}, ["c"], "train", np.random.default_rng(i).random((16, 3)))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_records(records(), tmp_path / "out", "test", RejectLog(), shard_size=2)
    assert not (tmp_path / "out" / MANIFEST).exists()
    assert not list((tmp_path / "out").glob("shard-*"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="daer")
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data")
    add_parser(data.add_subparsers(dest="data_command", required=True))
    return parser


def test_cli_import_and_exit_codes(tmp_path, meshes, capsys):
    from daer.cli import main

    good = _csv(tmp_path / "good.csv", [["box.obj", "a box", "", "", ""], ["nope.obj", "gone", "", "", ""]])
    args = _parser().parse_args(
        ["data", "import", "--meshes", str(meshes), "--captions", str(good), "--out", str(tmp_path / "o"),
         "--points", "64", "--timeout", "5", "--max-bytes", "1M", "--no-progress"]
    )  # fmt: skip
    assert args.func(args) == 0
    assert "imported 1 shapes" in capsys.readouterr().out
    bad = _csv(tmp_path / "bad.csv", [["nope.obj", "gone", "", "", ""]])
    args = _parser().parse_args(["data", "import", "--meshes", str(meshes), "--captions", str(bad), "--out",
                                 str(tmp_path / "o2"), "--no-progress"])  # fmt: skip
    with pytest.raises(BadInputError, match="nothing was imported"):
        args.func(args)
    args = _parser().parse_args(["data", "import", "--captions", str(bad), "--out", str(tmp_path / "o3")])
    with pytest.raises(BadInputError, match="--meshes"):
        args.func(args)
    if importlib.util.find_spec("daer.cli.data") is None:
        return  # the ``data`` group is not there yet: the throwaway parser above covered the command
    assert main(["data", "import", "--meshes", str(meshes), "--captions", str(bad), "--out", str(tmp_path / "o4"),
                 "--no-progress"]) == 2  # fmt: skip


def test_parse_bytes():
    assert parse_bytes("1024") == 1024 and parse_bytes("2K") == 2048 and parse_bytes("1.5M") == 1572864
    assert parse_bytes("1GiB") == 2**30
    with pytest.raises(argparse.ArgumentTypeError):
        parse_bytes("lots")


def test_cli_import_turns_the_named_up_axis_to_z(tmp_path, meshes):
    rows = _csv(tmp_path / "c.csv", [["sub/cyl.stl", "a tall cylinder", "", "", ""]])
    extent = {}
    for up in (None, "y"):
        out = tmp_path / f"o-{up}"
        argv = ["data", "import", "--meshes", str(meshes), "--captions", str(rows), "--out", str(out), "--points",
                "256", "--workers", "1", "--no-progress"] + (["--up", up] if up else [])  # fmt: skip
        args = _parser().parse_args(argv)
        assert args.func(args) == 0
        points = np.concatenate([np.asarray(r.points) for r in iter_records(out, None, columns=["points"])])
        extent[up] = np.ptp(points, axis=0)
    assert extent[None][2] > 1.5 * extent[None][1]  # the cylinder stands along z, as the STL says
    assert extent["y"][1] > 1.5 * extent["y"][2]  # read as +y up, its axis is turned to lie along y
