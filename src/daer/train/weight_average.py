"""Exponential moving average of the trained weights (Polyak averaging), the model a run ends with.

The average follows the live weights with decay ``min(decay, (1 + t) / (10 + t))`` at step t (the
warm-up of TensorFlow's ExponentialMovingAverage, so early steps are not frozen at the initial
weights). The optimizer keeps training the live weights; checkpoints carry both, so a resumed run
continues the same average; the final model of a run is the average. Not torch's ``AveragedModel``:
it deep-copies the whole module (the frozen MiniLM included) and keeps its state in a second model,
where this keeps only the trainable tensors, in the checkpoint's trainer state.
"""

from __future__ import annotations

import torch
from torch import nn

from daer.errors import IntegrityError

PREFIX = "weight_average."


class WeightAverage:
    """The moving average of a model's trainable parameters.

    Args:
        model: the model being trained (its parameters with ``requires_grad`` are averaged).
        decay: the average's decay per step, in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.shadow = {name: p.detach().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average towards the live weights after optimizer step ``step`` (0-based)."""
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for name, p in self.params.items():
            self.shadow[name].lerp_(p.detach(), 1.0 - d)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Overwrite the live weights with the average (at the end of training)."""
        for name, p in self.params.items():
            p.copy_(self.shadow[name])

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The average as named tensors for a checkpoint's trainer state."""
        return {PREFIX + name: t.detach().cpu().contiguous() for name, t in self.shadow.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        """Restore the average from a checkpoint's trainer-state tensors (IntegrityError where it is missing or
        does not fit); ``where`` names the checkpoint."""
        missing = sorted(name for name in self.shadow if PREFIX + name not in tensors)
        if missing:
            raise IntegrityError(f"{where} holds no weight average for {', '.join(missing[:3])} (trained without one?)")
        for name, t in self.shadow.items():
            saved = tensors[PREFIX + name]
            if saved.shape != t.shape:
                shapes = f"{tuple(saved.shape)}, not {tuple(t.shape)}"
                raise IntegrityError(f"{where}: weight average {name} has shape {shapes}")
            t.copy_(saved)
