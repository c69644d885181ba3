"""``daer classify`` on a point file with a saved (untrained) tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from daer.cli import main
from daer.data.mesh_io import AUTO_UP, classify_up, load_points
from daer.errors import BadInputError
from daer.models.model import create_model, load_model
from daer.models.packaged import packaged_checkpoint
from daer.models.zeroshot import classify_points, classify_upright
from daer.synth.taxonomy import CATEGORIES


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "run"
    create_model("tiny").save(path)
    return path


@pytest.fixture(scope="module")
def cloud_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(500, 3))
    path = tmp_path_factory.mktemp("pts") / "shape.npy"
    np.save(path, (pts / np.linalg.norm(pts, axis=1, keepdims=True)).astype(np.float32))
    return path


def test_classify_json_matches_the_model(run: Path, cloud_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["classify", "--ckpt", str(run), str(cloud_file), "--labels", "chair, mug,lamp", "--json", "--up", "z"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["file"] == str(cloud_file) and out["up"] == "z"
    ranked = out["labels"]
    assert sorted(r["label"] for r in ranked) == ["chair", "lamp", "mug"]
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert sum(r["prob"] for r in ranked) == pytest.approx(1.0, abs=1e-5)
    model = load_model(run)
    points, _ = load_points(cloud_file, n_points=model.config.n_points)
    with torch.no_grad():
        s = model.score(
            model.encode_text(["a 3d model of a chair"]), model.encode_points(torch.from_numpy(points)[None])
        )
    assert next(r["score"] for r in ranked if r["label"] == "chair") == pytest.approx(float(s[0, 0]), abs=1e-6)


def test_classify_chooses_up_unless_told(run: Path, cloud_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A point file names no up axis: each turn is tried (classify_upright); glTF is y up by specification."""
    assert main(["classify", "--ckpt", str(run), str(cloud_file), "--labels", "chair,mug,lamp", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = load_model(run)
    points, _ = load_points(cloud_file, n_points=model.config.n_points, up="z")
    up, ranked = classify_upright(model, points, ["chair", "mug", "lamp"])
    assert out["up"] == up and [r["label"] for r in out["labels"]] == [r["label"] for r in ranked]
    assert classify_up(".glb") == "y" and classify_up(".obj") == AUTO_UP and classify_up(".obj", "x") == "x"
    with pytest.raises(BadInputError, match="up axis"):
        classify_up(".obj", "w")


def test_classify_default_labels_text(run: Path, cloud_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--ckpt", str(run), str(cloud_file), "--top", "3"]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert len(lines) == 3 and all(line.split()[0] in CATEGORIES for line in lines)
    assert "up (chosen" in out.err


def test_classify_bad_inputs(run: Path, tmp_path: Path, cloud_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.npy"
    bad.write_bytes(b"this is not a numpy file")
    assert main(["classify", "--ckpt", str(run), str(bad)]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["classify", "--ckpt", str(tmp_path / "none"), str(cloud_file)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["classify", "--ckpt", str(run), str(cloud_file), "--labels", "a,a"]) == 2
    assert "distinct" in capsys.readouterr().err


def test_classify_without_ckpt_uses_the_packaged_model(cloud_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", str(cloud_file), "--labels", "chair,lamp", "--json", "--up", "z"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = load_model(packaged_checkpoint())
    points, _ = load_points(cloud_file, n_points=model.config.n_points)
    ref = classify_points(model, points, ["chair", "lamp"])
    assert [r["score"] for r in out["labels"]] == pytest.approx([r["score"] for r in ref], abs=1e-6)
