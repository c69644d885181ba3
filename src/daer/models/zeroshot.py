"""Zero-shot classification of one point cloud: score it against a prompt per label.

The same scores choose the up axis of files that do not state one (:func:`classify_upright`, :func:`vote_up`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from daer.data.mesh_io import AUTO_UP, UP_ROTATIONS
from daer.errors import BadInputError
from daer.models.model import DaerModel

PROMPT = "a 3d model of a {}"


def label_prompt(label: str, prompt: str = PROMPT) -> str:
    """The caption a label is scored as (underscores read as spaces)."""
    return prompt.format(label.replace("_", " "))


def _check(points: np.ndarray, labels: list[str]) -> np.ndarray:
    if not labels or any(not label.strip() for label in labels) or len(set(labels)) != len(labels):
        raise BadInputError(f"labels must be distinct and non-empty, got {labels!r}")
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3 or not np.isfinite(pts).all():
        raise BadInputError(f"points must be a finite (N, 3) array, got shape {pts.shape}")
    return pts


@torch.no_grad()
def _scores(model: DaerModel, clouds: np.ndarray, texts: list[str]) -> torch.Tensor:
    """(T, B) final scores of ``texts`` against a batch of clouds (B, N, 3), the model in eval mode."""
    was_training = model.training
    model.eval()
    try:
        shapes = model.encode_points(torch.from_numpy(np.ascontiguousarray(clouds)))
        return model.score(model.encode_text(texts), shapes)
    finally:
        model.train(was_training)


def _turns(points: np.ndarray) -> np.ndarray:
    """(3, N, 3): ``points`` (in a file's own axes) turned by each of :data:`UP_ROTATIONS`, in its order."""
    return np.stack([points @ turn.T for turn in UP_ROTATIONS.values()])


@torch.no_grad()
def _ranked(model: DaerModel, scores: torch.Tensor, labels: list[str]) -> list[dict[str, float | str]]:
    probs = (model.logit_scale_value() * scores).softmax(0)
    order = scores.argsort(descending=True).tolist()
    return [{"label": labels[i], "score": float(scores[i]), "prob": float(probs[i])} for i in order]


def classify_points(
    model: DaerModel, points: np.ndarray, labels: list[str], prompt: str = PROMPT
) -> list[dict[str, float | str]]:
    """Rank ``labels`` for one shape, best first.

    Args:
        model: a loaded model.
        points: (N, 3) points of the shape, +z up (N = the model's ``n_points`` is what it was trained on).
        labels: distinct non-empty class names.
        prompt: a format string turning a label into a caption.

    Returns:
        ``[{"label", "score", "prob"}]`` sorted by score: the model's final score and the softmax over
        labels at the model's contrastive temperature.
    """
    pts = _check(points, labels)
    prompts = [label_prompt(label, prompt) for label in labels]
    return _ranked(model, _scores(model, pts[None], prompts)[:, 0], labels)


def classify_upright(
    model: DaerModel, points: np.ndarray, labels: list[str], prompt: str = PROMPT
) -> tuple[str, list[dict[str, float | str]]]:
    """Rank ``labels`` for one shape whose up axis is unknown: the file's x, y and z are each tried as up.

    Files in the wild disagree on "up" (Blender's OBJ export and ShapeNet are +y up, CAD and 3D-printing
    STL are +z up), and a model trained upright reads a lying chair badly. Each candidate turns the
    cloud with :data:`daer.data.mesh_io.UP_ROTATIONS`; the one whose best label scores highest wins.

    Args:
        model: a loaded model.
        points: (N, 3) points in the file's own axes (read with ``up="z"``: not turned).
        labels: distinct non-empty class names.
        prompt: a format string turning a label into a caption.

    Returns:
        (the chosen up axis, "x", "y" or "z"; the ranking of :func:`classify_points` for that turn).
    """
    pts = _check(points, labels)
    prompts = [label_prompt(label, prompt) for label in labels]
    scores = _scores(model, _turns(pts), prompts)  # (C, 3)
    best = int(scores.max(0).values.argmax())  # z first: a tie keeps the file as it is
    return list(UP_ROTATIONS)[best], _ranked(model, scores[:, best], labels)


def classify_read(
    model: DaerModel, points: np.ndarray, labels: list[str], up: str, prompt: str = PROMPT
) -> tuple[str, list[dict[str, float | str]]]:
    """(up axis, ranking) of a shape read with ``up``: :func:`classify_upright` for "auto" (points in the
    file's own axes), else :func:`classify_points` (points already turned +z up)."""
    if up == AUTO_UP:
        return classify_upright(model, points, labels, prompt)
    return up, classify_points(model, points, labels, prompt)


def vote_up(model: DaerModel, clouds: Sequence[np.ndarray], captions: Sequence[str]) -> dict[str, int]:
    """How many shapes read best with each axis as up (a data set's up axis, chosen by majority).

    Each cloud, in its file's own axes, is scored against its own caption under each turn of
    :data:`daer.data.mesh_io.UP_ROTATIONS`; its vote goes to the turn that scores highest.

    Returns:
        ``{"z": votes, "y": votes, "x": votes}``, in that order (a tie goes to the first).
    """
    if len(clouds) != len(captions):
        raise BadInputError(f"{len(clouds)} clouds but {len(captions)} captions")
    votes = dict.fromkeys(UP_ROTATIONS, 0)
    for cloud, caption in zip(clouds, captions, strict=True):
        scores = _scores(model, _turns(_check(cloud, [caption])), [caption])  # (1, 3)
        votes[list(UP_ROTATIONS)[int(scores[0].argmax())]] += 1
    return votes
