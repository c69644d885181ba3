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
