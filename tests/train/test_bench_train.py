"""The training-quality benchmark's smallest path: tiny config, 100 shapes, a few seconds per mode."""

from __future__ import annotations

import json

import pytest
from benchmarks import bench_train

from daer.eval.evaluate import EVAL_KEYS


@pytest.mark.slow
def test_smallest_run_trains_both_modes_evaluates_and_reports(tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["--n", "100", "--minutes", "0.04", "--config", "tiny", "--runs-dir", str(runs), "--set", "batch_size=16",
            "--no-write"]  # fmt: skip
    assert bench_train.main(argv) == 0
    md = capsys.readouterr().out
    report = json.loads(next(runs.glob("*-report.json")).read_text())
    results = report["results"]
    assert set(results) == {"haf", "global"}
    for mode, r in results.items():
        s = r["summary"]
        assert s["stopped_by"] == "time" and s["step"] > 0
        assert s["train_seconds"] <= 0.04 * 60 + 2 * s["train_seconds"] / s["step"] + 0.5  # ended on time
        assert set(r["test"]) == set(EVAL_KEYS) and r["test"]["n_shapes"] == 21
        assert r["train_split"]["n_shapes"] == report["info"]["counts"]["train"]
        assert f"| {mode} | {s['step']:,} |" in md
    for key in EVAL_KEYS[:-1]:
        a, b = results["haf"]["test"][key], results["global"]["test"][key]
        if b is None:  # grounding: a global model has no word-to-point attention
            assert key == "grounding" and f"| {key} | {a:.3f} | – | – |" in md
            continue
        assert f"| {key} | {a:.3f} | {b:.3f} | {a - b:.3f} |" in md  # every key, both modes, and the gap
    assert "embedding >= 300 shapes/s" in md and report["info"]["embed"]["shapes_per_s"] > 0
    assert md.count("**met**") + md.count("**missed**") == len(bench_train.GOALS) + len(bench_train.MARGINS) + 1


def test_bad_modes_and_overrides_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="--modes"):
        bench_train.main(["--modes", "haf,clip", "--runs-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        bench_train.main(["--set", "lr", "--runs-dir", str(tmp_path), "--data", str(tmp_path / "none")])
