"""``daer index build`` and ``daer search`` end to end on a tiny synth set and a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from daer.cli import main
from daer.data.build import build_synth
from daer.models.model import create_model
from daer.retrieval.searcher import Searcher


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("searchcli")
    build_synth(root / "data", 30, n_points=256, workers=1, progress=False)
    torch.manual_seed(0)
    create_model("tiny", n_points=256).save(root / "run")
    rc = main(["index", "build", "--ckpt", str(root / "run"), "--data", str(root / "data"), "--out",
               str(root / "idx"), "--quiet"])  # fmt: skip
    assert rc == 0
    return root / "idx"


def test_search_json_lines(index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["search", "--index", str(index), "-k", "5", "--json", "a red chair"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert set(res) == {"query", "latency_ms", "results"} and res["query"] == "a red chair"
    assert len(res["results"]) == 5
    for r in res["results"]:
        assert set(r) == {"id", "score", "category", "attributes", "caption"}
        assert isinstance(r["attributes"], dict) and r["caption"]
    expected = Searcher(index).search("a red chair", 5)  # the command is the library call
    assert [r["id"] for r in res["results"]] == [r["id"] for r in expected]

    queries = tmp_path / "q.txt"
    queries.write_text("a lamp\n\n a table \n", encoding="utf-8")
    assert main(["search", "--index", str(index), "--queries", str(queries), "--json", "--no-rerank", "-k", "3"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["query"] for o in out] == ["a lamp", "a table"] and all(len(o["results"]) == 3 for o in out)


def test_search_table_output(index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["search", "--index", str(index), "a mug"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("a mug") and " 1. " in out and "10. " in out


def test_index_build_methods(index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = index.parent
    for method in ("exact", "ivf", "hnsw"):
        args = ["index", "build", "--ckpt", str(root / "run"), "--data", str(root / "data"), "--out",
                str(tmp_path / method), "--method", method, "--quiet", "--fine-levels", "2"]  # fmt: skip
        assert main(args) == 0
        assert main(["search", "--index", str(tmp_path / method), "-k", "4", "--json", "a vase"]) == 0
    out = capsys.readouterr().out
    assert "indexed 30 shapes" in out


def test_search_errors(index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["search", "--index", str(index)]) == 2
    assert "give a QUERY" in capsys.readouterr().err
    assert main(["search", "--index", str(tmp_path / "none"), "x"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["search", "--index", str(index), "--queries", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read queries" in capsys.readouterr().err
    assert main(["search", "--index", str(index), "-k", "0", "x"]) == 2
    assert main(["index", "build", "--ckpt", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
