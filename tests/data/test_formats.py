"""Public-format loaders on small fixtures written here (h5py, numpy, trimesh): records and rejections."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import trimesh

from daer.cli.data_import import add_parser
from daer.data.formats import FORMATS, FileGroup, RejectLog, get_loader, load_groups, read_text_mapping
from daer.data.formats.cap3d import load_cap3d
from daer.data.formats.modelnet40_h5 import load_modelnet40_h5
from daer.data.formats.openshape_npy import load_openshape_npy
from daer.data.formats.scanobjectnn_h5 import SCANOBJECTNN_CLASSES, load_scanobjectnn_h5
from daer.data.formats.text2shape import load_text2shape
from daer.data.importer import import_format
from daer.data.mesh_io import load_points
from daer.data.shards import iter_records
from daer.errors import BadInputError

MODELNET_NAMES = ["airplane", "bathtub", "bed", "bench", "flower_pot"]


def _clouds(n: int, pts: int = 100, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, pts, 3)).astype(np.float32)  # (B, N, 3)


def _h5(path: Path, data: np.ndarray, label: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f["data"] = data
        f["label"] = label


def _check_points(recs, n: int) -> None:
    for r in recs:
        assert r.points.shape == (n, 3) and np.isfinite(r.points).all()
        assert np.linalg.norm(r.points, axis=1).max() == pytest.approx(1.0, abs=1e-5)


@pytest.fixture
def modelnet(tmp_path: Path) -> Path:
    d = tmp_path / "modelnet40_ply_hdf5_2048"
    d.mkdir()
    (d / "shape_names.txt").write_text("\n".join(MODELNET_NAMES) + "\n")
    train = _clouds(4)
    train[2, 5] = np.nan  # rejected: non-finite
    _h5(d / "ply_data_train0.h5", train, np.array([[0], [4], [1], [9]], dtype=np.uint8))  # 9: bad label
    _h5(d / "ply_data_test0.h5", _clouds(3, seed=1), np.array([[3], [2], [4]], dtype=np.int64))
    (d / "ply_data_test1.h5").write_bytes(b"not hdf5 at all")
    with h5py.File(d / "ply_data_train1.h5", "w") as f:
        f["points"] = _clouds(2)
    return d


def test_modelnet40_h5(modelnet):
    log = RejectLog()
    recs = list(load_modelnet40_h5(modelnet, n_points=64, on_reject=log))
    assert [r.id for r in recs] == ["ply_data_test0/0", "ply_data_test0/1", "ply_data_test0/2", "ply_data_train0/0",
                                    "ply_data_train0/1"]  # fmt: skip
    assert [r.category for r in recs] == ["bench", "bed", "flower_pot", "airplane", "flower_pot"]
    assert recs[2].captions == ["a flower pot"] and recs[0].captions == ["a bench"]
    assert [r.split for r in recs] == ["test"] * 3 + ["train"] * 2
    _check_points(recs, 64)
    codes = {(r.file, r.row, r.code) for r in log.items}
    assert codes == {
        ("ply_data_test1.h5", None, "unreadable"),
        ("ply_data_train0.h5", 2, "non-finite"),
        ("ply_data_train0.h5", 3, "bad-label"),
        ("ply_data_train1.h5", None, "bad-layout"),
    }
    # a single file with an explicit class-name file
    one = list(load_modelnet40_h5(modelnet / "ply_data_test0.h5", 32, shape_names=modelnet / "shape_names.txt"))
    assert len(one) == 3
    with pytest.raises(BadInputError, match="class names"):
        list(load_modelnet40_h5(modelnet, shape_names=modelnet / "missing.txt"))


def test_scanobjectnn_h5(tmp_path):
    d = tmp_path / "main_split"
    d.mkdir()
    labels = np.arange(15, dtype=np.int64)
    _h5(d / "training_objectdataset.h5", _clouds(15), labels)
    _h5(d / "test_objectdataset.h5", _clouds(2, seed=3), np.array([14, 15]))  # 15 is out of range
    log = RejectLog()
    recs = list(load_scanobjectnn_h5(d, n_points=48, on_reject=log))
    assert len(recs) == 16
    test, train = recs[:1], recs[1:]
    assert test[0].category == "toilet" and test[0].split == "test"
    assert [r.category for r in train] == list(SCANOBJECTNN_CLASSES) and {r.split for r in train} == {"train"}
    assert train[4].captions == ["a chair"]
    assert [(r.row, r.code) for r in log.items] == [(1, "bad-label")]
    _check_points(recs, 48)


def test_openshape_npy(tmp_path):
    d = tmp_path / "objaverse" / "000-001"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for uid in ("u1", "u2", "u3"):
        obj = {"xyz": rng.random((400, 3)).astype(np.float32), "rgb": rng.random((400, 3))}
        if uid == "u2":
            obj["blip_caption"] = "a small wooden chair"
        np.save(d / f"{uid}.npy", obj, allow_pickle=True)
    (d / "u4.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(d / "u5.npy", {"xyz": np.full((10, 3), np.nan)}, allow_pickle=True)
    caps = tmp_path / "captions.json"
    caps.write_text(json.dumps({"u1": ["a red car", "a red car", "a sedan"], "u4": "x", "u5": "y"}))
    log = RejectLog()
    recs = list(load_openshape_npy(tmp_path / "objaverse", caps, n_points=100, on_reject=log))
    assert [r.id for r in recs] == ["u1", "u2"]
    assert recs[0].captions == ["a red car", "a sedan"] and recs[1].captions == ["a small wooden chair"]
    assert recs[0].source == "000-001/u1.npy"
    _check_points(recs, 100)
    assert {(r.file, r.code) for r in log.items} == {
        ("000-001/u3.npy", "empty-caption"),
        ("000-001/u4.npy", "unreadable"),
        ("000-001/u5.npy", "non-finite"),
    }
    # the same points as load_points gives for the file (one reading path)
    np.testing.assert_array_equal(recs[0].points, list(load_openshape_npy(d / "u1.npy", caps, n_points=100))[0].points)


def test_cap3d(tmp_path):
    pts = tmp_path / "Cap3D_pcs"
    (pts / "part0").mkdir(parents=True)
    rng = np.random.default_rng(1)
    trimesh.PointCloud(rng.random((300, 3))).export(pts / "part0" / "aaa.ply")
    np.save(pts / "bbb.npy", rng.random((6, 300)))  # channel-first like Cap3D's tensors
    (pts / "ccc.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 5\nend_header\n1 2\n")
    csv = tmp_path / "Cap3D_automated_Objaverse.csv"
    csv.write_bytes(
        b"aaa,a blue mug with a handle\n"
        b'bbb,"a chair, four legs"\n'
        b"ccc,a broken file\n"
        b"ddd,no point file\n"
        b"eee,   \n"
        b"aaa,a mug\n"
        b"fff,caf\xe9\n"
    )
    log = RejectLog()
    recs = list(load_cap3d(csv, pts, n_points=64, on_reject=log))
    assert [r.id for r in recs] == ["aaa", "bbb"]
    assert recs[0].captions == ["a blue mug with a handle", "a mug"] and recs[1].captions == ["a chair, four legs"]
    assert recs[0].source == "part0/aaa.ply"
    _check_points(recs, 64)
    assert {(r.row, r.code) for r in log.items} == {
        (3, "unreadable"),
        (4, "missing"),
        (5, "empty-caption"),
        (7, "undecodable-caption"),
    }


def test_text2shape(tmp_path):
    shapes = tmp_path / "shapenet"
    m1 = shapes / "03001627" / "m1" / "models"
    m1.mkdir(parents=True)
    (m1 / "model_normalized.obj").write_text(trimesh.creation.box().export(file_type="obj"))
    (shapes / "m2.ply").write_bytes(trimesh.creation.cylinder(0.3, 1.0).export(file_type="ply"))
    (shapes / "m3.off").write_text("OFF\n3 1 0\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n")  # zero area
    csv = tmp_path / "captions.tablechair.csv"
    csv.write_text(
        "id,modelId,description,category,topLevelSynsetId,subSynsetId\n"
        "1,m1,A square brown chair.,Chair,03001627,03001627\n"
        "2,m2,a round table,Table,04379243,04379243\n"
        '3,m1,"Boxy seat, no back",Chair,03001627,03001627\n'
        "4,m3,flat,Table,04379243,04379243\n"
        "5,m9,missing model,Table,04379243,04379243\n"
        "6,,no id,Table,,\n"
    )
    log = RejectLog()
    recs = list(load_text2shape(csv, shapes, n_points=80, on_reject=log))
    assert [r.id for r in recs] == ["m1", "m2"]
    assert recs[0].captions == ["A square brown chair.", "Boxy seat, no back"] and recs[0].category == "chair"
    assert recs[0].source == "03001627/m1/models/model_normalized.obj" and recs[0].normals is not None
    _check_points(recs, 80)
    assert {(r.row, r.code) for r in log.items} == {(5, "degenerate"), (6, "missing"), (7, "no-file")}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,x\n")
    with pytest.raises(BadInputError, match="modelid"):
        list(load_text2shape(bad, shapes))


def sleepy_loader(path, n_points, rng, max_bytes):
    """Hangs on files named ``slow*`` (stands in for a file that stalls its reader)."""
    if Path(path).name.startswith("slow"):
        time.sleep(60)
    return load_points(path, n_points, rng, max_bytes)


def test_format_files_load_under_a_time_limit(tmp_path):
    for name in ("ok", "slow"):
        np.save(tmp_path / f"{name}.npy", np.random.default_rng(0).random((50, 3)))
    files = {"ok": tmp_path / "ok.npy", "slow": tmp_path / "slow.npy"}
    groups = [FileGroup("slow", [2, 5], ["x"]), FileGroup("ok", [3], ["y"]), FileGroup("gone", [4], ["z"])]
    log = RejectLog()
    t0 = time.monotonic()
    recs = list(load_groups(groups, files, tmp_path, 16, 0, 10**6, log, timeout=1.0, loader=sleepy_loader))
    assert time.monotonic() - t0 < 20
    assert [r.id for r in recs] == ["ok"]
    assert sorted((r.row, r.code) for r in log.items) == [(2, "timeout"), (4, "missing"), (5, "timeout")]


def test_read_text_mapping_csv_and_errors(tmp_path):
    (tmp_path / "m.csv").write_text("uid,caption\nu1,one\nu1,two\nu2,three\n")
    assert read_text_mapping(tmp_path / "m.csv") == {"u1": ["one", "two"], "u2": ["three"]}
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(BadInputError, match="JSON object"):
        read_text_mapping(tmp_path / "m.json")
    with pytest.raises(BadInputError, match="cannot read"):
        read_text_mapping(tmp_path / "none.json")


def test_every_format_is_registered():
    assert set(FORMATS) == {"modelnet40-h5", "scanobjectnn-h5", "openshape-npy", "cap3d", "text2shape"}
    for name in FORMATS:
        assert callable(get_loader(name))
    with pytest.raises(BadInputError, match="unknown format"):
        get_loader("shapenet")


def test_import_format_writes_data_set_and_rejections(tmp_path, modelnet):
    out = tmp_path / "out"
    summary = import_format("modelnet40-h5", modelnet, out, n_points=32, progress=False)
    assert summary.imported == 5
    assert summary.rejected == {"unreadable": 1, "non-finite": 1, "bad-label": 1, "bad-layout": 1}
    recs = list(iter_records(out, split="test"))
    assert [r.category for r in recs] == ["bench", "bed", "flower_pot"]
    lines = (out / "rejected.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["reason"] for line in lines)
    with pytest.raises(BadInputError, match="needs --captions"):
        import_format("cap3d", tmp_path, tmp_path / "o2", progress=False)
    with pytest.raises(BadInputError, match="drop --captions"):
        import_format("scanobjectnn-h5", modelnet, tmp_path / "o3", captions=modelnet / "x.csv", progress=False)


def test_cli_format_import(tmp_path, modelnet, capsys):
    parser = argparse.ArgumentParser(prog="daer")
    data = parser.add_subparsers(dest="command").add_parser("data")
    add_parser(data.add_subparsers(dest="data_command"))
    args = parser.parse_args(["data", "import", "--format", "modelnet40-h5", "--source", str(modelnet), "--out",
                              str(tmp_path / "o"), "--points", "32", "--no-progress"])  # fmt: skip
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "imported 5 shapes" in out and "rejected 4 rows" in out
    args = parser.parse_args(["data", "import", "--format", "cap3d", "--meshes", str(tmp_path), "--out", "x"])
    with pytest.raises(BadInputError, match="--source"):
        args.func(args)


def _long_axis(points: np.ndarray) -> int:
    """The axis along which a cloud is longest."""
    return int(np.argmax(points.max(0) - points.min(0)))


def _tall_along_y(n: int) -> np.ndarray:
    """Clouds 4x longer along y than along x and z: upright in a +y-up file."""
    return _clouds(n) * np.array([0.25, 1.0, 0.25], dtype=np.float32)


@pytest.mark.parametrize("loader,classes", [(load_modelnet40_h5, 5), (load_scanobjectnn_h5, 15)])
def test_h5_formats_turn_their_y_up_to_z(tmp_path, loader, classes):
    """The PointNet ModelNet40 and ScanObjectNN files are +y up; daer's shapes are +z up."""
    (tmp_path / "shape_names.txt").write_text("\n".join(f"c{i}" for i in range(classes)) + "\n")
    _h5(tmp_path / "test_x.h5", _tall_along_y(3), np.zeros(3, dtype=np.int64))
    assert [_long_axis(r.points) for r in loader(tmp_path, n_points=64)] == [2, 2, 2]  # y -> z by default
    assert [_long_axis(r.points) for r in loader(tmp_path, n_points=64, up="z")] == [1, 1, 1]  # kept as given
    with pytest.raises(BadInputError, match="up axis"):
        list(loader(tmp_path, n_points=64, up="w"))


def test_file_formats_take_an_up_axis(tmp_path):
    """text2shape reads ShapeNet's +y-up models; cap3d and openshape-npy keep each file's own axis."""
    tall = trimesh.creation.box(extents=(0.2, 1.0, 0.2))  # upright in a +y-up file
    (tmp_path / "m1.obj").write_text(tall.export(file_type="obj"))
    np.save(tmp_path / "u1.npy", _tall_along_y(1)[0])
    (tmp_path / "t2s.csv").write_text("modelId,description,category\nm1,a tall box,Box\n")
    (tmp_path / "cap3d.csv").write_text("u1,a tall cloud\n")
    (tmp_path / "openshape.json").write_text('{"u1": ["a tall cloud"]}')
    t2s = lambda **kw: next(load_text2shape(tmp_path / "t2s.csv", tmp_path, n_points=64, **kw))  # noqa: E731
    assert _long_axis(t2s().points) == 2 and _long_axis(t2s(up="z").points) == 1
    cap3d = lambda **kw: next(load_cap3d(tmp_path / "cap3d.csv", tmp_path, n_points=64, **kw))  # noqa: E731
    assert _long_axis(cap3d().points) == 1 and _long_axis(cap3d(up="y").points) == 2
    ops = lambda **kw: next(load_openshape_npy(tmp_path / "u1.npy", tmp_path / "openshape.json", 64, **kw))  # noqa: E731
    assert _long_axis(ops().points) == 1 and _long_axis(ops(up="y").points) == 2


def test_cli_format_import_passes_the_up_axis(tmp_path, capsys):
    """``--up`` reaches a format import (it used to be read for meshes only, and silently dropped here)."""
    src = tmp_path / "h5"
    src.mkdir()
    (src / "shape_names.txt").write_text("a\n")
    _h5(src / "test0.h5", _tall_along_y(2), np.zeros(2, dtype=np.int64))
    parser = argparse.ArgumentParser(prog="daer")
    data = parser.add_subparsers(dest="command").add_parser("data")
    add_parser(data.add_subparsers(dest="data_command"))
    for up, axis in ((None, 2), ("z", 1)):
        out = tmp_path / f"o_{up}"
        argv = ["data", "import", "--format", "modelnet40-h5", "--source", str(src), "--out", str(out),
                "--points", "32", "--no-progress"] + (["--up", up] if up else [])  # fmt: skip
        args = parser.parse_args(argv)
        assert args.func(args) == 0
        assert {_long_axis(r.points) for r in iter_records(out)} == {axis}
