"""Training reads the data set's stored FPS/kNN groups instead of grouping the shapes for its per-run cache."""

from __future__ import annotations

import json
from pathlib import Path

from daer.data.build import build_synth
from daer.train.train_config import TrainConfig
from daer.train.trainer import Trainer
from tests.data.test_point_groups import without_groups


def _run(data: Path, out: Path) -> list[float]:
    cfg = TrainConfig(
        data=str(data), out=str(out), config="tiny", steps=6, batch_size=8, ckpt_every=100, log_every=1,
        warmup_steps=2, progress=False,
    )  # fmt: skip
    Trainer(cfg).fit()
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line]


def test_training_takes_stored_groups_and_learns_the_same(tmp_path: Path) -> None:
    build_synth(tmp_path / "data", 40, n_points=256, workers=1, progress=False)
    stored = _run(tmp_path / "data", tmp_path / "run")
    assert not list((tmp_path / "run").glob("cache/groups-*"))  # nothing grouped, so nothing cached
    old = without_groups(tmp_path / "data", tmp_path / "old")
    assert _run(old, tmp_path / "run_old") == stored and len(stored) == 6
    assert list((tmp_path / "run_old").glob("cache/groups-*"))  # grouped on the fly and cached, as before
