"""The trainer on the tiny config: exact resume, atomic checkpoints, run records, callbacks, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from daer.cli import main as cli_main
from daer.errors import BadInputError, IntegrityError
from daer.models.config import MINILM_NAME, load_config
from daer.models.model import load_model
from daer.synth.splits import split_table
from daer.train import checkpoint as ckpt
from daer.train.run_folder import manifest_hash
from daer.train.schedule import lr_at, set_lr
from daer.train.train_config import TrainConfig
from daer.train.trainer import Trainer, train
from tests.data.test_dataset import write_tiny


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_tiny(folder)
    return folder


def config(data, out, **kw) -> TrainConfig:
    base = dict(config="tiny", steps=20, batch_size=8, ckpt_every=10, log_every=1, warmup_steps=3, progress=False)
    return TrainConfig(data=str(data), out=str(out), **{**base, **kw})


class Kill:
    """Simulates a kill: raises as soon as step ``at`` has been taken (before its checkpoint)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, step: int, trainer: Trainer) -> None:
        if step == self.at:
            raise KeyboardInterrupt


class Counter:
    """A stateful callback: counts steps; its state rides in the checkpoint."""

    name = "counter"

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_step_end(self, step: int, trainer: Trainer) -> None:
        self.seen.append(step)

    def state_dict(self) -> dict:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.seen = list(state["seen"])


def log_losses(run) -> dict[int, float]:
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return {e["step"]: e["loss"] for e in lines if "loss" in e}


def weights(run) -> dict[str, torch.Tensor]:
    return load_model(run).checkpoint_state()


def test_resume_after_kill_equals_straight_run(data, tmp_path):
    straight = train(config(data, tmp_path / "a"))
    assert straight["step"] == 20

    with pytest.raises(KeyboardInterrupt):
        train(config(data, tmp_path / "b"), callbacks=[Kill(at=13)])
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "b")] == [10]  # steps 11-13 are lost, 10 is whole
    counter = Counter()
    resumed = train(config(data, tmp_path / "b", resume=True), callbacks=[counter])
    assert resumed["steps_run"] == 10 and counter.seen == list(range(11, 21))

    a, b = log_losses(tmp_path / "a"), log_losses(tmp_path / "b")
    assert sorted(b) == list(range(1, 21))  # the lost steps' log lines were dropped and redone
    for step in range(1, 21):
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k
    _, meta = ckpt.read_trainer_state(ckpt.latest_checkpoint(tmp_path / "b"))
    assert meta["callbacks"]["counter"]["seen"] == list(range(11, 21))
    assert meta["data_position"] == {"epoch": 6, "batch": 2, "batches_per_epoch": 3}
    record = json.loads((tmp_path / "b" / "run.json").read_text())
    assert [r["step"] for r in record["resumes"]] == [10]


def test_failed_save_keeps_previous_checkpoint(data, tmp_path, monkeypatch):
    real = ckpt.write_trainer_state
    calls = {"n": 0}

    def flaky(folder, tensors, meta):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint dies after the model files are written
            (folder / "partial").write_bytes(b"x" * 100)
            raise OSError("disk full")
        real(folder, tensors, meta)

    monkeypatch.setattr(ckpt, "write_trainer_state", flaky)
    with pytest.raises(OSError, match="disk full"):
        train(config(data, tmp_path / "run", steps=30))
    root = tmp_path / "run" / "checkpoints"
    assert [p.name for p in root.iterdir()] == ["step_00000010"]  # no temporary folder left behind
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    assert load_model(latest) is not None
    tensors, meta = ckpt.read_trainer_state(latest)
    assert meta["step"] == 10 and any(k.startswith("optimizer.") for k in tensors)

    monkeypatch.setattr(ckpt, "write_trainer_state", real)
    out = train(config(data, tmp_path / "run", steps=30, resume=True))
    assert out["step"] == 30 and out["steps_run"] == 20


def test_run_folder_records_how_it_was_made(data, tmp_path):
    out = train(config(data, tmp_path / "run", steps=6, ckpt_every=4, mode="global", keep_checkpoints=1))
    run = tmp_path / "run"
    assert json.loads((run / "train_config.json").read_text())["mode"] == "global"
    info = json.loads((run / "run.json").read_text())
    assert info["data_manifest_sha256"] == manifest_hash(data)
    assert info["model_config"]["name"] == "tiny" and info["model_config"]["mode"] == "global"
    assert "sha" in info["git"] and info["world_size"] == 1
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [6]  # keep_checkpoints=1
    model = load_model(run)
    assert model.haf is None and model.config.mode == "global"
    assert out["loss_fine"] == 0.0 and out["loss"] == pytest.approx(out["loss_global"])
    assert out["shapes_per_s"] > 0


def test_resume_refuses_changed_data_or_settings(data, tmp_path):
    train(config(data, tmp_path / "run", steps=4, ckpt_every=2))
    with pytest.raises(BadInputError, match="already holds"):
        train(config(data, tmp_path / "run", steps=4))
    with pytest.raises(BadInputError, match="batch_size: 8 -> 4"):
        train(config(data, tmp_path / "run", steps=8, batch_size=4, resume=True))
    other = tmp_path / "other"
    write_tiny(other, n=24)
    with pytest.raises(IntegrityError, match="manifest hash"):
        train(config(other, tmp_path / "run", steps=8, resume=True))


def test_damaged_trainer_state_is_an_integrity_error(data, tmp_path):
    train(config(data, tmp_path / "run", steps=2, ckpt_every=2))
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    (latest / ckpt.STATE_TENSORS).write_bytes(b"not safetensors")
    with pytest.raises(IntegrityError, match="damaged"):
        train(config(data, tmp_path / "run", steps=4, ckpt_every=2, resume=True))


def test_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 1.0, 4, 20, 0.1) for s in range(20)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:], strict=False))
    assert lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 15 / 16)).item()))


def test_cli_trains_and_resumes_with_saved_settings(data, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--config", "tiny", "--steps", "4", "--batch-size", "8"]
    assert cli_main([*args, "--ckpt-every", "2", "--no-progress", "--mode", "haf", "--dap-every", "7"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 4 and summary["loss_fine"] > 0
    assert cli_main(["train", "--out", str(run), "--steps", "6", "--resume", "--no-progress"]) == 0
    saved = TrainConfig.load(run)
    assert saved.dap_every == 7 and saved.batch_size == 8 and saved.steps == 6
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 6
    assert cli_main(["train", "--out", str(tmp_path / "new")]) == 2
    assert "--data" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_sigkill_mid_run_leaves_a_loadable_checkpoint(data, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "daer", "train", "--data", str(data), "--out", str(run), "--config", "tiny",
           "--steps", "100000", "--batch-size", "8", "--ckpt-every", "3", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    try:
        deadline = time.time() + 90
        while len(ckpt.list_checkpoints(run)) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    steps = [s for s, _ in ckpt.list_checkpoints(run)]
    assert len(steps) >= 2, "training did not reach two checkpoints"
    latest = ckpt.latest_checkpoint(run)
    load_model(latest)
    _, meta = ckpt.read_trainer_state(latest)
    assert meta["step"] == steps[-1]
    resumed = train(TrainConfig.load(run, steps=steps[-1] + 2, resume=True))
    assert resumed["step"] == steps[-1] + 2 and resumed["steps_run"] == 2
    assert not list((run / "checkpoints").glob(".tmp-*"))  # a save cut by the kill is cleaned up


def test_dap_without_a_val_split_is_refused_before_any_step(tmp_path):
    """DAP calibrates on 'val': a set without one fails at set-up (not at step dap_every) and says the way out."""
    from daer.data.record import ShapeRecord
    from daer.data.shards import DatasetWriter

    folder = tmp_path / "trainonly"
    rng = np.random.default_rng(0)
    with DatasetWriter(folder, "test", shard_size=10) as w:
        for i in range(16):
            pts = rng.normal(size=(256, 3)).astype(np.float32)
            w.add(ShapeRecord(f"s{i}", "chair", {}, [f"a chair {i}"], "train", pts / np.abs(pts).max()))
    cfg = config(folder, tmp_path / "run", mode="haf", dap=True, dap_every=5)
    with pytest.raises(BadInputError, match="no 'val' shapes.*--no-dap"):
        train(cfg)
    assert not (tmp_path / "run" / "log.jsonl").exists()
    train(config(folder, tmp_path / "run2", mode="haf", dap=False, steps=2))  # the way out works


def test_part_drop_needs_labels_and_old_runs_resume_without_it(data, tmp_path):
    from daer.data.build import build_synth

    synth = tmp_path / "synth"
    build_synth(synth, 40, n_points=256, workers=1, shard_size=20, progress=False)
    trainer = Trainer(config(synth, tmp_path / "run", steps=2, part_drop=1.0))
    assert trainer.dataset.part_drop is not None and trainer.dataset.part_drop.p == 1.0
    summary = trainer.fit()
    assert summary["step"] == 2 and np.isfinite(summary["loss"])
    assert Trainer(config(data, tmp_path / "plain", steps=2)).dataset.part_drop is None  # no labels: off
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    for key in ("part_drop", "part_drop_absent"):
        del saved[key]  # a run started before the option existed
    (tmp_path / "run" / "train_config.json").write_text(json.dumps(saved))
    assert TrainConfig.load(tmp_path / "run").part_drop == 0.0

    within = Trainer(config(synth, tmp_path / "within", steps=1, part_drop=1.0, part_drop_optional=False,
                            part_drop_within=True))  # fmt: skip
    batch = within.dataset.__getitems__([(0, i) for i in range(len(within.dataset))])
    exclude = within._exclude(batch)
    assert batch.defining is not None and batch.defining.any() and not batch.defining.all()
    for i, (ci, di) in enumerate(zip(batch.categories, batch.defining.tolist(), strict=True)):
        for j, (cj, dj) in enumerate(zip(batch.categories, batch.defining.tolist(), strict=True)):
            assert bool(exclude[i, j]) == (ci != cj and (di or dj))
    assert trainer._exclude(batch) is None  # part_drop_within off
    generic = Trainer(config(synth, tmp_path / "generic", steps=1, part_drop=1.0, part_drop_generic=True))
    assert generic.dataset.part_drop is not None and generic.dataset.part_drop.generic

    swapping = Trainer(config(synth, tmp_path / "swap", steps=2, part_swap=1.0))
    test_keys = {key for key, split in split_table(0).items() if split == "test"}
    assert swapping.dataset.part_swap is not None and swapping.dataset.part_swap.forbidden == test_keys
    assert np.isfinite(swapping.fit()["loss"])
    assert Trainer(config(data, tmp_path / "plain_swap", steps=2, part_swap=1.0)).dataset.part_swap is None
    saved = json.loads((tmp_path / "swap" / "train_config.json").read_text())
    del saved["part_swap"]  # a run started before the option existed resumes without it
    (tmp_path / "swap" / "train_config.json").write_text(json.dumps(saved))
    assert TrainConfig.load(tmp_path / "swap").part_swap == 0.0
    with pytest.raises(BadInputError, match="part_swap"):
        config(data, tmp_path / "bad", part_swap=1.5)


def test_text_noise_reaches_the_encoder_and_is_validated(data, tmp_path):
    trainer = Trainer(config(data, tmp_path / "run", steps=1, text_noise=0.2))
    assert trainer.model.text.noise.std == 0.2
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    del saved["text_noise"]  # a run started before the option existed resumes without noise
    (tmp_path / "run" / "train_config.json").write_text(json.dumps(saved))
    assert TrainConfig.load(tmp_path / "run").text_noise == 0.0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(BadInputError, match="text_noise"):
            config(data, tmp_path / "bad", text_noise=bad)


def test_finetuned_text_layers_take_a_smaller_step(data, tmp_path):
    model_cfg = tmp_path / "small_ft.json"
    model_cfg.write_text(json.dumps(load_config("tiny", text_encoder=MINILM_NAME, text_finetune_layers=1).to_dict()))
    trainer = Trainer(config(data, tmp_path / "run", config=str(model_cfg), steps=1, text_lr_scale=0.05))
    tail = {id(p) for p in trainer.model.text.tail.parameters()}
    scaled = [g for g in trainer.optimizer.param_groups if "lr_scale" in g]
    assert len(tail) > 0 and len(scaled) == 1 and {id(p) for p in scaled[0]["params"]} == tail
    assert not any(id(p) in tail for g in trainer.optimizer.param_groups if g is not scaled[0] for p in g["params"])
    set_lr(trainer.optimizer, 1e-3)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [1e-3, 1e-3, pytest.approx(5e-5)]
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(BadInputError, match="text_lr_scale"):
            config(data, tmp_path / "bad", text_lr_scale=bad)


def test_stretch_reaches_the_augmentation_and_is_validated(data, tmp_path):
    trainer = Trainer(config(data, tmp_path / "run", steps=1, stretch=0.1))
    assert trainer.dataset.augment is not None and trainer.dataset.augment.stretch == 0.1
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    del saved["stretch"]  # a run started before the option existed resumes without it
    (tmp_path / "run" / "train_config.json").write_text(json.dumps(saved))
    assert TrainConfig.load(tmp_path / "run").stretch == 0.0
    for bad in (-0.1, 0.6, float("nan")):
        with pytest.raises(BadInputError, match="stretch"):
            config(data, tmp_path / "bad", stretch=bad)
