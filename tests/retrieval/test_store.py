"""Index folders: round trips give the same results; damaged or mismatched indexes are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daer.errors import IntegrityError
from daer.retrieval.baselines import ExactIndex, HNSWIndex, IVFIndex
from daer.retrieval.ers import ERSIndex
from daer.retrieval.store import IndexWriter, load_index, open_index_dir


def _ers(x: np.ndarray, codes: str = "flat", spill: int = 1) -> ERSIndex:
    return ERSIndex.build(x, n_leaves=24, depth=2, niter=5, codes=codes, spill=spill, model_hash="model-a")


@pytest.mark.parametrize("codes,spill", [("flat", 1), ("sq8", 1), ("sq8", 2), ("pq4fs", 1), ("pq4fs", 2)])
def test_ers_round_trip_same_results_and_stats(tmp_path: Path, small_data, codes: str, spill: int) -> None:
    x, q = small_data
    index = _ers(x, codes, spill)
    index.set_learning(True)
    index.search(q[:20], k=5, beam=2, n_probe=3)
    index.save(tmp_path / "idx")
    loaded = ERSIndex.load(tmp_path / "idx", expect_model_hash="model-a", expect_dim=x.shape[1])
    for a, b in zip(index.visits + index.successes, loaded.visits + loaded.successes, strict=True):
        np.testing.assert_array_equal(a, b)
    index.set_learning(False)
    loaded.set_learning(False)
    for s_a, s_b in zip(
        index.search(q, k=10, beam=3, n_probe=6), loaded.search(q, k=10, beam=3, n_probe=6), strict=True
    ):
        np.testing.assert_array_equal(s_a, s_b)
    assert loaded.config.codes == codes and (loaded.vectors is not None) == (codes != "flat")
    assert type(loaded.ivf) is type(index.ivf) and loaded.config == index.config
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["method"] == "ers" and manifest["count"] == len(x) and manifest["dim"] == x.shape[1]
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("cls", [ExactIndex, IVFIndex, HNSWIndex])
def test_baseline_round_trip_through_load_index(tmp_path: Path, small_data, cls) -> None:
    x, q = small_data
    kwargs = {"nlist": 8, "niter": 4} if cls is IVFIndex else {}
    index = cls.build(x, ids=np.arange(len(x)) + 5, model_hash="m", **kwargs)
    index.save(tmp_path / "b")
    loaded = load_index(tmp_path / "b", expect_model_hash="m")
    assert type(loaded) is cls
    for a, b in zip(index.search(q, k=7), loaded.search(q, k=7), strict=True):
        np.testing.assert_array_equal(a, b)


def test_index_written_before_pq4fs_still_loads(tmp_path: Path, small_data) -> None:
    x, q = small_data
    index = _ers(x, "sq8", 2)
    index.save(tmp_path / "idx")
    path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(path.read_text())
    for key in ("pq_m", "reorder"):  # the config of an index saved before these fields existed
        del manifest["meta"]["config"][key]
    path.write_text(json.dumps(manifest))
    loaded = load_index(tmp_path / "idx")
    assert loaded.config.pq_m == 0 and loaded.config.reorder == 0
    for a, b in zip(index.search(q, k=10, beam=3, n_probe=6), loaded.search(q, k=10, beam=3, n_probe=6), strict=True):
        np.testing.assert_array_equal(a, b)


def test_pq4fs_index_without_vectors_is_refused(tmp_path: Path, small_data) -> None:
    x, _ = small_data
    _ers(x, "pq4fs").save(tmp_path / "idx")
    path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["files"]["vectors.npy"]
    path.write_text(json.dumps(manifest))
    (tmp_path / "idx" / "vectors.npy").unlink()
    with pytest.raises(IntegrityError, match="float vectors"):
        ERSIndex.load(tmp_path / "idx")


def test_damaged_files_are_refused(tmp_path: Path, small_data) -> None:
    x, _ = small_data
    _ers(x).save(tmp_path / "idx")
    target = tmp_path / "idx" / "ivf.faiss"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="damaged"):
        ERSIndex.load(tmp_path / "idx")
    target.write_bytes(bytes(data[:-10]))
    with pytest.raises(IntegrityError, match="bytes"):
        load_index(tmp_path / "idx")
    target.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        load_index(tmp_path / "idx")
    (tmp_path / "idx" / "manifest.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="manifest"):
        load_index(tmp_path / "idx")
    with pytest.raises(IntegrityError, match="no manifest"):
        load_index(tmp_path / "nothing-here")


def test_mismatched_model_or_dimension_is_refused(tmp_path: Path, small_data) -> None:
    x, _ = small_data
    _ers(x).save(tmp_path / "idx")
    with pytest.raises(IntegrityError, match="model"):
        ERSIndex.load(tmp_path / "idx", expect_model_hash="model-b")
    with pytest.raises(IntegrityError, match="dimension"):
        load_index(tmp_path / "idx", expect_dim=x.shape[1] + 1)
    with pytest.raises(IntegrityError, match="method"):
        ExactIndex.load(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="version"):
        load_index(tmp_path / "idx")


def test_writes_are_atomic(tmp_path: Path, small_data) -> None:
    x, q = small_data
    ExactIndex.build(x[:100], model_hash="old").save(tmp_path / "idx")
    with pytest.raises(RuntimeError), IndexWriter(tmp_path / "idx", "exact", "new", x.shape[1], 5) as w:
        w.put_array("ids", np.arange(5))
        raise RuntimeError("interrupted build")
    assert open_index_dir(tmp_path / "idx").manifest["model_hash"] == "old"  # old index untouched
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # temporary folder removed
    ExactIndex.build(x, model_hash="new").save(tmp_path / "idx")  # replacing an index on commit
    assert open_index_dir(tmp_path / "idx").manifest["count"] == len(x)
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]
