"""Dynamic Attention Policy: calibrate the HAF attention policy by tree search with a hybrid reward.

The policy is one value per tree depth: the temperatures τ_1..τ_L, the level weights w_1..w_L and the
global/fine mix. Each action multiplies the current value by one of a few factors. A candidate policy
is scored on a held-out validation batch by

    reward = α · (relative drop in contrastive loss) + (1 − α) · mean(R@1 t→s, R@1 s→t, zero-shot top-1
             [, attribute accuracy]).

The attribute accuracy (a caption against the same caption with one attribute swapped, on Align3D-Synth
validation shapes) is the term that rewards a policy for telling "three legs" from "four legs"; without
it the search only sees category-level signals and flattened part attention scored as well.

Level scores depend on τ_l only through level l, so they are computed once per calibration for every
candidate factor (``ScoreCache``); a simulation then costs a weighted sum over cached tensors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from daer.train.mcts import Assignment, SearchResult
from daer.train.policy_search import coordinate_ascent, mcts_search, random_search

FACTORS: tuple[float, ...] = (0.5, 0.8, 1.0, 1.25, 2.0)
METHODS = ("mcts", "random", "coordinate")


@dataclass
class Policy:
    """The HAF attention policy: per-level temperature and weight, and the global/fine mix."""

    tau: list[float]
    level_weight: list[float]
    mix: float


@dataclass
class ScoreCache:
    """Scores of a validation batch, precomputed for every candidate temperature factor.

    Attributes:
        levels: (F, B, B, L) caption × shape level scores with every τ_l scaled by factor f.
        global_: (B, B) caption × shape global cosine; pair i is (caption i, shape i).
        class_levels: (F, C, B, L) class prompt × shape level scores.
        class_global: (C, B) class prompt × shape global cosine.
        labels: (B,) class index of each shape.
        logit_scale: the model's contrastive logit scale (exp of the learnt log scale).
        attr_levels: (F, P, L) level scores of attribute-swap captions with their own shape (or None).
        attr_global: (P,) their global cosines.
        attr_sets: (S, W) caption indices per set, -1 padded; column 0 holds the true caption.
    """

    levels: torch.Tensor
    global_: torch.Tensor
    class_levels: torch.Tensor
    class_global: torch.Tensor
    labels: torch.Tensor
    logit_scale: float
    attr_levels: torch.Tensor | None = None
    attr_global: torch.Tensor | None = None
    attr_sets: torch.Tensor | None = None


@dataclass
class Calibration:
    """One logged calibration."""

    method: str
    simulations: int
    evaluations: int
    reward_before: float
    best_reward: float
    policy_before: Policy
    policy: Policy
    applied: bool
    seconds: float

    def to_json(self) -> dict:
        """A JSON-ready dict (policies as nested dicts)."""
        return asdict(self)


def decode(base: Policy, assignment: Assignment, factors: Sequence[float] = FACTORS) -> Policy:
    """The policy reached from ``base`` by one factor per depth (τ's, then weights, then mix)."""
    n = len(base.tau)
    f = [factors[a] for a in assignment]
    return Policy(
        tau=[t * x for t, x in zip(base.tau, f[:n], strict=True)],
        level_weight=[w * x for w, x in zip(base.level_weight, f[n : 2 * n], strict=True)],
        mix=min(1.0, max(0.0, base.mix * f[2 * n])),
    )


def identity_assignment(n_levels: int, factors: Sequence[float] = FACTORS) -> Assignment:
    """The assignment that keeps the base policy (factor 1 at every depth)."""
    return tuple([list(factors).index(1.0)] * (2 * n_levels + 1))


def fused_scores(levels: torch.Tensor, global_: torch.Tensor, assignment: Assignment, base: Policy) -> torch.Tensor:
    """Fused scores (…, B) from cached level scores (F, …, B, L) under the decoded policy."""
    policy = decode(base, assignment)
    n = len(base.tau)
    fine = sum(policy.level_weight[i] * levels[assignment[i], ..., i] for i in range(n))
    return (1.0 - policy.mix) * global_ + policy.mix * fine


def reward_terms(cache: ScoreCache, assignment: Assignment, base: Policy) -> dict[str, float]:
    """Contrastive loss, R@1 both ways and zero-shot accuracy of a candidate policy."""
    scores = fused_scores(cache.levels, cache.global_, assignment, base)  # (B, B)
    target = torch.arange(scores.shape[0])
    logits = cache.logit_scale * scores
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    class_scores = fused_scores(cache.class_levels, cache.class_global, assignment, base)  # (C, B)
    out = {
        "loss": float(loss),
        "t2s_r1": float((scores.argmax(dim=1) == target).float().mean()),
        "s2t_r1": float((scores.argmax(dim=0) == target).float().mean()),
        "zeroshot_top1": float((class_scores.argmax(dim=0) == cache.labels).float().mean()),
    }
    if cache.attr_levels is not None and cache.attr_global is not None and cache.attr_sets is not None:
        s = fused_scores(cache.attr_levels, cache.attr_global, assignment, base)  # (P,)
        sets = cache.attr_sets
        table = s[sets.clamp_min(0)].masked_fill(sets < 0, float("-inf"))  # (S, W)
        out["attr_acc"] = float((table[:, 0] > table[:, 1:].amax(1)).float().mean())
    return out


def make_reward(cache: ScoreCache, base: Policy, alpha: float = 0.5) -> Callable[[Assignment], float]:
    """The hybrid reward of an assignment, relative to the loss of the base policy."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    base_loss = reward_terms(cache, identity_assignment(len(base.tau)), base)["loss"]

    def reward(assignment: Assignment) -> float:
        t = reward_terms(cache, assignment, base)
        drop = (base_loss - t["loss"]) / max(base_loss, 1e-12)
        accuracies = [t[k] for k in ("t2s_r1", "s2t_r1", "zeroshot_top1", "attr_acc") if k in t]
        return alpha * drop + (1.0 - alpha) * sum(accuracies) / len(accuracies)

    return reward


def search_policy(
    cache: ScoreCache,
    base: Policy,
    simulations: int,
    method: str = "mcts",
    alpha: float = 0.5,
    seed: int = 0,
) -> tuple[Calibration, SearchResult]:
    """Search the policy space around ``base`` with ``simulations`` reward evaluations."""
    start = time.perf_counter()
    reward = make_reward(cache, base, alpha)
    n = len(base.tau)
    sizes = [len(FACTORS)] * (2 * n + 1)
    identity = identity_assignment(n)
    if method == "mcts":
        result = mcts_search(sizes, reward, simulations, seed=seed)
    elif method == "random":
        result = random_search(sizes, reward, simulations, seed=seed)
    elif method == "coordinate":
        result = coordinate_ascent(sizes, reward, simulations, start=identity)
    else:
        raise ValueError(f"unknown search method {method!r}; choose from {', '.join(METHODS)}")
    before = reward(identity)
    applied = result.best_reward > before
    chosen = decode(base, result.best) if applied else base
    calibration = Calibration(
        method=method,
        simulations=result.simulations,
        evaluations=result.evaluations,
        reward_before=before,
        best_reward=max(result.best_reward, before),
        policy_before=base,
        policy=chosen,
        applied=applied,
        seconds=time.perf_counter() - start,
    )
    return calibration, result
