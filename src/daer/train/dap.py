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

from daer.train.mcts import Assignment, SearchResult, UCTSearch
from daer.train.policy_search import coordinate_ascent, mcts_search, random_search

FACTORS: tuple[float, ...] = (0.5, 0.8, 1.0, 1.25, 2.0)
METHODS = ("mcts", "random", "coordinate", "gradient")


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


@dataclass
class SearchMemory:
    """MCTS statistics carried from one calibration to the next (``search_policy(..., memory=...)``).

    The space is anchored at the policy of the first calibration, so an assignment names the same policy
    in every calibration and what the tree learnt about it stays meaningful (with a space relative to the
    current policy, "τ_2 × 1.25" would mean another τ after every applied change). Each calibration
    scales visits and reward totals by ``decay`` (the model has trained since) and re-evaluates what it
    visits. The policy can then move at most by the factors' range around the anchor.
    """

    decay: float = 0.5
    anchor: Policy | None = None
    current: Assignment | None = None  # the assignment whose policy the model holds
    tree: dict | None = None  # UCTSearch.state_dict() of the last calibration

    def base(self, policy: Policy) -> Policy:
        """The anchor for a model holding ``policy``; a policy this memory did not choose starts it afresh."""
        if self.anchor is None or self.current is None or not _close(decode(self.anchor, self.current), policy):
            self.anchor, self.current, self.tree = policy, identity_assignment(len(policy.tau)), None
        return self.anchor

    def state_dict(self) -> dict:
        """JSON-ready state (checkpointed with the trainer)."""
        anchor = asdict(self.anchor) if self.anchor is not None else None
        current = list(self.current) if self.current is not None else None
        return {"decay": self.decay, "anchor": anchor, "current": current, "tree": self.tree}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.anchor = Policy(**state["anchor"]) if state.get("anchor") else None
        self.current = tuple(int(a) for a in state["current"]) if state.get("current") else None
        self.tree = state.get("tree")


def _close(a: Policy, b: Policy, rel: float = 1e-5) -> bool:
    """Equal up to float32 rounding (a policy makes a round trip through the model's buffers)."""
    x = [*a.tau, *a.level_weight, a.mix]
    y = [*b.tau, *b.level_weight, b.mix]
    return len(x) == len(y) and all(abs(u - v) <= rel * max(abs(u), abs(v), 1e-6) for u, v in zip(x, y, strict=True))


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
    return _fuse(levels, global_, assignment[: len(base.tau)], decode(base, assignment))


def _fuse(levels: torch.Tensor, global_: torch.Tensor, tau_index: Sequence[int], policy: Policy) -> torch.Tensor:
    """Fused scores with level l read at its temperature factor ``tau_index[l]`` of the cache."""
    chosen = torch.stack([levels[f, ..., i] for i, f in enumerate(tau_index)], dim=-1)  # (..., L)
    return _mix(chosen, global_, policy)


def _mix(levels: torch.Tensor, global_: torch.Tensor, policy: Policy | _Soft) -> torch.Tensor:
    """(1 − mix)·global + mix·Σ_l w_l·levels[..., l]; the policy's numbers may be tensors (gradient fit)."""
    fine = sum(policy.level_weight[i] * levels[..., i] for i in range(levels.shape[-1]))
    return (1.0 - policy.mix) * global_ + policy.mix * fine


def reward_terms(cache: ScoreCache, assignment: Assignment, base: Policy) -> dict[str, float]:
    """Contrastive loss, R@1 both ways and zero-shot accuracy of a candidate policy."""
    return _terms(cache, assignment[: len(base.tau)], decode(base, assignment))


def _terms(cache: ScoreCache, tau_index: Sequence[int], policy: Policy) -> dict[str, float]:
    scores = _fuse(cache.levels, cache.global_, tau_index, policy)  # (B, B)
    target = torch.arange(scores.shape[0])
    logits = cache.logit_scale * scores
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    class_scores = _fuse(cache.class_levels, cache.class_global, tau_index, policy)  # (C, B)
    out = {
        "loss": float(loss),
        "t2s_r1": float((scores.argmax(dim=1) == target).float().mean()),
        "s2t_r1": float((scores.argmax(dim=0) == target).float().mean()),
        "zeroshot_top1": float((class_scores.argmax(dim=0) == cache.labels).float().mean()),
    }
    if cache.attr_levels is not None and cache.attr_global is not None and cache.attr_sets is not None:
        s = _fuse(cache.attr_levels, cache.attr_global, tau_index, policy)  # (P,)
        out["attr_acc"] = float((_attr_table(s, cache.attr_sets).argmax(1) == 0).float().mean())
    return out


def _attr_table(scores: torch.Tensor, sets: torch.Tensor) -> torch.Tensor:
    """(S, W) scores of each attribute set's captions (true one in column 0), -inf where padded."""
    return scores[sets.clamp_min(0)].masked_fill(sets < 0, float("-inf"))


def make_reward(cache: ScoreCache, base: Policy, alpha: float = 0.5) -> Callable[[Assignment], float]:
    """The hybrid reward of an assignment, relative to the loss of the base policy."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    base_loss = reward_terms(cache, identity_assignment(len(base.tau)), base)["loss"]

    def reward(assignment: Assignment) -> float:
        return _combine(reward_terms(cache, assignment, base), base_loss, alpha)

    return reward


def _combine(t: dict[str, float], base_loss: float, alpha: float) -> float:
    drop = (base_loss - t["loss"]) / max(base_loss, 1e-12)
    accuracies = [t[k] for k in ("t2s_r1", "s2t_r1", "zeroshot_top1", "attr_acc") if k in t]
    return alpha * drop + (1.0 - alpha) * sum(accuracies) / len(accuracies)


@dataclass
class _Soft:
    """A relaxed policy of tensors: level weights and mix (the temperature is a soft choice among factors)."""

    level_weight: torch.Tensor
    mix: torch.Tensor


def gradient_fit(
    cache: ScoreCache, base: Policy, steps: int, lr: float = 0.05
) -> tuple[list[int], Policy, list[float]]:
    """The policy fitted by gradient descent on the validation batch: the baseline the tree search must beat.

    Differentiable surrogates of the reward's terms (the contrastive loss, the zero-shot cross-entropy and,
    where the cache has them, the cross-entropy of each attribute set) are minimised over log level weights,
    the mix's logit and, per level, softmax weights over the cached temperature factors (a relaxation; the
    largest weight is taken at the end). Weights and mix are continuous, so the result can lie between the
    tree's grid points. Returns (τ factor index per level, the policy, the surrogate loss per step).
    """
    n = len(base.tau)
    one = FACTORS.index(1.0)
    tau_logits = torch.zeros(n, len(FACTORS))
    tau_logits[:, one] = 2.0  # starts close to the base temperatures
    log_w = torch.tensor(base.level_weight, dtype=torch.float32).clamp_min(1e-4).log()
    mix0 = min(max(base.mix, 1e-3), 1 - 1e-3)
    mix_logit = torch.tensor(float(torch.logit(torch.tensor(mix0))))
    params = [tau_logits.requires_grad_(), log_w.requires_grad_(), mix_logit.requires_grad_()]
    opt = torch.optim.Adam(params, lr=lr)
    trace = []

    def relaxed(levels: torch.Tensor) -> torch.Tensor:  # (F, ..., L) -> (..., L): soft τ choice per level
        return torch.einsum("f...l,lf->...l", levels, tau_logits.softmax(-1))

    scale = cache.logit_scale
    for _ in range(steps):
        soft = _Soft(level_weight=log_w.exp(), mix=torch.sigmoid(mix_logit))
        scores = _mix(relaxed(cache.levels), cache.global_, soft)
        target = torch.arange(scores.shape[0])
        loss = 0.5 * (F.cross_entropy(scale * scores, target) + F.cross_entropy(scale * scores.T, target))
        classes = _mix(relaxed(cache.class_levels), cache.class_global, soft)  # (C, B)
        loss = loss + F.cross_entropy(scale * classes.T, cache.labels)
        if cache.attr_levels is not None and cache.attr_global is not None and cache.attr_sets is not None:
            s = _mix(relaxed(cache.attr_levels), cache.attr_global, soft)
            table = _attr_table(scale * s, cache.attr_sets)
            loss = loss + F.cross_entropy(table, torch.zeros(len(table), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
        trace.append(float(loss.detach()))
    tau_index = tau_logits.argmax(-1).tolist()
    policy = Policy(
        tau=[t * FACTORS[i] for t, i in zip(base.tau, tau_index, strict=True)],
        level_weight=log_w.detach().exp().tolist(),
        mix=float(torch.sigmoid(mix_logit.detach())),
    )
    return tau_index, policy, trace


def search_policy(
    cache: ScoreCache,
    base: Policy,
    simulations: int,
    method: str = "mcts",
    alpha: float = 0.5,
    seed: int = 0,
    memory: SearchMemory | None = None,
) -> tuple[Calibration, SearchResult]:
    """Search the policy space around ``base`` with ``simulations`` reward evaluations.

    With ``memory`` (MCTS only), ``base`` must be ``memory.base(policy held by the model)`` and the cache
    built for it: the tree of the previous calibration is carried over, and the memory records the result.
    """
    start = time.perf_counter()
    reward = make_reward(cache, base, alpha)
    n = len(base.tau)
    sizes = [len(FACTORS)] * (2 * n + 1)
    identity = identity_assignment(n)
    current = identity  # the assignment whose policy the model holds
    if memory is not None:
        if method != "mcts":
            raise ValueError(f"statistics are carried over by the mcts method only, not {method!r}")
        if memory.anchor is not base or memory.current is None:
            raise ValueError("search_policy(memory=...) needs base=memory.base(policy held by the model)")
        current = memory.current
        tree = UCTSearch(sizes, reward, seed=seed)
        if memory.tree is not None:
            tree.load_state_dict(memory.tree)
            tree.carry_over(reward, memory.decay)
        result = tree.run(simulations)
        memory.tree = tree.state_dict()
    elif method == "gradient":
        return _gradient_calibration(cache, base, simulations, alpha, start)
    elif method == "mcts":
        result = mcts_search(sizes, reward, simulations, seed=seed)
    elif method == "random":
        result = random_search(sizes, reward, simulations, seed=seed)
    elif method == "coordinate":
        result = coordinate_ascent(sizes, reward, simulations, start=identity)
    else:
        raise ValueError(f"unknown search method {method!r}; choose from {', '.join(METHODS)}")
    before = reward(current)
    applied = result.best_reward > before
    chosen = result.best if applied else current
    if memory is not None:
        memory.current = chosen
    calibration = Calibration(
        method=method,
        simulations=result.simulations,
        evaluations=result.evaluations,
        reward_before=before,
        best_reward=max(result.best_reward, before),
        policy_before=decode(base, current),
        policy=decode(base, chosen),
        applied=applied,
        seconds=time.perf_counter() - start,
    )
    return calibration, result


def _gradient_calibration(
    cache: ScoreCache, base: Policy, steps: int, alpha: float, start: float
) -> tuple[Calibration, SearchResult]:
    """``search_policy``'s ``gradient`` method: one reward evaluation at the end, ``steps`` gradient steps."""
    n = len(base.tau)
    base_terms = reward_terms(cache, identity_assignment(n), base)
    base_loss = base_terms["loss"]
    before = _combine(base_terms, base_loss, alpha)
    tau_index, policy, trace = gradient_fit(cache, base, steps)
    after = _combine(_terms(cache, tau_index, policy), base_loss, alpha)
    applied = after > before
    calibration = Calibration(
        method="gradient",
        simulations=steps,
        evaluations=2,
        reward_before=before,
        best_reward=max(after, before),
        policy_before=base,
        policy=policy if applied else base,
        applied=applied,
        seconds=time.perf_counter() - start,
    )
    return calibration, SearchResult(identity_assignment(n), max(after, before), steps, 2, trace)
