"""Align3D-Synth splits: whole attribute combinations are held out, so test combinations are never trained on.

Per category, ``max(1, round(0.2 * n))`` of its ``n`` full attribute combinations go to ``test`` and
``max(1, round(0.1 * n))`` to ``val``; the rest are ``train``. The choice is a seeded shuffle,
redrawn until every single attribute value still occurs in some ``train`` combination. It depends only
on (seed, category), never on the data set size, so a shape's split is a function of its combination.

Small categories keep at least one combination in each held-out split: tree and bowl (4 combinations)
are 2 train / 1 val / 1 test, the smallest split in which each held-out split still has an unseen
combination and train still covers every value; cabinet and car (6) are 4 / 1 / 1. Shapes are spread
evenly over combinations, so the share of shapes in each split equals the share of combinations.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

from daer.errors import BadInputError
from daer.synth.taxonomy import CATEGORIES, TAXONOMY, combinations, combo_key

TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
_MAX_DRAWS = 10_000


def _count(n: int, fraction: float) -> int:
    return max(1, int(np.floor(n * fraction + 0.5)))


def held_out_counts(category: str) -> tuple[int, int]:
    """(test, val) numbers of combinations held out for a category."""
    n = len(combinations(category))
    return _count(n, TEST_FRACTION), _count(n, VAL_FRACTION)


def _covers_all_values(category: str, combos: list[dict[str, str]]) -> bool:
    return all({c[name] for c in combos} == set(values) for name, values in TAXONOMY[category].items())


def _category_splits(category: str, seed: int) -> list[str]:
    """The split of each combination of ``combinations(category)``, in that order."""
    combos = combinations(category)
    n_test, n_val = held_out_counts(category)
    if n_test + n_val >= len(combos):
        raise BadInputError(f"{category} has too few combinations ({len(combos)}) to hold out {n_test}+{n_val}")
    rng = np.random.default_rng([seed, zlib.crc32(category.encode()), 0x5B1])
    for _ in range(_MAX_DRAWS):
        order = rng.permutation(len(combos))
        train = [combos[i] for i in order[n_test + n_val :]]
        if _covers_all_values(category, train):
            out = ["train"] * len(combos)
            for i in order[:n_test]:
                out[i] = "test"
            for i in order[n_test : n_test + n_val]:
                out[i] = "val"
            return out
    raise BadInputError(f"no split of {category} keeps every value in train after {_MAX_DRAWS} draws")


@functools.lru_cache(maxsize=32)
def _table(seed: int) -> dict[str, str]:
    if seed < 0:
        raise BadInputError(f"seed must be >= 0, got {seed}")
    table: dict[str, str] = {}
    for category in CATEGORIES:
        for combo, split in zip(combinations(category), _category_splits(category, seed), strict=True):
            table[combo_key(category, combo)] = split
    return table


def split_table(seed: int) -> dict[str, str]:
    """Every (category, full combination) key (see ``combo_key``) mapped to "train", "val" or "test"."""
    return dict(_table(seed))


def split_of(category: str, attributes: dict[str, str], seed: int) -> str:
    """The split of a shape with this category and full attribute assignment."""
    if category not in TAXONOMY:
        raise BadInputError(f"unknown Align3D-Synth category {category!r}")
    if set(attributes) != set(TAXONOMY[category]):
        want, got = ", ".join(TAXONOMY[category]), ", ".join(attributes)
        raise BadInputError(f"{category} split needs exactly the attributes {want}; got {got}")
    key = combo_key(category, attributes)
    table = _table(seed)
    if key not in table:
        raise BadInputError(f"{key!r} is not an Align3D-Synth combination (unknown value)")
    return table[key]
