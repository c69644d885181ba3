"""daer index build / Searcher on a tiny synth set with a tiny checkpoint, checked against the model itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from daer.data.build import build_synth
from daer.data.shards import iter_records, load_points, read_manifest
from daer.errors import BadInputError, IntegrityError
from daer.models.model import create_model, load_model
from daer.models.point_encoder import PointFeatures
from daer.retrieval.indexer import build_index, model_hash
from daer.retrieval.searcher import Searcher
from daer.retrieval.store import open_index_dir
from tests.data.test_point_groups import TINY, spy_groups, with_group_values, without_groups

N_SHAPES = 40


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("indexer")
    build_synth(root / "data", N_SHAPES, n_points=256, workers=1, progress=False)
    torch.manual_seed(0)
    create_model("tiny", n_points=256).save(root / "run")
    torch.manual_seed(1)
    create_model("tiny", n_points=256).save(root / "other")
    build_index(root / "run", root / "data", root / "exact", method="exact", progress=False)
    build_index(root / "run", root / "data", root / "ers", method="ers", batch=7, progress=False)
    return {"root": root, "data": root / "data", "run": root / "run", "other": root / "other",
            "exact": root / "exact", "ers": root / "ers"}  # fmt: skip


@pytest.fixture(scope="module")
def encoded(stack: dict[str, Path]) -> tuple[list[str], PointFeatures]:
    model = load_model(stack["run"])
    ids, pts = load_points(stack["data"])
    with torch.no_grad():
        return ids, model.encode_points(torch.from_numpy(pts))


def test_index_folder_holds_the_model_outputs(stack, encoded) -> None:
    ids, feats = encoded
    folder = open_index_dir(stack["ers"], expect_model_hash=model_hash(stack["run"]), expect_dim=32)
    assert folder.manifest["count"] == N_SHAPES and folder.meta["fine_levels"] == [1, 2, 3]
    np.testing.assert_allclose(folder.array("vectors"), feats.global_.numpy(), atol=1e-5)
    for lv in (1, 2, 3):
        fine = folder.array(f"fine_{lv}")
        assert fine.dtype == np.float16 and fine.shape == (N_SHAPES, *feats.levels[lv - 1].shape[1:])
        np.testing.assert_allclose(fine, feats.levels[lv - 1].numpy(), rtol=2e-3, atol=2e-3)
    lines = folder.file("meta.jsonl").read_text(encoding="utf-8").splitlines()
    recs = list(iter_records(stack["data"], columns=["category", "attributes", "captions"]))
    assert [json.loads(line)["id"] for line in lines] == ids == [r.id for r in recs]
    assert json.loads(lines[3]) == {
        "id": recs[3].id, "category": recs[3].category, "attributes": recs[3].attributes, "caption": recs[3].captions[0]
    }  # fmt: skip


def test_search_without_rerank_is_global_cosine_ranking(stack, encoded) -> None:
    ids, feats = encoded
    model = load_model(stack["run"])
    query = "a wooden chair with four legs"
    with torch.no_grad():
        t = model.encode_text([query]).global_.numpy()[0]
    ref = np.argsort(-(feats.global_.numpy() @ t), kind="stable")[:8]
    for name in ("exact", "ers"):  # 40 shapes: ERS scans every leaf here, so it is exact too
        res = Searcher(stack[name], candidates=20).search_many([query], k=8, rerank=False)[0]
        assert res["query"] == query and res["latency_ms"] > 0
        got = [r["score"] for r in res["results"]]
        np.testing.assert_allclose(got, feats.global_.numpy()[ref] @ t, atol=1e-5)
        for r, i in zip(res["results"], ref, strict=True):  # same shapes, up to float ties of an untrained model
            assert r["id"] == ids[i] or abs(r["score"] - float(feats.global_.numpy()[i] @ t)) < 1e-5
        assert set(res["results"][0]) == {"id", "score", "category", "attributes", "caption"}


def test_rerank_uses_the_model_final_score(stack, encoded) -> None:
    ids, feats = encoded
    model = load_model(stack["run"])
    query = "a tall lamp"
    with torch.no_grad():
        text = model.encode_text([query])
        final = model.score(text, feats)[0].numpy()  # (M,) fused HAF + global
    s = Searcher(stack["exact"], candidates=N_SHAPES, rerank_depth=N_SHAPES)
    res = s.search_many([query], k=10)[0]["results"]
    ref = np.argsort(-final, kind="stable")[:10]
    row = {sid: i for i, sid in enumerate(ids)}
    got = np.array([r["score"] for r in res])
    np.testing.assert_allclose(got, [final[row[r["id"]]] for r in res], atol=2e-3)  # fp16 tokens
    assert np.all(np.diff(got) <= 0)
    np.testing.assert_allclose(got, final[ref], atol=4e-3)  # the same top 10 up to fp16 near-ties
    ers = Searcher(stack["ers"], candidates=N_SHAPES, rerank_depth=N_SHAPES).search_many([query], k=10)[0]
    assert [r["id"] for r in ers["results"]] == [r["id"] for r in res]


def test_fine_level_subset_and_split(stack, encoded) -> None:
    root = stack["root"]
    out = build_index(stack["run"], stack["data"], root / "lv2", method="exact", split="test", fine_levels=[2],
                      progress=False)  # fmt: skip
    n_test = read_manifest(stack["data"])["counts"]["test"]
    assert out["n"] == n_test and out["fine_levels"] == [2]
    s = Searcher(root / "lv2", candidates=n_test, rerank_depth=n_test)
    res = s.search_many(["a round table"], k=n_test)[0]["results"]
    assert len(res) == n_test and all(r["id"] in {x.id for x in iter_records(stack["data"], "test")} for r in res)
    scores = [r["score"] for r in res]
    assert scores == sorted(scores, reverse=True)


def test_mismatched_or_damaged_index_is_refused(stack, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="rebuild the index"):
        Searcher(stack["exact"], ckpt=stack["other"])
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(stack["exact"], broken)
    (broken / "meta.jsonl").write_bytes(b"x" + (broken / "meta.jsonl").read_bytes()[1:])
    with pytest.raises(IntegrityError, match="damaged"):
        Searcher(broken)


def test_bad_input(stack, tmp_path: Path) -> None:
    with pytest.raises(BadInputError):
        build_index(stack["run"], stack["data"], tmp_path / "x", method="lsh", progress=False)
    with pytest.raises(BadInputError):
        build_index(stack["run"], stack["data"], tmp_path / "x", fine_levels=[4], progress=False)
    with pytest.raises(BadInputError):
        Searcher(stack["exact"]).search_many(["  "])
    assert not (tmp_path / "x").exists()


def test_stored_groups_give_the_same_index(stack, tmp_path: Path) -> None:
    """The stored tiny groups are read (not recomputed) and give bit for bit the embeddings of on-the-fly grouping;
    a data set without them (written before schema 3) is grouped on the fly; groups that are not the shapes' own
    (shuffled between shapes) change the embeddings, so the equality is no accident of unused groups."""
    model = load_model(stack["run"])
    calls = spy_groups(model)
    build_index(stack["run"], stack["data"], tmp_path / "stored", method="exact", batch=7, progress=False, model=model)
    assert calls and all(calls)
    old = without_groups(stack["data"], tmp_path / "old")
    calls.clear()
    build_index(stack["run"], old, tmp_path / "fly", method="exact", batch=7, progress=False, model=model)  # same
    # batches as above: the encoder's float sums (not the groups) move with the batch size
    assert calls and not any(calls)
    a, b = (open_index_dir(tmp_path / name) for name in ("stored", "fly"))
    for name in ("vectors", "fine_1", "fine_2", "fine_3"):
        assert np.array_equal(a.array(name), b.array(name)), name
    shuffled = with_group_values(stack["data"], tmp_path / "shuffled", TINY, lambda blk: np.roll(blk, 1, axis=0))
    build_index(stack["run"], shuffled, tmp_path / "wrong", method="exact", progress=False, model=model)
    assert not np.allclose(open_index_dir(tmp_path / "wrong").array("vectors"), a.array("vectors"), atol=1e-3)
