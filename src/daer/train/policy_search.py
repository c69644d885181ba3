"""Search baselines at a fixed evaluation budget, beside MCTS: exhaustive, random and coordinate ascent.

They share the MCTS interface (option counts per depth, reward of a full assignment) so an ablation can
give every method the same number of reward evaluations.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from daer.train.mcts import Assignment, SearchResult, UCTSearch

Reward = Callable[[Assignment], float]


def exhaustive_search(sizes: Sequence[int], reward: Reward) -> SearchResult:
    """Evaluate every assignment (the reference on small spaces)."""
    values = {a: float(reward(a)) for a in itertools.product(*(range(n) for n in sizes))}
    best = max(values, key=values.__getitem__)
    return SearchResult(best, values[best], len(values), len(values), list(values.values()))


def random_search(sizes: Sequence[int], reward: Reward, budget: int, seed: int = 0) -> SearchResult:
    """Evaluate ``budget`` uniformly random assignments."""
    rng = np.random.default_rng(seed)
    cache: dict[Assignment, float] = {}
    trace = []
    for _ in range(budget):
        a = tuple(int(rng.integers(n)) for n in sizes)
        if a not in cache:
            cache[a] = float(reward(a))
        trace.append(cache[a])
    best = max(cache, key=cache.__getitem__)
    return SearchResult(best, cache[best], budget, len(cache), trace)


def coordinate_ascent(
    sizes: Sequence[int], reward: Reward, budget: int, start: Assignment | None = None
) -> SearchResult:
    """Improve one depth at a time, sweeping all depths until no change or the budget is spent."""
    current = tuple(start) if start is not None else tuple(0 for _ in sizes)
    cache: dict[Assignment, float] = {}
    trace: list[float] = []

    def value(a: Assignment) -> float:
        if a not in cache:
            cache[a] = float(reward(a))
        trace.append(cache[a])
        return cache[a]

    best_value = value(current)
    improved = True
    while improved and len(trace) < budget:
        improved = False
        for depth, n in enumerate(sizes):
            for option in range(n):
                if len(trace) >= budget:
                    break
                candidate = current[:depth] + (option,) + current[depth + 1 :]
                if candidate != current and value(candidate) > best_value:
                    current, best_value, improved = candidate, cache[candidate], True
    return SearchResult(current, best_value, len(trace), len(cache), trace)


def mcts_search(
    sizes: Sequence[int], reward: Reward, budget: int, seed: int = 0, exploration: float = 0.7
) -> SearchResult:
    """UCT MCTS with ``budget`` simulations."""
    return UCTSearch(sizes, reward, exploration=exploration, seed=seed).run(budget)
