"""``daer data info`` summary: exact keys, counts from the manifest, readable text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daer.data.info import dataset_info, format_info
from daer.data.record import ShapeRecord
from daer.data.shards import DatasetWriter, read_manifest
from daer.errors import IntegrityError


def test_info_keys_and_counts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    layout = [("chair", "train")] * 5 + [("lamp", "train"), ("lamp", "val"), ("table", "test"), ("table", "test")]
    with DatasetWriter(tmp_path, source="test", shard_size=4) as w:
        for i, (cat, split) in enumerate(layout):
            pts = rng.standard_normal((32, 3)).astype(np.float32)
            w.add(ShapeRecord(id=str(i), category=cat, attributes={}, captions=[cat], split=split, points=pts))
    info = dataset_info(tmp_path)
    assert set(info) == {"n", "splits", "categories"}
    assert info == {
        "n": 9,
        "splits": {"train": 6, "val": 1, "test": 2},
        "categories": {"chair": 5, "lamp": 2, "table": 2},
    }
    text = format_info(info, read_manifest(tmp_path))
    assert "shapes: 9" in text and "source test" in text and "3 shards" in text
    assert "chair" in text and "66.7%" in text


def test_info_on_missing_set(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="not a daer data set"):
        dataset_info(tmp_path)
