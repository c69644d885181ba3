"""The weight average against its formula; a run ends with it and resumes it exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from daer.cli import main as cli_main
from daer.errors import BadInputError, IntegrityError
from daer.train import checkpoint as ckpt
from daer.train.train_config import TrainConfig
from daer.train.trainer import train
from daer.train.weight_average import WeightAverage
from tests.train.test_trainer import Kill, config, data, weights  # noqa: F401  (data: the fixture)


def test_average_follows_the_formula_and_skips_frozen_parameters():
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    avg = WeightAverage(model, decay=0.9)
    expected = model.weight.detach().clone()
    for step in range(30):
        with torch.no_grad():
            model.weight.add_(torch.randn(2, 3))
            model.bias.add_(1.0)
        avg.update(step)
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * model.weight.detach()
    assert set(avg.shadow) == {"weight"}
    torch.testing.assert_close(avg.shadow["weight"], expected)
    assert not torch.allclose(avg.shadow["weight"], model.weight)
    bias = model.bias.detach().clone()
    avg.copy_to_model()
    torch.testing.assert_close(model.weight.detach(), expected)
    torch.testing.assert_close(model.bias.detach(), bias)  # a frozen parameter is left alone
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_run_ends_with_the_average_and_resumes_it_exactly(data, tmp_path):  # noqa: F811
    straight = train(config(data, tmp_path / "a", weight_average=0.8))
    assert straight["step"] == 20
    live = weights(ckpt.latest_checkpoint(tmp_path / "a"))  # the step-20 checkpoint: the live weights
    final = weights(tmp_path / "a")
    assert any(not torch.allclose(live[k], final[k]) for k in final)  # the run's model is not the live one

    with pytest.raises(KeyboardInterrupt):
        train(config(data, tmp_path / "b", weight_average=0.8), callbacks=[Kill(at=13)])
    train(config(data, tmp_path / "b", weight_average=0.8, resume=True))
    resumed = weights(tmp_path / "b")
    for k in final:
        torch.testing.assert_close(resumed[k], final[k], atol=1e-5, rtol=0), k

    train(config(data, tmp_path / "c", steps=4, ckpt_every=2, weight_average=0.0))  # trained without an average
    with pytest.raises(BadInputError, match="weight_average: 0.0 -> 0.8"):
        train(config(data, tmp_path / "c", steps=6, ckpt_every=2, weight_average=0.8, resume=True))
    with pytest.raises(BadInputError, match="weight_average"):
        config(data, tmp_path / "d", weight_average=1.0)


def test_checkpoint_without_its_average_is_an_integrity_error(data, tmp_path):  # noqa: F811
    train(config(data, tmp_path / "run", steps=2, ckpt_every=2, weight_average=0.8))
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    tensors, meta = ckpt.read_trainer_state(latest)
    kept = {k: v for k, v in tensors.items() if not k.startswith("weight_average.")}
    assert len(kept) < len(tensors)
    ckpt.write_trainer_state(latest, kept, meta)
    with pytest.raises(IntegrityError, match="no weight average"):
        train(config(data, tmp_path / "run", steps=4, ckpt_every=2, weight_average=0.8, resume=True))


def test_cli_sets_the_average_and_hard_fine_negatives(data, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--config", "tiny", "--steps", "2", "--batch-size", "8"]
    assert cli_main([*args, "--no-progress", "--no-dap", "--weight-average", "0.9", "--fine-negatives", "3"]) == 0
    saved = TrainConfig.load(run)
    assert saved.weight_average == 0.9 and saved.fine_negatives == 3
