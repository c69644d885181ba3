"""The demo pipeline end to end on a tiny model and a tiny data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
    from daer.models.model import load_model
    from daer.models.packaged import packaged_checkpoint

    shipped = packaged_checkpoint()
    assert shipped is not None, "src/daer/assets/demo_model is missing: run `make demo-train`"
    model = load_model(shipped)  # checks the weights' SHA-256 against config.json
    assert model.config.name == "small" and model.config.mode == "haf"
    assert (shipped / "model.safetensors").stat().st_size <= 25 * 2**20


def test_packaged_model_answers_the_demo_queries(tmp_path: Path) -> None:
    """The shipped model on fresh Align3D-Synth shapes (every combination of every category once): the demo's
    chair queries put a chair first, with every named attribute, and chairs in most of the top five. A random
    or category-confused model (one trained with any-part drop put benches first here) fails."""
    import torch

    from daer.data.build import build_synth
    from daer.data.shards import iter_records
    from daer.models.model import load_model
    from daer.models.packaged import packaged_checkpoint
    from daer.synth.taxonomy import CATEGORIES

    shipped = packaged_checkpoint()
    assert shipped is not None
    model = load_model(shipped).eval()
    n = len(CATEGORIES) * 16  # the first 16 chairs cover the chair's 16 combinations
    build_synth(tmp_path, n, seed=1, workers=1, shard_size=n, progress=False)
    recs = list(iter_records(tmp_path))
    queries = {
        "a chair with three legs and armrests": ("chair", {"legs": "3", "armrests": "yes"}),
        "a four-legged chair without armrests": ("chair", {"legs": "4", "armrests": "no"}),
        "a chair with armrests": ("chair", {"armrests": "yes"}),
    }
    with torch.no_grad():
        shapes = model.encode_points(torch.from_numpy(np.stack([r.points for r in recs])))
        scores = model.score(model.encode_text(list(queries)), shapes)  # (Q, n)
    for (text, (cat, want)), row in zip(queries.items(), scores, strict=True):
        top = torch.topk(row, 5).indices.tolist()
        cats = [recs[i].category for i in top]
        assert cats[0] == cat and cats.count(cat) >= 3, (text, cats)
        best = recs[top[0]].attributes
        assert all(best[k] == v for k, v in want.items()), (text, best)
