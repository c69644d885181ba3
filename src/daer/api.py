"""The Python API: ``daer.load(path)`` returns a trained model ready to encode, score and explain."""

from __future__ import annotations

import os

import torch

from daer.models.model import DaerModel, load_model


def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> DaerModel:
    """Load a checkpoint folder (or its ``model.safetensors``) as a :class:`DaerModel` in eval mode.

    The model offers ``encode_text(captions)``, ``encode_points(points)``, ``score(text, shapes)`` and
    ``explain(text, points)``. Damaged or mismatched files raise ``daer.errors.IntegrityError``.
    """
    return load_model(path, map_location=map_location)
