"""DAP on a real tiny model: calibration, logging, training hook and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from daer.data.build import build_synth
from daer.data.shards import DatasetWriter, iter_records
from daer.errors import BadInputError, DaerError
from daer.models.model import create_model
from daer.train.calibrate import calibrate_model, current_policy, validation_batch
from daer.train.dap_callback import DAP_LOG
from daer.train.train_config import TrainConfig
from daer.train.trainer import train


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    build_synth(out, 120, n_points=256, seed=0, workers=1, progress=False)
    return out


def test_calibration_applies_a_policy_no_worse_than_before(synth: Path) -> None:
    torch.manual_seed(0)
    model = create_model("tiny", n_points=256)
    batch = validation_batch(synth, size=32)
    assert batch.points.shape == (len(batch.captions), 256, 3)
    before = current_policy(model)
    calibration = calibrate_model(model, batch, simulations=40, seed=0)
    assert calibration.best_reward >= calibration.reward_before
    assert calibration.simulations <= 40 and calibration.seconds > 0
    after = current_policy(model)
    expected = calibration.policy if calibration.applied else before
    assert after.tau == pytest.approx(expected.tau, rel=1e-6)
    assert after.level_weight == pytest.approx(expected.level_weight, rel=1e-6)
    assert after.mix == pytest.approx(expected.mix, rel=1e-6)


def test_reward_counts_attribute_accuracy_like_a_direct_loop(synth: Path) -> None:
    """The cached attribute term equals scoring each set's captions with ``model.score`` one by one."""
    from daer.train.calibrate import build_cache
    from daer.train.dap import identity_assignment, reward_terms

    torch.manual_seed(0)
    model = create_model("tiny", n_points=256).eval()
    batch = validation_batch(synth, size=12)
    assert len(batch.attr_sets) > 0 and batch.attr_sets.shape[0] >= len(batch.captions)
    base = current_policy(model)
    terms = reward_terms(build_cache(model, batch, base), identity_assignment(3), base)
    right = []
    with torch.no_grad():
        for row in batch.attr_sets.tolist():
            idx = [i for i in row if i >= 0]
            shape = model.encode_points(batch.points[int(batch.attr_owner[idx[0]])][None])
            s = model.score(model.encode_text([batch.attr_captions[i] for i in idx]), shape)[:, 0]
            right.append(bool(s[0] > s[1:].max()))
    assert terms["attr_acc"] == pytest.approx(sum(right) / len(right), abs=1e-6)


def test_reward_zero_shot_uses_the_evaluation_prompts(synth: Path) -> None:
    """The cached zero-shot term equals classifying each shape by the mean ``model.score`` of each class's
    evaluation prompts (``zeroshot_prompts``, the evaluation's one home for them)."""
    from daer.eval.evaluate import zeroshot_prompts
    from daer.train.calibrate import build_cache
    from daer.train.dap import identity_assignment, reward_terms

    torch.manual_seed(0)
    model = create_model("tiny", n_points=256).eval()
    batch = validation_batch(synth, size=16)
    classes = sorted({r.category for r in iter_records(synth, split="val")})
    assert batch.class_prompts == zeroshot_prompts(classes, synth=True)
    assert all(len(p) > 1 for p in batch.class_prompts)  # an ensemble, as the evaluation uses
    base = current_policy(model)
    terms = reward_terms(build_cache(model, batch, base), identity_assignment(3), base)
    with torch.no_grad():
        shapes = model.encode_points(batch.points)
        per_class = torch.stack([model.score(model.encode_text(p), shapes).mean(0) for p in batch.class_prompts])
    expected = float((per_class.argmax(0) == batch.labels).float().mean())
    assert terms["zeroshot_top1"] == pytest.approx(expected)


def test_global_mode_checkpoint_is_refused(synth: Path) -> None:
    model = create_model("tiny", n_points=256, mode="global")
    with pytest.raises(DaerError, match="global"):
        calibrate_model(model, validation_batch(synth, size=8), simulations=5)


def test_empty_validation_split_is_refused(tmp_path: Path, synth: Path) -> None:
    out = tmp_path / "no_val"
    with DatasetWriter(out, source="test") as writer:
        for record in iter_records(synth, split="train"):
            writer.add(record)
    with pytest.raises(BadInputError, match="'val' split is empty"):
        validation_batch(out)


def test_validation_batch_draws_a_seeded_sample_of_the_split(synth: Path) -> None:
    """The drawn shapes are the seeded choice among all of the split's, in data set order (as a list of every
    record would give), and all of them when the split is smaller than the batch."""
    import numpy as np

    val = list(iter_records(synth, split="val"))
    want = sorted(np.random.default_rng(3).choice(len(val), size=5, replace=False))
    batch = validation_batch(synth, size=5, seed=3)
    assert torch.equal(batch.points, torch.from_numpy(np.stack([val[i].points for i in want])))
    assert len(validation_batch(synth, size=len(val) + 10).captions) == len(val)


def test_training_calibrates_every_k_steps_and_logs(tmp_path: Path, synth: Path) -> None:
    cfg = TrainConfig(
        data=str(synth), out=str(tmp_path / "run"), config="tiny", steps=4, batch_size=8,
        dap=True, dap_every=2, dap_sims=10, ckpt_every=4, progress=False,
    )  # fmt: skip
    train(cfg)
    lines = (tmp_path / "run" / DAP_LOG).read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["step"] for e in entries] == [2, 4]
    for e in entries:
        assert {"simulations", "best_reward", "reward_before", "policy", "seconds"} <= set(e)
    events = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert sum(e.get("event") == "dap" for e in events) == 2


def test_carried_over_dap_trees_resume_exactly(tmp_path: Path, synth: Path) -> None:
    """dap_reuse: the tree travels in the checkpoint; a run killed at step 5 and resumed from step 4
    calibrates at step 6 exactly as the straight run does (a tree not restored would search afresh)."""

    class Kill:
        def on_step_end(self, step: int, trainer: object) -> None:
            if step == 5:
                raise KeyboardInterrupt

    def run(out: Path, resume: bool = False, callbacks: list | None = None) -> list[dict]:
        cfg = TrainConfig(
            data=str(synth), out=str(out), config="tiny", steps=6, batch_size=8, dap=True, dap_every=2,
            dap_sims=12, dap_reuse=0.5, ckpt_every=2, progress=False, resume=resume,
        )  # fmt: skip
        train(cfg, callbacks=callbacks)
        entries = [json.loads(line) for line in (out / DAP_LOG).read_text().splitlines()]
        return [{k: v for k, v in e.items() if k != "seconds"} for e in entries]

    straight = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", callbacks=[Kill()])
    assert run(tmp_path / "b", resume=True) == straight
    assert [e["step"] for e in straight] == [2, 4, 6]
    assert straight[1]["policy_before"] == straight[0]["policy"]


def test_calibrate_cli_updates_the_checkpoint_and_refuses_damage(tmp_path: Path, synth: Path, capsys) -> None:
    from daer.cli import main
    from daer.models.model import load_model

    run = tmp_path / "run"
    create_model("tiny", n_points=256).save(run)
    assert main(["calibrate", "--ckpt", str(run), "--data", str(synth), "--sims", "20", "--batch-size", "16"]) == 0
    assert "DAP mcts: 20 simulations" in capsys.readouterr().out
    entry = json.loads((run / DAP_LOG).read_text().splitlines()[-1])
    assert load_model(run).haf.get_policy()["mix"] == pytest.approx(entry["policy"]["mix"], rel=1e-6)

    weights = run / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    before = weights.read_bytes()
    assert main(["calibrate", "--ckpt", str(run), "--data", str(synth), "--sims", "5"]) == 2
    assert "error:" in capsys.readouterr().err
    assert weights.read_bytes() == before


def test_attention_pictures_before_and_after_calibration(tmp_path: Path, synth: Path) -> None:
    from PIL import Image

    from daer.cli import main

    run = tmp_path / "run"
    create_model("tiny", n_points=256).save(run)
    out = tmp_path / "pics"
    args = ["viz", "attention", "--ckpt", str(run), "--data", str(synth), "--out", str(out)]
    assert main([*args, "--calibrate", "--sims", "10", "--batch-size", "16"]) == 0
    pictures = sorted(out.glob("*.png"))
    categories = {p.name.split("-")[0] for p in pictures}
    assert len(categories) == len(pictures) >= 10  # one per category present in the test split
    single = tmp_path / "single"
    assert main([*args[:-1], str(single)]) == 0
    first = sorted(single.glob("*.png"))[0]
    assert Image.open(pictures[0]).height > Image.open(first).height  # before and after are stacked
