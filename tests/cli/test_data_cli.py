"""``daer data synth|info|preview`` end to end on a tiny real synth set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from daer.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    assert main(["data", "synth", "--out", str(out), "--n", "6", "--points", "256", "--workers", "1"]) == 0
    return out


def test_synth_and_info_json(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["data", "info", str(tiny), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == {"n", "splits", "categories"}
    assert set(info["splits"]) == {"train", "val", "test"}
    assert info["n"] == 6 == sum(info["splits"].values()) == sum(info["categories"].values())
    assert len(info["categories"]) == 6  # categories cycle with the shape index
    assert main(["data", "info", str(tiny)]) == 0
    assert "shapes: 6" in capsys.readouterr().out


def test_preview(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sheet.png"
    assert main(["data", "preview", str(tiny), "--out", str(out), "--n", "4"]) == 0
    assert Image.open(out).size[0] == 4 * 256
    capsys.readouterr()
    assert main(["data", "info", str(tiny), "--json"]) == 0
    n_test = json.loads(capsys.readouterr().out)["splits"]["test"]
    code = main(["data", "preview", str(tiny), "--out", str(tmp_path / "t.png"), "--split", "test"])
    if n_test:
        assert code == 0 and Image.open(tmp_path / "t.png").size[0] == 256 * min(4, n_test)
    else:
        assert code == 2 and "no shapes" in capsys.readouterr().err


def test_resume_is_a_no_op_and_changed_seed_refused(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (tiny / "manifest.json").read_text()
    assert main(["data", "synth", "--out", str(tiny), "--n", "6", "--points", "256", "--workers", "2"]) == 0
    assert (tiny / "manifest.json").read_text() == before
    capsys.readouterr()
    assert main(["data", "synth", "--out", str(tiny), "--n", "6", "--points", "256", "--seed", "3"]) == 2
    assert "error:" in capsys.readouterr().err


def test_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--n", "0"]) == 2
    assert "--n must be >= 1" in capsys.readouterr().err


def _synth_meshes(folder: Path, up: str) -> Path:
    """Eight Align3D-Synth meshes (one per category) stored with ``up`` as their up axis, and a captions CSV."""
    import csv

    import numpy as np

    from daer.data.mesh_io import UP_ROTATIONS
    from daer.synth.generator import caption_draws, shape_spec
    from daer.synth.geometry_registry import builder_for

    folder.mkdir()
    with open(folder / "captions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "caption"])
        for index in range(19, 27):
            category, attributes = shape_spec(index, 0)
            mesh = builder_for(category)(dict(attributes), np.random.default_rng([0, index, 0]))
            mesh.vertices = mesh.vertices @ UP_ROTATIONS[up]  # turning by UP_ROTATIONS[up] stands it up again
            mesh.export(folder / f"{index}.obj")
            writer.writerow([f"{index}.obj", caption_draws(index, 0)[0].text])
    return folder / "captions.csv"


@pytest.mark.parametrize("up", ["y", "z"])
def test_import_up_auto_finds_the_files_axis(tmp_path: Path, up: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--up auto asks the packaged model which axis a sample of the files reads best with; the import then
    holds exactly what naming that axis gives (a model-free "always z" would leave y-up chairs lying down)."""
    from daer.data.shards import load_points

    captions = _synth_meshes(tmp_path / "meshes", up)
    common = ["data", "import", "--meshes", str(tmp_path / "meshes"), "--captions", str(captions), "--workers", "1",
              "--points", "512", "--no-progress"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "auto"), "--up", "auto"]) == 0
    assert f"up axis {up} (auto:" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "named"), "--up", up]) == 0
    (ids, auto), (named_ids, named) = load_points(tmp_path / "auto"), load_points(tmp_path / "named")
    assert ids == named_ids and auto.tobytes() == named.tobytes()
    assert main(["data", "import", "--format", "cap3d", "--source", str(tmp_path), "--out", str(tmp_path / "f"),
                 "--up", "auto"]) == 2  # fmt: skip
    assert "known up axis" in capsys.readouterr().err
