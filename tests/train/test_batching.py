"""Category-grouped batches: chunk structure, determinism, rank split and resume."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest

from daer.errors import BadInputError
from daer.train.batching import CategoryBatchSampler

CATS = ["chair"] * 37 + ["lamp"] * 20 + ["mug"] * 25 + ["tree"] * 9


def test_every_batch_is_k_single_category_chunks_without_repeats_in_an_epoch():
    s = CategoryBatchSampler(CATS, batch_size=12, k=3, seed=1)
    assert s.chunk == 4 and s.batches_per_epoch == (9 + 5 + 6 + 2) // 3
    seen: list[int] = []
    for step in range(s.batches_per_epoch):
        keys = s.batch(step)
        assert len(keys) == 12 and {e for e, _ in keys} == {0}
        rows = [i for _, i in keys]
        for c in range(3):
            assert len({CATS[i] for i in rows[4 * c : 4 * c + 4]}) == 1  # one category per chunk
        seen += rows
    assert len(seen) == len(set(seen))  # no shape twice in an epoch
    assert s.batch(s.batches_per_epoch)[0][0] == 1  # the next epoch
    assert s.batch(s.batches_per_epoch) != s.batch(0)


def test_same_seed_same_batches_and_ranks_split_the_global_batch():
    one = CategoryBatchSampler(CATS, batch_size=8, k=2, seed=3)
    again = CategoryBatchSampler(CATS, batch_size=8, k=2, seed=3)
    ranks = [CategoryBatchSampler(CATS, batch_size=4, k=2, seed=3, rank=r, world=2) for r in range(2)]
    for step in range(0, 30, 7):
        assert one.batch(step) == again.batch(step) == ranks[0].batch(step) + ranks[1].batch(step)
    assert CategoryBatchSampler(CATS, batch_size=8, k=2, seed=4).batch(0) != one.batch(0)


def test_resume_at_a_step_yields_what_a_straight_run_yields():
    straight = list(islice(iter(CategoryBatchSampler(CATS, 6, 2, seed=0)), 25))
    resumed = list(islice(iter(CategoryBatchSampler(CATS, 6, 2, seed=0, start_step=11)), 14))
    assert resumed == straight[11:]


def test_categories_are_balanced_by_their_size():
    s = CategoryBatchSampler(CATS, batch_size=4, k=1, seed=0)
    counts = Counter(CATS[i] for step in range(s.batches_per_epoch) for _, i in s.batch(step))
    assert counts == {"chair": 36, "lamp": 20, "mug": 24, "tree": 8}  # every full chunk of each category


def test_bad_settings_are_refused():
    with pytest.raises(BadInputError, match="multiple"):
        CategoryBatchSampler(CATS, batch_size=10, k=3)
    with pytest.raises(BadInputError, match="no category"):
        CategoryBatchSampler(CATS, batch_size=80, k=2)
    with pytest.raises(BadInputError, match="rank"):
        CategoryBatchSampler(CATS, batch_size=8, k=2, rank=2, world=2)


def test_trainer_with_category_batches_resumes_exactly(tmp_path):
    import torch

    from daer.models.model import load_model
    from daer.train.train_config import TrainConfig
    from daer.train.trainer import train
    from tests.data.test_dataset import write_tiny

    write_tiny(tmp_path / "data")

    def cfg(out, steps, **kw):
        base = dict(config="tiny", batch_size=8, batch_categories=2, ckpt_every=3, warmup_steps=1, progress=False)
        return TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / out), steps=steps, **base, **kw)

    class Kill:
        def on_step_end(self, step, trainer):
            if step == 4:  # after the step-3 checkpoint
                raise KeyboardInterrupt

    train(cfg("a", 6))
    with pytest.raises(KeyboardInterrupt):
        train(cfg("b", 6), callbacks=[Kill()])
    assert train(cfg("b", 6, resume=True))["steps_run"] == 3
    a, b = load_model(tmp_path / "a").checkpoint_state(), load_model(tmp_path / "b").checkpoint_state()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
