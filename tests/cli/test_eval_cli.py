"""``daer eval`` end to end: a saved tiny checkpoint on a tiny synth set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from daer.cli import main
from daer.data.build import build_synth
from daer.eval.evaluate import EVAL_KEYS, evaluate
from daer.models.model import create_model, load_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evcli")
    build_synth(root / "data", 60, n_points=256, workers=1, progress=False)
    torch.manual_seed(0)
    create_model("tiny", n_points=256).save(root / "run")
    return root / "data", root / "run"


def test_eval_json_one_line(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data, run = setup
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(run), "--data", str(data), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    result = json.loads(out)
    assert list(result) == list(EVAL_KEYS)
    assert result["n_shapes"] == 13
    assert all(0.0 <= result[k] <= 1.0 for k in EVAL_KEYS if k != "n_shapes")  # grounding too: haf, labelled data
    assert result == evaluate(load_model(run), data)  # the command is the library call


def test_eval_table_and_options(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data, run = setup
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(run), "--data", str(data), "--split", "val", "--max-shapes", "4"]) == 0
    out = capsys.readouterr().out
    assert "shapes evaluated: 4" in out and "zero-shot top-1" in out and "spec query P@1 / P@10" in out
    assert "grounding (attention on part)" in out


def test_eval_errors(setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = setup
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(tmp_path / "none"), "--data", str(data)]) == 2
    assert "error: no checkpoint" in capsys.readouterr().err
    assert main(["eval", "--ckpt", str(run), "--data", str(tmp_path / "none")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["eval", "--ckpt", str(run), "--data", str(data), "--max-shapes", "0"]) == 2
    assert "max_shapes" in capsys.readouterr().err


def test_eval_with_own_queries(setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = setup
    good = tmp_path / "q.jsonl"
    good.write_text('{"text": "a chair with arms", "category": "chair", "attributes": {"armrests": "yes"}}\n'
                    '{"text": "a stool", "category": "stool"}\n')  # fmt: skip
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(run), "--data", str(data), "--json", "--queries", str(good)]) == 0
    result = json.loads(capsys.readouterr().out)
    from daer.eval.queries import read_spec_queries

    assert result == evaluate(load_model(run), data, spec=read_spec_queries(good))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a stool", "category": "stool"}\n{"text": 3}\n')
    assert main(["eval", "--ckpt", str(tmp_path / "none"), "--data", str(data), "--queries", str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err  # the query file is checked before the model is looked for


def test_eval_with_class_names(setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--class-names reaches zero-shot (prompts for a synth class replaced: another score), and a bad file is
    refused before the model is looked for."""
    data, run = setup
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"chair": ["a lamp"], "lamp": ["a chair"]}))
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(run), "--data", str(data), "--json", "--class-names", str(names)]) == 0
    result = json.loads(capsys.readouterr().out)
    swapped = evaluate(load_model(run), data, class_names={"chair": ["a lamp"], "lamp": ["a chair"]})
    assert result == swapped
    names.write_text('{"chair": 3}')
    assert main(["eval", "--ckpt", str(tmp_path / "none"), "--data", str(data), "--class-names", str(names)]) == 2
    assert "'chair' must map" in capsys.readouterr().err
