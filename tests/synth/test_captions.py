"""Align3D-Synth captions: template counts, train/held-out disjointness, value words, swap locality, grammar."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from daer.errors import BadInputError
from daer.synth import captions as cap
from daer.synth.splits import split_table
from daer.synth.taxonomy import CATEGORIES, TAXONOMY, combinations, combo_key

N = r"(?<![\w-])"  # start of a word, not inside a hyphenated word ("3d" and "t-tail" stay whole)


def _num(word: str, digit: str) -> str:
    return rf"\b({word}|{digit})\b"


# Written independently of the phrase bank: which words must (and must not) appear for each value.
YES_NO = {
    "armrests": (r"(?<!no )\b(armrests|arms)\b", r"\bno (armrests|arms)\b"),
    "backrest": (r"(?<!no )\b(backrest|back)\b", r"\bno (backrest|back)\b"),
    "headboard": (r"\b(a|raised) headboard\b", r"\bno headboard\b"),
    "footboard": (r"\b(a|raised) footboard\b", r"\bno footboard\b"),
    "legs": (r"(?<!no )\b(legs|feet)\b", r"\bno (legs|feet)\b"),
    "handle": (r"\ba (side )?handle\b", r"\bno (side )?handle\b"),
    "foot": (r"\b(footed|a foot)\b", r"\b(no foot|footless|flat-bottomed|flat bottom)\b"),
    "back_panel": (r"(?<!no )\b(back panel|solid back|closed-back|back-panelled)", r"\b(no back panel|open[- ]back)"),
    "cap": (r"\b(a cap|screw cap|capped|closed)\b", r"\b(no cap|open|uncapped)\b"),
    "chimney": (r"\ba chimney\b", r"\bno chimney\b"),
}
WORDS = dict(zip("012345678", ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight"), strict=True))
LOW, TALL = r"\b(low|short)\b", r"\b(tall|high)\b"
EXPECT: dict[str, dict[str, dict[str, str]]] = {
    "chair": {"back": {"short": LOW, "tall": TALL},
              "leg_shape": {"round": r"\b(round|cylindrical)\b", "square": r"\bsquare"}},
    "stool": {"seat": {"round": r"\b(round|circular)", "square": r"\bsquare"}, "height": {"low": LOW, "tall": TALL}},
    "table": {"legs": {"1": "pedestal", "3": _num("three", "3"), "4": _num("four", "4")},
              "top": {"round": r"\b(round|circular)\b", "square": r"\bsquare\b",
                      "rectangular": r"(rectangular|oblong)"},
              "height": {"low": r"\b(low|short|coffee-table)\b", "tall": r"\b(tall|high|dining-table)\b"}},
    "bench": {"length": {"short": r"\b(short|compact)\b", "long": r"\blong\b"}},
    "bed": {"width": {"single": r"\b(single|twin-size)\b", "double": r"\b(double|full-size)\b"}},
    "sofa": {"back": {"low": r"\blow\b", "high": r"\bhigh\b"}},
    "bookshelf": {"width": {"narrow": r"\b(narrow|slim)\b", "wide": r"\b(wide|broad)\b"}},
    "lamp": {"shade": {"cone": r"\b(conical|cone-shaped)", "cylinder": r"\b(cylindrical|drum)\b",
                       "sphere": r"\b(spherical|globe)\b"},
             "base": {"round": r"\b(round|circular) base", "square": r"\bsquare(-shaped)? base"},
             "height": {"desk": r"\b(desk|table)\b", "floor": r"\b(floor|standing)\b"}},
    "mug": {"shape": {"straight": r"\bstraight", "tapered": r"\btaper(ed|ing)"},
            "height": {"short": r"\b(short|squat)\b", "tall": r"\btall\b"}},
    "bowl": {"depth": {"shallow": r"\bshallow", "deep": r"\bdeep"}},
    "vase": {"body": {"round": r"\b(round|bulbous)\b", "cylindrical": r"\b(cylindrical|tube-shaped)"},
             "neck": {"narrow": r"\b(narrow|thin)", "wide": r"\b(wide|broad)"},
             "handles": {"0": r"\b(no (side )?handles|handleless)",
                         "2": r"\b(two|2)(-handled| handles| side handles)"}},
    "bottle": {"body": {"round": r"\b(round|rounded|round-bodied)\b", "square": r"\bsquare"},
               "neck": {"short": r"\b(short|stubby)", "long": r"\blong"}},
    "airplane": {"engines": {"2": r"\b(two|twin|2)\b", "4": _num("four", "4")},
                 "wings": {"straight": r"\b(straight|unswept)", "swept": r"\bswept"},
                 "tail": {"conventional": r"\b(conventional|standard)", "t_tail": N + r"t-(tail|tailed|shaped)"}},
    "car": {"body": {"sedan": r"\b(sedan|saloon)\b", "pickup": r"\bpickup\b", "van": r"\bvan\b"}},
    "rocket": {"boosters": {"0": r"\bno (side )?boosters\b", "2": r"\b(two|2) (side )?boosters\b"},
               "nose": {"pointed": r"\b(pointed|sharp)", "round": r"\b(round|rounded|blunt)"}},
    "tree": {"crown": {"cone": r"\b(conical|cone)", "sphere": r"\b(spherical|round)"},
             "trunk": {"short": r"\bshort", "tall": r"\b(tall|long)\b"}},
    "house": {"floors": {"1": r"\b(one|1|single)\b", "2": _num("two", "2"), "3": _num("three", "3")},
              "roof": {"flat": r"\bflat", "gabled": r"\b(gabled|gable-roofed|pitched)"}},
    "ladder": {"rails": {"parallel": r"\b(parallel|straight)", "tapered": r"\btaper"}},
}  # fmt: skip


def expected(category: str, attribute: str, value: str) -> str:
    if attribute in EXPECT.get(category, {}):
        return EXPECT[category][attribute][value]
    if set(TAXONOMY[category][attribute]) == {"yes", "no"}:
        return YES_NO[attribute][0 if value == "yes" else 1]
    assert value.isdigit(), (category, attribute, value)
    return _num(WORDS[value], value)


def some_combos(category: str, k: int = 6) -> list[dict[str, str]]:
    combos = combinations(category)
    idx = np.random.default_rng(len(category)).choice(len(combos), size=min(k, len(combos)), replace=False)
    return [combos[i] for i in idx]


def test_at_least_eight_templates_with_distinct_renderings_per_category():
    assert cap.n_templates("train") >= 6 and cap.n_templates("heldout") >= 3
    for category in CATEGORIES:
        combo = combinations(category)[0]
        for variant in range(4):
            texts = {cap.render_caption(category, combo, t, g, variant) for g in cap.GROUPS
                     for t in range(cap.n_templates(g))}  # fmt: skip
            assert len(texts) == cap.n_templates("train") + cap.n_templates("heldout") >= 8, (category, texts)


def test_train_and_heldout_templates_never_produce_the_same_caption():
    train_patterns = {(t.bare, t.full) for t in cap.templates("train")}
    assert not train_patterns & {(t.bare, t.full) for t in cap.templates("heldout")}
    for category in CATEGORIES:
        names = list(TAXONOMY[category])
        for combo in some_combos(category, 3):
            subsets = [names, names[:1], names[1:], []]
            rendered = {g: set() for g in cap.GROUPS}
            for group, subset, variant in itertools.product(cap.GROUPS, subsets, range(8)):
                attrs = {n: combo[n] for n in subset}
                for t in range(cap.n_templates(group)):
                    rendered[group].add(cap.render_caption(category, attrs, t, group, variant))
            assert not rendered["train"] & rendered["heldout"], category


def test_phrase_bank_covers_taxonomy_with_parallel_variants():
    for category in CATEGORIES:
        bank = cap.PHRASES[category]
        assert set(bank.attrs) == set(TAXONOMY[category])
        for name, values in TAXONOMY[category].items():
            a = bank.attrs[name]
            for forms in (a.np, a.adj, a.head):
                if forms is not None:
                    assert set(forms) == set(values), (category, name)
                    assert len({len(forms[v]) for v in values}) == 1, (category, name)
        assert set(bank.adj_order) == {n for n, a in bank.attrs.items() if a.adj is not None}, category


def test_captions_name_the_right_value_words_and_no_other_value():
    for category in CATEGORIES:
        for combo in combinations(category):
            for group, variant in itertools.product(cap.GROUPS, range(3)):
                for t in range(cap.n_templates(group)):
                    text = cap.render_caption(category, combo, t, group, variant)
                    for name, value in combo.items():
                        assert re.search(expected(category, name, value), text), (category, name, value, text)
                        for other in TAXONOMY[category][name]:
                            if other != value:
                                assert not re.search(expected(category, name, other), text), (name, other, text)


def _changed(a: str, b: str) -> tuple[list[str], list[str]]:
    """The tokens of ``a`` and ``b`` between their common prefix and common suffix."""
    x, y = a.replace(",", " ,").split(), b.replace(",", " ,").split()
    p = 0
    while p < min(len(x), len(y)) and x[p] == y[p]:
        p += 1
    s = 0
    while s < min(len(x), len(y)) - p and x[-1 - s] == y[-1 - s]:
        s += 1
    return x[p : len(x) - s], y[p : len(y) - s]


def test_swapping_one_value_changes_only_that_phrase():
    for category in CATEGORIES:
        for combo in some_combos(category, 4):
            for name, value in combo.items():
                own = {w for p in cap.value_phrases(category, name, value) for w in p.split()} | {"a", "an"}
                for other in TAXONOMY[category][name]:
                    if other == value:
                        continue
                    theirs = {w for p in cap.value_phrases(category, name, other) for w in p.split()} | {"a", "an"}
                    swapped = {**combo, name: other}
                    for group, variant in itertools.product(cap.GROUPS, range(4)):
                        for t in range(cap.n_templates(group)):
                            a = cap.render_caption(category, combo, t, group, variant)
                            b = cap.render_caption(category, swapped, t, group, variant)
                            da, db = _changed(a, b)
                            assert da != db, (a, b)
                            assert set(da) <= own and set(db) <= theirs, (a, b)
                            # the same swap with a partial subset that still names the attribute
                            sub = {name: value, **{k: v for k, v in list(combo.items())[:1]}}
                            sa = cap.render_caption(category, sub, t, group, variant)
                            sb = cap.render_caption(category, {**sub, name: other}, t, group, variant)
                            ca, cb = _changed(sa, sb)
                            assert set(ca) <= own and set(cb) <= theirs and ca != cb, (sa, sb)


def test_articles_and_plurals():
    bad_a = re.compile(r"\ba (?!one)[aeiou8]")
    bad_an = re.compile(r"\ban (?![aeiou8])")
    for category in CATEGORIES:
        names = list(TAXONOMY[category])
        for combo in combinations(category):
            for group, variant, k in itertools.product(cap.GROUPS, range(3), range(len(names) + 1)):
                for t in range(cap.n_templates(group)):
                    text = cap.render_caption(category, {n: combo[n] for n in names[:k]}, t, group, variant)
                    assert not bad_a.search(text) and not bad_an.search(text), text
                    assert not re.search(r"\b(1|one) (legs|floors|handles)\b", text), text
                    assert text == text.lower() and "  " not in text and "_" not in text, text
    assert re.fullmatch(r"a (single-)?pedestal table", cap.render_caption("table", {"legs": "1"}, 0, "train", 0))
    assert cap.render_caption("airplane", {"tail": "t_tail"}, 0, "train", 0).startswith(("a t-tail", "a t-tailed"))
    assert cap.render_caption("ladder", {"rungs": "8"}, 0, "train", 0).startswith(("an eight-rung", "an 8-rung"))


def test_captions_for_granularity_and_determinism():
    for category in CATEGORIES:
        combo = some_combos(category, 1)[0]
        for group in cap.GROUPS:
            draws = cap.draw_captions(category, combo, group, np.random.default_rng(5), n=5)
            again = cap.captions_for(category, combo, group, np.random.default_rng(5), n=5)
            assert [d.text for d in draws] == again and len(again) == 5
            assert draws[0].attributes == combo
            assert sum(not d.attributes for d in draws) <= 1
            for d in draws:
                assert d.group == group and 0 <= d.template < cap.n_templates(group)
                assert cap.render_caption(category, d.attributes, d.template, group, d.variant) == d.text
                assert set(d.attributes.items()) <= set(combo.items())
    chair = combinations("chair")[3]
    sizes = [
        len(d.attributes)
        for i in range(200)
        for d in cap.draw_captions("chair", chair, "train", np.random.default_rng(i))
    ]
    assert {0, 1, 2, 3, 4} <= set(sizes)
    runs = {
        tuple(cap.captions_for("chair", combinations("chair")[3], "train", np.random.default_rng(i))) for i in range(8)
    }
    assert len(runs) > 1


def test_spec_queries_come_from_heldout_templates_and_test_combinations():
    queries = cap.spec_queries(seed=3, n_per_category=6)
    assert len(queries) == 6 * len(CATEGORIES)
    assert queries == cap.spec_queries(seed=3, n_per_category=6)
    table = split_table(3)
    ks = set()
    for q in queries:
        assert cap.render_caption(q.category, q.attributes, q.template, "heldout", q.variant) == q.text
        test_combos = [c for c in combinations(q.category) if table[combo_key(q.category, c)] == "test"]
        assert any(set(q.attributes.items()) <= set(c.items()) for c in test_combos), q
        for name, value in q.attributes.items():
            assert re.search(expected(q.category, name, value), q.text), q
        ks.add(len(q.attributes))
    assert {0, 1, 2} <= ks
    assert len(cap.spec_queries(seed=3, n_per_category=2, split=None)) == 2 * len(CATEGORIES)


def test_class_prompts():
    for category in CATEGORIES:
        prompts = cap.class_prompts(category)
        assert len(prompts) >= 5 and len(set(prompts)) == len(prompts)
        assert all(re.search(rf"\b{category}\b", p) for p in prompts)
    assert "a 3d model of an airplane" in cap.class_prompts("airplane")


@pytest.mark.parametrize(
    "call",
    [
        lambda: cap.render_caption("spaceship", {}, 0, "train"),
        lambda: cap.render_caption("chair", {"wheels": "4"}, 0, "train"),
        lambda: cap.render_caption("chair", {"legs": "5"}, 0, "train"),
        lambda: cap.render_caption("chair", {}, 99, "train"),
        lambda: cap.render_caption("chair", {}, 0, "test"),
        lambda: cap.captions_for("chair", {"legs": "3"}, "train", np.random.default_rng(0)),
        lambda: cap.class_prompts("spaceship"),
    ],
)
def test_bad_input_is_refused(call):
    with pytest.raises(BadInputError):
        call()
