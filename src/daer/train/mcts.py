"""Generic UCT Monte Carlo tree search over a fixed-depth discrete decision space.

A *space* is a sequence of option lists: depth ``d`` of the tree chooses one of ``space[d]``. A full
assignment (one option index per depth) is scored by a reward function. Each simulation selects a path
with UCT, expands one untried child, completes the assignment with a random roll-out and backs the
reward up the path. Rewards of full assignments are memoised; subtrees whose every leaf has been
evaluated are marked exhausted and skipped by selection, so simulations keep finding new assignments.

A tree can be carried over to a new, related reward (:meth:`UCTSearch.carry_over`, e.g. the same
policy space scored by a model a few hundred training steps later): visit counts and reward totals are
scaled down, memoised rewards are forgotten, the best few old assignments are evaluated again first, and
the next simulations start from where the old ones concentrated instead of from a uniform prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Assignment = tuple[int, ...]


@dataclass
class _Node:
    depth: int
    untried: list[int]
    children: dict[int, _Node] = field(default_factory=dict)
    visits: float = 0.0  # fractional once a carried-over tree has been decayed
    total: float = 0.0
    exhausted: bool = False


@dataclass
class SearchResult:
    """Outcome of a search: the best assignment seen, its reward, and the trace of rewards."""

    best: Assignment
    best_reward: float
    simulations: int
    evaluations: int
    rewards: list[float]


class UCTSearch:
    """UCT search with a seeded random source.

    Args:
        sizes: number of options at each depth.
        reward: maps a full assignment (option index per depth) to a float, higher is better.
        exploration: UCT constant c on rewards min-max normalised to [0, 1].
        seed: seed of the random source (expansion order and roll-outs).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        reward: Callable[[Assignment], float],
        exploration: float = 0.7,
        seed: int = 0,
    ) -> None:
        if not sizes or min(sizes) < 1:
            raise ValueError(f"every depth needs at least one option, got sizes {list(sizes)}")
        self.sizes = list(sizes)
        self.reward = reward
        self.exploration = exploration
        self.rng = np.random.default_rng(seed)
        self.cache: dict[Assignment, float] = {}
        self.root = self._new_node(0)
        self._lo, self._hi = math.inf, -math.inf
        self._replay: list[Assignment] = []  # assignments to evaluate before selecting (see carry_over)

    def carry_over(self, reward: Callable[[Assignment], float], decay: float, replay: int = 4) -> None:
        """Keep the tree's statistics, scaled by ``decay`` in (0, 1], for a new ``reward``.

        Memoised rewards and the exhausted marks are dropped (every assignment may be worth a new
        evaluation under the new reward); the ``replay`` best old assignments are the next simulations
        (re-evaluated along their full paths); the bounds that normalise rewards for UCT start from the
        old reward's and widen with the new values.
        """
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.reward = reward
        self._replay = sorted(self.cache, key=self.cache.__getitem__, reverse=True)[:replay]
        self.cache.clear()
        stack = [self.root]
        while stack:
            node = stack.pop()
            node.visits *= decay
            node.total *= decay
            node.exhausted = False
            stack.extend(node.children.values())

    def state_dict(self) -> dict[str, Any]:
        """The search as JSON-ready data: the tree, memoised rewards, replay list, bounds and random source."""

        def dump(node: _Node) -> dict[str, Any]:
            return {
                "depth": node.depth,
                "untried": list(node.untried),
                "visits": node.visits,
                "total": node.total,
                "children": [[a, dump(c)] for a, c in node.children.items()],
            }

        bounds = [self._lo, self._hi] if self._hi >= self._lo else None
        return {
            "sizes": list(self.sizes),
            "root": dump(self.root),
            "rng": self.rng.bit_generator.state,
            "bounds": bounds,
            "cache": [[list(a), v] for a, v in self.cache.items()],
            "replay": [list(a) for a in self._replay],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s search (the tree, memoised rewards, random source)."""
        if list(state["sizes"]) != self.sizes:
            raise ValueError(f"a saved tree over sizes {state['sizes']} does not fit sizes {self.sizes}")

        def load(d: dict[str, Any]) -> _Node:
            node = _Node(depth=int(d["depth"]), untried=[int(a) for a in d["untried"]])
            node.visits, node.total = float(d["visits"]), float(d["total"])
            node.children = {int(a): load(c) for a, c in d["children"]}
            return node

        self.root = load(state["root"])
        self.rng.bit_generator.state = state["rng"]
        self.cache = {tuple(int(x) for x in a): float(v) for a, v in state["cache"]}
        self._replay = [tuple(int(x) for x in a) for a in state["replay"]]
        bounds = state.get("bounds")
        self._lo, self._hi = (float(bounds[0]), float(bounds[1])) if bounds else (math.inf, -math.inf)

    def _new_node(self, depth: int) -> _Node:
        untried = list(self.rng.permutation(self.sizes[depth])) if depth < len(self.sizes) else []
        return _Node(depth=depth, untried=[int(a) for a in untried])

    def _evaluate(self, assignment: Assignment) -> float:
        if assignment not in self.cache:
            value = float(self.reward(assignment))
            if not math.isfinite(value):
                raise ValueError(f"reward of {assignment} is not finite: {value}")
            self.cache[assignment] = value
        return self.cache[assignment]

    def _uct_child(self, node: _Node) -> tuple[int, _Node]:
        span = self._hi - self._lo if self._hi > self._lo else 1.0
        log_n = math.log(max(node.visits, 1.0))
        open_children = [(a, c) for a, c in node.children.items() if not c.exhausted]

        def uct(item: tuple[int, _Node]) -> float:
            child = item[1]
            mean = (child.total / child.visits - self._lo) / span
            return mean + self.exploration * math.sqrt(log_n / child.visits)

        return max(open_children, key=uct)

    def simulate(self) -> float:
        """Run one selection-expansion-roll-out-back-up cycle; return its reward."""
        if self._replay:
            return self._follow(self._replay.pop(0))
        node, path, prefix = self.root, [self.root], []
        while not node.untried and node.children and not node.exhausted:
            action, node = self._uct_child(node)
            prefix.append(action)
            path.append(node)
        if node.untried:
            action = node.untried.pop()
            child = self._new_node(node.depth + 1)
            node.children[action] = child
            prefix.append(action)
            node = child
            path.append(child)
        return self._back_up(path, self._evaluate(self._rollout(prefix)))

    def _follow(self, assignment: Assignment) -> float:
        """Evaluate ``assignment`` and back it up along its full path, adding the nodes it lacks."""
        node, path = self.root, [self.root]
        for action in assignment:
            if action not in node.children:
                node.untried.remove(action)
                node.children[action] = self._new_node(node.depth + 1)
            node = node.children[action]
            path.append(node)
        return self._back_up(path, self._evaluate(assignment))

    def _back_up(self, path: list[_Node], value: float) -> float:
        self._lo, self._hi = min(self._lo, value), max(self._hi, value)
        for visited in path:
            visited.visits += 1
            visited.total += value
        for visited in reversed(path):
            visited.exhausted = visited.depth == len(self.sizes) or (
                not visited.untried and all(c.exhausted for c in visited.children.values())
            )
        return value

    def _rollout(self, prefix: list[int], tries: int = 8) -> Assignment:
        """Complete ``prefix`` at random, preferring an assignment not evaluated yet."""
        for _ in range(tries):
            full = tuple(prefix + [int(self.rng.integers(n)) for n in self.sizes[len(prefix) :]])
            if full not in self.cache:
                break
        return full

    def run(self, simulations: int) -> SearchResult:
        """Run ``simulations`` cycles and return the best assignment evaluated."""
        rewards = []
        for _ in range(simulations):
            if self.root.exhausted:
                break
            rewards.append(self.simulate())
        best = max(self.cache, key=self.cache.__getitem__)
        return SearchResult(best, self.cache[best], len(rewards), len(self.cache), rewards)
