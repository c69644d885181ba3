"""Learning tests: training must move the metrics that matter, and HAF must bind words to parts.

Tiny configs, fixed seeds, seconds on CPU. Each asserts a margin over an untrained model or over
chance, so a loss that does not reach the weights, a broken readout or a random model fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from daer.data.build import build_synth
from daer.eval.evaluate import evaluate
from daer.models.model import create_model, load_model
from daer.models.point_encoder import PointFeatures
from daer.train.train_config import TrainConfig
from daer.train.trainer import train


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    build_synth(folder, 240, n_points=256, workers=1, progress=False)
    return folder


def test_training_beats_the_untrained_model(synth, tmp_path):
    torch.manual_seed(0)
    untrained = evaluate(create_model("tiny"), synth, "train", max_shapes=60, n_spec=0)
    cfg = TrainConfig(data=str(synth), out=str(tmp_path / "run"), config="tiny", steps=120, batch_size=32,
                      lr=3e-3, warmup_steps=10, log_every=20, ckpt_every=1000, progress=False, dap=False)  # fmt: skip
    train(cfg)
    trained = evaluate(load_model(tmp_path / "run"), synth, "train", max_shapes=60, n_spec=0)
    assert trained["zeroshot_top1"] > untrained["zeroshot_top1"] + 0.15, (untrained, trained)
    assert trained["t2s_r10"] > untrained["t2s_r10"] + 0.3, (untrained, trained)
    assert trained["attr_acc"] > untrained["attr_acc"] + 0.05, (untrained, trained)


def _part(kind: str, x: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Points of a small ball or an upright rod centred at (x, 0, 0)."""
    if kind == "ball":
        p = rng.normal(size=(n, 3))
        p = 0.25 * p / np.linalg.norm(p, axis=1, keepdims=True)
    else:
        p = np.stack([rng.uniform(-0.03, 0.03, n), rng.uniform(-0.03, 0.03, n), rng.uniform(-0.5, 0.5, n)], 1)
    return p + np.array([x, 0.0, 0.0])


def _toy(kinds: list[tuple[str, str]], rng: np.random.Generator) -> tuple[torch.Tensor, list[str], list[str]]:
    """Two-part shapes (left part, right part), their captions, and the same captions with the parts swapped."""
    pts = np.stack([np.concatenate([_part(a, -0.5, 128, rng), _part(b, 0.5, 128, rng)]) for a, b in kinds])
    caps = [f"a {a} on the left and a {b} on the right" for a, b in kinds]
    swapped = [f"a {b} on the left and a {a} on the right" for a, b in kinds]
    return torch.from_numpy(pts.astype(np.float32) / 0.75), caps, swapped


def test_haf_binds_words_to_parts():
    """Same parts, swapped places: only binding "ball" to the left points separates the two captions.

    Mixed shapes (a ball and a rod) are trained with their swapped caption as the negative; the fine
    HAF score alone must then pick the right caption for new shapes well above chance (0.5)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = create_model("tiny")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mixed = [("ball", "rod"), ("rod", "ball")]
    for _ in range(150):
        kinds = [mixed[int(i)] for i in rng.integers(2, size=16)]
        pts, caps, swapped = _toy(kinds, rng)
        shapes = model.encode_points(pts)
        pos = model.haf.paired_level_scores(model.encode_text(caps), shapes)  # (B, L)
        neg = model.haf.paired_level_scores(model.encode_text(swapped), shapes)
        scale = model.fine_logit_scale_value()
        loss = torch.nn.functional.softplus(scale * (neg - pos)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        kinds = [mixed[i % 2] for i in range(64)]
        pts, caps, swapped = _toy(kinds, np.random.default_rng(1))
        shapes: PointFeatures = model.encode_points(pts)
        pos = model.haf.fine(model.haf.paired_level_scores(model.encode_text(caps), shapes))
        neg = model.haf.fine(model.haf.paired_level_scores(model.encode_text(swapped), shapes))
    accuracy = float((pos > neg).float().mean())
    assert accuracy >= 0.9, accuracy
