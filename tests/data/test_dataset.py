"""The training data set: deterministic captions and order, rank sharding, augmentation, cached groups."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial

import numpy as np
import pytest
import torch

from daer.data.dataset import Augment, Batch, EpochBatchSampler, ShapeTextDataset, collate
from daer.data.record import ShapeRecord
from daer.data.shards import DatasetWriter
from daer.errors import BadInputError
from daer.models.pointops import precompute_groups

N_SHAPES, N_POINTS = 32, 256


def write_tiny(folder, n: int = N_SHAPES, n_points: int = N_POINTS) -> list[ShapeRecord]:
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        pts = rng.normal(size=(n_points, 3)).astype(np.float32)
        pts /= np.linalg.norm(pts, axis=1).max()
        cat = ["chair", "table", "lamp"][i % 3]
        caps = [f"a {cat}", f"a {cat} number {i}", f"shape {i}, a {cat}"]
        split = "train" if i % 8 else "val"
        records.append(ShapeRecord(f"s{i:03d}", cat, {"k": str(i % 2)}, caps, split, pts))
    with DatasetWriter(folder, "test", shard_size=10) as w:
        for r in records:
            w.add(r)
    return records


@dataclass
class Groups:
    centers: torch.Tensor  # (B, S) indices of sampled centres
    knn: torch.Tensor  # (B, S, K) neighbour indices


class CountingGroups:
    """Naive groups: every 16th point as a centre, its 8 nearest neighbours (counts calls)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, points: torch.Tensor) -> Groups:
        self.calls += 1
        centers = torch.arange(0, points.shape[1], 16).expand(points.shape[0], -1)
        c = torch.gather(points, 1, centers[..., None].expand(-1, -1, 3))
        knn = torch.cdist(c, points).topk(8, largest=False).indices
        return Groups(centers.contiguous(), knn)


def test_from_folder_reads_split_in_order(tmp_path):
    records = write_tiny(tmp_path / "data")
    ds = ShapeTextDataset.from_folder(tmp_path / "data", "train")
    train = [r for r in records if r.split == "train"]
    assert ds.ids == [r.id for r in train]
    assert len(ds) == len(train) == 28
    np.testing.assert_array_equal(ds.points[5], train[5].points)
    assert ds.categories[5] == train[5].category


def test_captions_are_seeded_per_epoch(tmp_path):
    write_tiny(tmp_path / "data")
    ds = ShapeTextDataset.from_folder(tmp_path / "data", "train", seed=3)
    again = ShapeTextDataset.from_folder(tmp_path / "data", "train", seed=3)
    e0 = [ds[(0, i)]["caption"] for i in range(len(ds))]
    e1 = [ds[(1, i)]["caption"] for i in range(len(ds))]
    assert e0 == [again[(0, i)]["caption"] for i in range(len(ds))]
    assert e0 != e1
    assert all(c in ds.captions[i] for i, c in enumerate(e0))
    assert len(set(e0) - {f"a {c}" for c in ("chair", "table", "lamp")}) > 5  # not always the first


def test_augmentation_keeps_groups_valid_and_is_seeded(tmp_path):
    write_tiny(tmp_path / "data")
    fn = CountingGroups()
    aug = Augment(yaw=True, scale=(0.8, 1.2), jitter=0.0)
    ds = ShapeTextDataset.from_folder(tmp_path / "data", "train", augment=aug, groups_fn=fn)
    plain = ShapeTextDataset.from_folder(tmp_path / "data", "train")
    item = ds[(2, 4)]
    raw = torch.from_numpy(plain.points[4])
    assert not torch.allclose(item["points"], raw)
    # yaw keeps z up to the common scale; the scale keeps ratios of norms
    ratio = item["points"].norm(dim=1) / raw.norm(dim=1)
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-5)
    assert torch.allclose(item["points"][:, 2], raw[:, 2] * ratio[0], atol=1e-5)
    recomputed = fn(item["points"][None])
    assert torch.equal(recomputed.knn[0], item["groups"].knn)
    assert torch.equal(ds[(2, 4)]["points"], item["points"])
    real = ShapeTextDataset.from_folder(
        tmp_path / "data",
        "train",
        augment=aug,
        groups_fn=partial(precompute_groups, level_sizes=[32, 8, 4], level_k=[8, 4, 4]),
    )
    item = real[(1, 7)]
    fresh = precompute_groups(item["points"], level_sizes=[32, 8, 4], level_k=[8, 4, 4])
    for lvl in range(3):
        assert torch.equal(fresh.centers[lvl], item["groups"].centers[lvl])
        assert torch.equal(fresh.neighbors[lvl], item["groups"].neighbors[lvl])
    assert item["groups"].centers[0].dtype == torch.long
    jittered = Augment(yaw=False, scale=(1.0, 1.0), jitter=0.01).apply(plain.points[4], np.random.default_rng(0))
    assert 0 < np.abs(jittered - plain.points[4]).max() <= 0.03 + 1e-6


def test_stretch_changes_proportions_within_its_range_and_off_draws_as_before():
    x = np.random.default_rng(1).normal(size=(500, 3)).astype(np.float32)
    stretched = Augment(yaw=False, scale=(1.0, 1.0), jitter=0.0, stretch=0.2).apply(x, np.random.default_rng(3))
    factors = stretched.std(0) / x.std(0)  # one factor per axis
    assert np.all((factors >= 0.8 - 1e-5) & (factors <= 1.2 + 1e-5)) and np.ptp(factors) > 0.01
    np.testing.assert_allclose(stretched / factors, x, rtol=1e-5, atol=1e-6)  # a pure per-axis scale
    before = Augment().apply(x, np.random.default_rng(3))  # stretch 0 draws nothing: old runs unchanged
    np.testing.assert_array_equal(Augment(stretch=0.0).apply(x, np.random.default_rng(3)), before)


def test_groups_are_cached_on_disk_and_damage_is_recomputed(tmp_path):
    write_tiny(tmp_path / "data")
    fn = CountingGroups()
    first = ShapeTextDataset.from_folder(
        tmp_path / "data", "train", groups_fn=fn, groups_chunk=8, cache_dir=tmp_path / "c"
    )
    assert fn.calls == 1 + 4  # the template shape, then 27 shapes in chunks of 8
    files = list((tmp_path / "c").glob("groups-*.safetensors"))
    assert len(files) == 1
    ref = fn(torch.from_numpy(first.points))
    assert torch.equal(first.groups.knn, ref.knn)

    fn.calls = 0
    second = ShapeTextDataset.from_folder(tmp_path / "data", "train", groups_fn=fn, cache_dir=tmp_path / "c")
    assert fn.calls == 1  # only the template
    assert torch.equal(second.groups.knn, ref.knn)

    files[0].write_bytes(b"damaged")
    fn.calls = 0
    third = ShapeTextDataset.from_folder(tmp_path / "data", "train", groups_fn=fn, cache_dir=tmp_path / "c")
    assert fn.calls > 1 and torch.equal(third.groups.knn, ref.knn)

    other = ShapeTextDataset.from_folder(
        tmp_path / "data", "train", groups_fn=fn, groups_key="k=16", cache_dir=tmp_path / "c"
    )
    assert len(list((tmp_path / "c").glob("groups-*.safetensors"))) == 2
    assert torch.equal(other.groups.knn, ref.knn)


def test_sampler_shards_by_rank_and_resumes():
    single = EpochBatchSampler(n=30, batch_size=8, seed=5)
    ranks = [EpochBatchSampler(n=30, batch_size=4, seed=5, rank=r, world=2) for r in range(2)]
    for step in range(9):  # crosses epochs (3 batches per epoch)
        assert single.batch(step) == ranks[0].batch(step) + ranks[1].batch(step)
    epoch0 = [i for s in range(3) for _, i in single.batch(s)]
    assert len(set(epoch0)) == 24 and all(0 <= i < 30 for i in epoch0)
    assert [k[0] for k in single.batch(3)] == [1] * 8
    assert single.batch(3) != single.batch(0)
    resumed = EpochBatchSampler(n=30, batch_size=8, seed=5, start_step=4)
    assert list(itertools.islice(resumed, 5)) == [single.batch(s) for s in range(4, 9)]
    assert EpochBatchSampler(n=30, batch_size=8, seed=6).batch(0) != single.batch(0)


def test_dataloader_batches_match_item_path(tmp_path):
    write_tiny(tmp_path / "data")
    ds = ShapeTextDataset.from_folder(
        tmp_path / "data", "train", n_points=128, augment=Augment(), groups_fn=CountingGroups()
    )
    sampler = EpochBatchSampler(len(ds), batch_size=6, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
    batch = next(iter(loader))
    assert isinstance(batch, Batch) and batch.points.shape == (6, 128, 3) and len(batch) == 6
    by_item = collate([ds[k] for k in sampler.batch(0)])
    assert torch.equal(batch.points, by_item.points) and batch.captions == by_item.captions
    assert torch.equal(batch.groups.knn, by_item.groups.knn) and batch.groups.knn.shape == (6, 8, 8)
    assert batch.categories == [ds.categories[i] for i in batch.indices.tolist()]


def test_bad_input_is_refused(tmp_path):
    write_tiny(tmp_path / "data")
    with pytest.raises(BadInputError, match="n_points"):
        ShapeTextDataset.from_folder(tmp_path / "data", "train", n_points=999)
    with pytest.raises(BadInputError, match="exceeds"):
        EpochBatchSampler(n=10, batch_size=8, world=2)
    with pytest.raises(BadInputError, match="no caption"):
        ShapeTextDataset(["a"], np.zeros((1, 4, 3), np.float32), [[]], ["x"])
    with pytest.raises(BadInputError, match="no shapes"):
        ShapeTextDataset.from_folder(tmp_path / "data", "test")


def test_memory_mapped_split_serves_the_same_batches(tmp_path):
    """A training set read through its cache folder (memory-mapped points, labels and stored groups) serves
    exactly the batches of the in-memory set: same points, groups, labels, captions, part-dropped views."""
    from daer.data.build import build_synth
    from daer.data.point_groups import GroupSpec
    from daer.models.config import load_config
    from daer.synth.part_drop import PartDrop

    cfg = load_config("tiny")
    build_synth(tmp_path / "s", 24, n_points=cfg.n_points, seed=2, workers=1)
    kw = {
        "labels": True,
        "group_config": cfg,
        "groups_fn": partial(precompute_groups, level_sizes=cfg.level_sizes, level_k=cfg.level_k),
        "augment": Augment(),
        "part_drop": PartDrop(0.5),
        "n_points": cfg.n_points,
    }
    plain = ShapeTextDataset.from_folder(tmp_path / "s", "train", **kw)
    mapped = ShapeTextDataset.from_folder(tmp_path / "s", "train", cache_dir=tmp_path / "cache", **kw)
    assert isinstance(mapped.points.base, np.memmap) or isinstance(mapped.points, np.memmap)
    stored = {p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.npy")}
    assert stored == {"points", "point_attrs", "point_attrs_present", GroupSpec.of(cfg).column}
    keys = [(e, i) for e in range(2) for i in range(len(plain))]
    a, b = plain.__getitems__(keys), mapped.__getitems__(keys)
    assert torch.equal(a.points, b.points) and torch.equal(a.point_attrs, b.point_attrs)
    assert a.point_attrs.dtype == torch.int32 and a.captions == b.captions
    assert all(torch.equal(x, y) for x, y in zip(a.groups.neighbors + a.groups.centers,
                                                b.groups.neighbors + b.groups.centers, strict=True))  # fmt: skip
