"""Align3D-Synth combination splits: sizes, value coverage of train, determinism, independence of data set size."""

from __future__ import annotations

from collections import Counter

import pytest

from daer.errors import BadInputError
from daer.synth.generator import shape_spec
from daer.synth.splits import held_out_counts, split_of, split_table
from daer.synth.taxonomy import CATEGORIES, TAXONOMY, combinations, combo_key


def per_category(table: dict[str, str], category: str) -> Counter:
    return Counter(split for key, split in table.items() if key.startswith(category + "|"))


def test_held_out_sizes_follow_the_documented_rule():
    # (train, val, test) worked out by hand from max(1, round(0.1 n)) and max(1, round(0.2 n))
    want = {"tree": (2, 1, 1), "bowl": (2, 1, 1), "cabinet": (4, 1, 1), "car": (4, 1, 1), "stool": (5, 1, 2),
            "ladder": (7, 1, 2), "lamp": (9, 1, 2), "chair": (11, 2, 3), "bookshelf": (11, 2, 3),
            "table": (12, 2, 4)}  # fmt: skip
    table = split_table(0)
    assert len(table) == sum(len(combinations(c)) for c in CATEGORIES)
    for category in CATEGORIES:
        counts = per_category(table, category)
        n_test, n_val = held_out_counts(category)
        assert (counts["test"], counts["val"]) == (n_test, n_val) and n_test >= 1 and n_val >= 1
        assert counts["train"] == len(combinations(category)) - n_test - n_val
        if category in want:
            assert (counts["train"], counts["val"], counts["test"]) == want[category], category
    share = Counter(table.values())
    assert 0.15 <= share["test"] / len(table) <= 0.25 and 0.08 <= share["val"] / len(table) <= 0.15


@pytest.mark.parametrize("seed", [0, 1, 2, 7, 123])
def test_every_value_is_seen_in_train(seed):
    table = split_table(seed)
    for category in CATEGORIES:
        train = [c for c in combinations(category) if table[combo_key(category, c)] == "train"]
        for name, values in TAXONOMY[category].items():
            assert {c[name] for c in train} == set(values), (seed, category, name)


def test_deterministic_per_seed_and_different_across_seeds():
    assert split_table(4) == split_table(4)
    assert split_table(4) != split_table(5)
    table = split_table(4)
    table["chair|legs=3,back=short,armrests=yes,leg_shape=round"] = "mutated"  # a copy: the cache is untouched
    assert split_table(4) != table


def test_split_of_matches_table():
    table = split_table(2)
    for category in CATEGORIES:
        for combo in combinations(category):
            assert split_of(category, combo, 2) == table[combo_key(category, combo)]


def test_split_is_the_same_at_every_data_set_size():
    small = {i: shape_spec(i, 9) for i in range(100)}
    big = {i: shape_spec(i, 9) for i in range(5000)}
    assert all(big[i] == small[i] for i in small)
    split = {i: split_of(c, a, 9) for i, (c, a) in big.items()}
    by_combo: dict[str, set[str]] = {}
    for i, (c, a) in big.items():
        by_combo.setdefault(combo_key(c, a), set()).add(split[i])
    assert all(len(s) == 1 for s in by_combo.values())  # one combination, one split, whatever the size
    train = {k for k, s in by_combo.items() if s == {"train"}}
    test = {k for k, s in by_combo.items() if s == {"test"}}
    assert train and test and not train & test
    assert len(by_combo) == len(split_table(9))  # n=5000 covers every combination


@pytest.mark.parametrize(
    "category, attributes",
    [("chair", {"legs": "3"}), ("spaceship", {}), ("tree", {"crown": "cube", "trunk": "tall"})],
)
def test_bad_input(category, attributes):
    with pytest.raises(BadInputError):
        split_of(category, attributes, 0)


def test_negative_seed_refused():
    with pytest.raises(BadInputError):
        split_table(-1)
