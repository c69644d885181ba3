"""Zero-shot classification of one point cloud: score it against a prompt per label."""

from __future__ import annotations

import numpy as np
import torch

from daer.errors import BadInputError
from daer.models.model import DaerModel

PROMPT = "a 3d model of a {}"


def label_prompt(label: str, prompt: str = PROMPT) -> str:
    """The caption a label is scored as (underscores read as spaces)."""
    return prompt.format(label.replace("_", " "))


@torch.no_grad()
def classify_points(
    model: DaerModel, points: np.ndarray, labels: list[str], prompt: str = PROMPT
) -> list[dict[str, float | str]]:
    """Rank ``labels`` for one shape, best first.

    Args:
        model: a loaded model.
        points: (N, 3) points of the shape (N = the model's ``n_points`` is what it was trained on).
        labels: distinct non-empty class names.
        prompt: a format string turning a label into a caption.

    Returns:
        ``[{"label", "score", "prob"}]`` sorted by score: the model's final score and the softmax over
        labels at the model's contrastive temperature.
    """
    if not labels or any(not label.strip() for label in labels) or len(set(labels)) != len(labels):
        raise BadInputError(f"labels must be distinct and non-empty, got {labels!r}")
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3 or not np.isfinite(pts).all():
        raise BadInputError(f"points must be a finite (N, 3) array, got shape {pts.shape}")
    was_training = model.training
    model.eval()
    try:
        shapes = model.encode_points(torch.from_numpy(pts)[None])  # one shape
        text = model.encode_text([label_prompt(label, prompt) for label in labels])
        scores = model.score(text, shapes)[:, 0]  # (C,)
        probs = (model.logit_scale_value() * scores).softmax(0)
    finally:
        model.train(was_training)
    order = scores.argsort(descending=True).tolist()
    return [{"label": labels[i], "score": float(scores[i]), "prob": float(probs[i])} for i in order]
