"""Wall-clock budget of a training run and the batched text-cache prefill."""

from __future__ import annotations

import json
import math

import pytest

from daer.models.model import create_model
from daer.models.text_cache import TextFeatureCache
from daer.train import checkpoint as ckpt
from daer.train.schedule import lr_at
from daer.train.train_config import TrainConfig
from daer.train.trainer import Trainer, train
from tests.data.test_dataset import write_tiny


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_tiny(folder)
    return folder


def config(data, out, **kw) -> TrainConfig:
    base = dict(config="tiny", steps=100_000, batch_size=8, ckpt_every=1000, log_every=1, warmup_steps=3)
    return TrainConfig(data=str(data), out=str(out), progress=False, dap=False, **{**base, **kw})


def log(run) -> list[dict]:
    return [e for e in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "lr" in e]


def test_budget_stops_the_run_on_time(data, tmp_path):
    budget = 2.0
    out = train(config(data, tmp_path / "run", time_budget_s=budget, lr=1e-3, min_lr_ratio=0.1))
    assert out["stopped_by"] == "time" and 5 < out["step"] < 100_000
    assert budget * 0.5 < out["train_seconds"] < budget + 1.0  # stops within about a step of the budget
    lrs = [e["lr"] for e in log(tmp_path / "run")]
    assert lrs[:3] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])  # warm-up by steps
    assert all(a >= b - 1e-12 for a, b in zip(lrs[3:], lrs[4:], strict=False))  # then a monotone decay
    assert lrs[-1] < 0.5e-3  # well into the cosine by the end
    _, meta = ckpt.read_trainer_state(ckpt.latest_checkpoint(tmp_path / "run"))
    assert meta["step"] == out["step"] and meta["train_seconds"] == pytest.approx(out["train_seconds"])


def test_budget_schedule_follows_the_clock_after_warm_up(data, tmp_path):
    trainer = Trainer(config(data, tmp_path / "run", time_budget_s=100.0, warmup_steps=4, min_lr_ratio=0.1, lr=1e-3))
    trainer.step, trainer.train_seconds = 2, 5.0
    assert trainer._lr() == pytest.approx(0.75e-3)  # warm-up: by steps, whatever the clock says
    trainer.step, trainer.train_seconds = 4, 20.0  # warm-up ends at 20 s: the cosine spans the 80 s left
    assert trainer._lr() == pytest.approx(1e-3)
    for seconds, progress in ((40.0, 0.25), (60.0, 0.5), (100.0, 1.0), (130.0, 1.0)):
        trainer.step, trainer.train_seconds = 5, seconds
        expected = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        assert trainer._lr() == pytest.approx(expected, rel=1e-4)
    assert trainer._out_of_time() and not trainer._out_of_time(-40.0)
    trainer.step, trainer.train_seconds = 99_000, 21.0  # step progress ahead of the clock: the steps rule
    assert trainer._lr() == pytest.approx(lr_at(99_000, 1e-3, 4, 100_000, 0.1), rel=1e-4)


def test_steps_cap_a_budget_run_and_a_resume_extends_the_budget(data, tmp_path):
    out = train(config(data, tmp_path / "run", steps=6, time_budget_s=600.0, lr=1e-3))
    assert out["stopped_by"] == "steps" and out["step"] == 6
    lrs = [e["lr"] for e in log(tmp_path / "run")]
    # Time progress is tiny against 600 s, so the step schedule rules (to within the virtual-step grid).
    assert lrs == pytest.approx([lr_at(s, 1e-3, 1, 6, 0.1) for s in range(6)], rel=1e-4)
    more = train(config(data, tmp_path / "run", steps=8, time_budget_s=900.0, lr=1e-3, resume=True))
    assert more["step"] == 8 and more["train_seconds"] > out["train_seconds"]


def test_prefill_puts_every_training_caption_in_the_cache(data, tmp_path):
    trainer = Trainer(config(data, tmp_path / "run", steps=2))
    assert trainer.prefill_seconds == 0.0  # the tiny encoder has no cache: nothing to do
    cache = TextFeatureCache(tmp_path / "text.sqlite")
    trainer.model = create_model("small", text_cache=cache)  # MiniLM with a cache of its own
    captions = [c for caps in trainer.dataset.captions for c in caps]
    assert trainer.prefill_text_cache(captions, batch=16) > 0
    assert len(cache) == len(set(captions))
    misses = cache.misses
    create_model("small", text_cache=cache).encode_text(captions[:40])
    assert cache.misses == misses  # every one found: nothing left to encode
