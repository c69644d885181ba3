"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

A pure function of the step, so resuming needs nothing but the step.
"""

from __future__ import annotations

import math

import torch


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    Args:
        step: index of the step about to be taken.
        base_lr: peak learning rate, reached at the end of warm-up.
        warmup_steps: steps of linear warm-up from ``base_lr / warmup_steps``.
        total_steps: length of the run; the cosine reaches ``min_ratio * base_lr`` at its end.
        min_ratio: floor as a fraction of ``base_lr``.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (groups may carry an ``lr_scale``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
