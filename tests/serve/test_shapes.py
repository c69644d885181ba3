"""The shard-backed shape store: every record read back by id, split filter, bounded cache, one decode per shard."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from daer.data.shards import iter_records
from daer.serve.shapes import ShapeStore


def test_every_record_by_id(stack: dict[str, Path]) -> None:
    store = ShapeStore(stack["data"], cached_shards=1)
    records = list(iter_records(stack["data"]))
    assert store.ids() == [r.id for r in records] and len(store) == len(records)
    for rec in records:
        info = store.info(rec.id)
        assert info == {
            "id": rec.id,
            "category": rec.category,
            "attributes": rec.attributes,
            "captions": rec.captions,
            "split": rec.split,
            "n_points": len(rec.points),
        }
        assert np.array_equal(store.points(rec.id), rec.points)
    assert store.info("nope") is None and store.points("nope") is None and "nope" not in store


def test_split_filter(stack: dict[str, Path]) -> None:
    test_ids = [r.id for r in iter_records(stack["data"], split="test", columns=["split"])]
    store = ShapeStore(stack["data"], split="test")
    assert store.ids() == test_ids and all(store.info(i)["split"] == "test" for i in test_ids)


def test_concurrent_first_reads_decode_a_shard_once(stack: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    store = ShapeStore(stack["data"])
    calls: list[int] = []
    decode = store._decode

    def counting(s: int):  # noqa: ANN202
        calls.append(s)
        return decode(s)

    monkeypatch.setattr(store, "_decode", counting)
    ids = store.ids()
    start = threading.Barrier(16)

    def read(i: int) -> None:
        start.wait()
        assert store.points(ids[i % len(ids)]) is not None

    threads = [threading.Thread(target=read, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [0]  # the data set has one shard: decoded once, the other 15 readers waited for it
