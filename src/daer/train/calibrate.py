"""DAP on a real model: cache a validation batch's scores, search the policy, apply it, log it."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from daer.errors import BadInputError, DaerError
from daer.train.dap import FACTORS, Calibration, Policy, ScoreCache, SearchMemory, search_policy


@dataclass
class ValidationBatch:
    """Held-out shapes with one caption each and a class index per shape."""

    points: torch.Tensor  # (B, N, 3)
    captions: list[str]
    labels: torch.Tensor  # (B,)
    class_prompts: list[list[str]]  # each class's zero-shot prompts (the evaluation's), in label order
    # Attribute swaps (Align3D-Synth shapes only): captions, the shape each belongs to, and sets of caption
    # indices (S, W), -1 padded, whose column 0 is a true caption and the rest the same caption with one
    # attribute at each other value.
    attr_captions: list[str] = field(default_factory=list)
    attr_owner: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # (P,)
    attr_sets: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.long))  # (S, W)


def validation_batch(
    data_dir: str | os.PathLike[str], size: int = 256, split: str = "val", seed: int = 0
) -> ValidationBatch:
    """Draw up to ``size`` shapes of a split (one caption each) and zero-shot prompts for its categories."""
    from daer.data.shards import iter_records, read_manifest
    from daer.eval.evaluate import zeroshot_prompts
    from daer.eval.synth_probes import is_synth

    count = int(read_manifest(data_dir).get("counts", {}).get(split, 0))
    if not count:
        raise BadInputError(f"{data_dir}: the {split!r} split is empty; DAP needs held-out shapes to calibrate on")
    rng = np.random.default_rng(seed)
    keep = set(range(count)) if count <= size else {int(i) for i in rng.choice(count, size=size, replace=False)}
    # streamed: only the drawn shapes are held (a split of a large data set does not fit in memory)
    records = [r for i, r in enumerate(iter_records(data_dir, split=split)) if i in keep]
    classes = sorted({r.category for r in records})
    points = torch.from_numpy(np.stack([r.points.astype(np.float32) for r in records]))
    captions = [r.captions[int(rng.integers(len(r.captions)))] for r in records]
    labels = torch.tensor([classes.index(r.category) for r in records])
    prompts = zeroshot_prompts(classes, is_synth(read_manifest(data_dir), classes))
    batch = ValidationBatch(points, captions, labels, prompts)
    _add_attribute_sets(batch, records)
    return batch


def _add_attribute_sets(batch: ValidationBatch, records: list) -> None:
    """Fill the batch's attribute-swap sets from each Align3D-Synth shape's first caption (others get none)."""
    from daer.eval.synth_probes import attribute_texts
    from daer.synth.taxonomy import TAXONOMY

    caps: list[str] = []
    owner: list[int] = []
    sets: list[list[int]] = []
    for b, r in enumerate(records):
        if r.category not in TAXONOMY or set(r.attributes) != set(TAXONOMY[r.category]):
            continue
        try:
            groups = attribute_texts(r.id, r.category, r.attributes, r.captions[0], 0, b)
        except BadInputError:
            continue
        base = len(caps)
        caps.extend(t for g in groups for t in g)
        owner.extend([b] * (len(caps) - base))
        at = base + 1
        for g in groups[1:]:
            sets.append([base, *range(at, at + len(g))])
            at += len(g)
    if sets:
        width = max(len(x) for x in sets)
        batch.attr_captions, batch.attr_owner = caps, torch.tensor(owner)
        batch.attr_sets = torch.tensor([x + [-1] * (width - len(x)) for x in sets])


def require_haf(model: torch.nn.Module) -> None:
    """Refuse a model without HAF (a ``global``-mode baseline) with a clear message."""
    if getattr(model.config, "mode", "haf") != "haf" or getattr(model, "haf", None) is None:
        raise DaerError("DAP calibrates the HAF attention policy; this model was trained in 'global' mode")


def current_policy(model: torch.nn.Module) -> Policy:
    """The model's HAF policy as a ``Policy``."""
    require_haf(model)
    p = model.haf.get_policy()
    return Policy(
        tau=[float(t) for t in p["tau"]], level_weight=[float(w) for w in p["level_weight"]], mix=float(p["mix"])
    )


def _class_mean(scores: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Mean over each class's prompt rows: (P, ...) scores, (P,) class of each row -> (C, ...)."""
    n = int(owner.max()) + 1
    total = scores.new_zeros((n, *scores.shape[1:])).index_add(0, owner.to(scores.device), scores)
    return total / torch.bincount(owner, minlength=n).to(scores).reshape(-1, *[1] * (scores.dim() - 1))


def apply_policy(model: torch.nn.Module, policy: Policy) -> None:
    """Write a policy into the model's HAF buffers."""
    model.haf.set_policy(tau=policy.tau, level_weight=policy.level_weight, mix=policy.mix)


@torch.no_grad()
def build_cache(model: torch.nn.Module, batch: ValidationBatch, base: Policy) -> ScoreCache:
    """Encode the batch once and compute level scores for every candidate temperature factor."""
    require_haf(model)
    was_training = model.training
    model.eval()
    try:
        text = model.encode_text(batch.captions)
        flat = [p for ps in batch.class_prompts for p in ps]
        sizes = torch.tensor([len(ps) for ps in batch.class_prompts])
        owner = torch.repeat_interleave(torch.arange(len(sizes)), sizes)  # (P,) class of each prompt
        prompts = model.encode_text(flat)
        shapes = model.encode_points(batch.points)
        tau = torch.tensor(base.tau)
        levels = torch.stack([model.haf.level_scores(text, shapes, tau=tau * f) for f in FACTORS])
        # A class scores the mean of its prompts' scores, as in the evaluation (fused scores are linear).
        class_levels = torch.stack(
            [_class_mean(model.haf.level_scores(prompts, shapes, tau=tau * f), owner) for f in FACTORS]
        )
        scale = float(model.logit_scale.exp().clamp(max=model.config.logit_scale_max))
        cache = ScoreCache(
            levels=levels.float(),
            global_=(text.global_ @ shapes.global_.T).float(),
            class_levels=class_levels.float(),
            class_global=_class_mean(prompts.global_ @ shapes.global_.T, owner).float(),
            labels=batch.labels,
            logit_scale=scale,
        )
        if batch.attr_captions:
            attr = model.encode_text(batch.attr_captions)
            own = shapes.select(batch.attr_owner)
            cache.attr_levels = torch.stack(
                [model.haf.paired_level_scores(attr, own, tau=tau * f) for f in FACTORS]
            ).float()  # (F, P, L)
            cache.attr_global = (attr.global_ * own.global_).sum(-1).float()  # (P,)
            cache.attr_sets = batch.attr_sets
        return cache
    finally:
        model.train(was_training)


def calibrate_model(
    model: torch.nn.Module,
    batch: ValidationBatch,
    simulations: int = 300,
    method: str = "mcts",
    alpha: float = 0.5,
    seed: int = 0,
    memory: SearchMemory | None = None,
) -> Calibration:
    """Search the HAF policy on a validation batch and apply the best one found (if it beats the current).

    With ``memory`` the MCTS tree of the previous calibration is carried over (:class:`SearchMemory`).
    The reported seconds include encoding the batch and caching its scores.
    """
    start = time.perf_counter()
    base = current_policy(model) if memory is None else memory.base(current_policy(model))
    cache = build_cache(model, batch, base)
    calibration, _ = search_policy(cache, base, simulations, method=method, alpha=alpha, seed=seed, memory=memory)
    calibration.seconds = time.perf_counter() - start
    if calibration.applied:
        apply_policy(model, calibration.policy)
    return calibration


def log_calibration(path: str | os.PathLike[str], calibration: Calibration, step: int | None = None) -> None:
    """Append one calibration as a JSON line (each line is complete: written and flushed at once)."""
    entry = {"step": step, **calibration.to_json()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def summary_line(calibration: Calibration) -> str:
    """One line for a person: what the search did and what it chose."""
    p = calibration.policy
    taus = ", ".join(f"{t:.3g}" for t in p.tau)
    weights = ", ".join(f"{w:.3g}" for w in p.level_weight)
    verdict = "applied" if calibration.applied else "kept the current policy"
    return (
        f"DAP {calibration.method}: {calibration.simulations} simulations in {calibration.seconds:.2f} s, "
        f"reward {calibration.reward_before:.4f} -> {calibration.best_reward:.4f} ({verdict}); "
        f"tau [{taus}], weights [{weights}], mix {p.mix:.3g}"
    )
