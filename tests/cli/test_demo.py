"""The demo pipeline end to end on a tiny model and a tiny data set."""

from __future__ import annotations

from pathlib import Path

from daer.cli import main
from daer.models.model import create_model


def test_demo_runs_every_stage(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "ckpt"
    create_model("tiny", n_points=256).save(ckpt)
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n", "80", "--points", "256", "--workers", "1"]
    assert main([*args, "--ckpt", str(ckpt), "--eval-shapes", "10"]) == 0
    printed = capsys.readouterr().out
    for stage in ("1. Align3D-Synth", "2. Model", "3. Evaluation", "4. ERS index", "5. Example queries", "6. Gallery"):
        assert stage in printed
    assert "daer serve --index" in printed
    page = (out / "gallery" / "index.html").read_text()
    assert page.count("class='card'") == 6 * 5
    assert len(list((out / "gallery" / "img").glob("*_words.png"))) == 30
    assert (out / "preview.png").stat().st_size > 0
    assert (out / "index" / "manifest.json").is_file()


def test_demo_trains_when_asked_or_nothing_is_packaged(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n", "80", "--points", "256", "--workers", "1", "--eval-shapes", "10"]
    assert main([*args, "--train", "--train-config", "tiny", "--train-steps", "3"]) == 0
    assert "training the tiny model for 3 steps" in capsys.readouterr().out
    assert (out / "run" / "model.safetensors").is_file()


def test_packaged_model_loads_with_its_recorded_hash() -> None:
    from daer.cli.demo import packaged_checkpoint
    from daer.models.model import load_model

    shipped = packaged_checkpoint()
    assert shipped is not None, "src/daer/assets/demo_model is missing: run `make demo-train`"
    model = load_model(shipped)  # checks the weights' SHA-256 against config.json
    assert model.config.name == "small" and model.config.mode == "haf"
    assert (shipped / "model.safetensors").stat().st_size <= 25 * 2**20
