"""The grounding metric: the pure scoring on hand-built attention, the caption-token-to-attribute map on every
caption the templates can write, and the model path end to end on a tiny set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from daer.data.build import build_synth
from daer.data.shards import iter_records
from daer.errors import BadInputError
from daer.eval import grounding
from daer.eval.evaluate import evaluate
from daer.eval.grounding import (
    attribute_tokens,
    measure_grounding,
    point_attention,
    summarise,
    token_char_spans,
    token_shares,
    value_word_spans,
)
from daer.models.content_words import content_positions
from daer.models.model import create_model
from daer.synth.captions import n_templates, render_caption
from daer.synth.taxonomy import CATEGORIES, TAXONOMY, combinations
from daer.utils.hashing import sha256_file

_TINY_WORDS = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")  # the tiny encoder's tokenizer


def content_words(caption: str) -> list[str]:
    words = _TINY_WORDS.findall(caption.lower())
    return [words[i] for i in content_positions(words)]


# --------------------------------------------------------------------------------------------------
# Pure scoring


def test_perfect_attention_scores_one_and_uniform_scores_chance() -> None:
    labels = np.zeros(100, dtype=np.uint16)
    labels[:20] = 0b01  # 20% of the points carry attribute 0
    labels[10:40] |= 0b10  # 30% carry attribute 1 (overlapping)
    perfect = np.zeros((3, 100))
    perfect[0, :20] = 1.0
    perfect[2, 10:40] = np.linspace(1, 2, 30)
    got = token_shares(perfect, labels, {0: 0b01, 2: 0b10})
    assert got == [(0, 1.0, 0.2), (2, pytest.approx(1.0), pytest.approx(0.3))]
    uniform = np.ones((3, 100)) * 7.0  # scale does not matter
    assert token_shares(uniform, labels, {0: 0b01, 1: 0b10}) == [(0, 0.2, 0.2), (1, pytest.approx(0.3), 0.3)]
    wrong = np.zeros((1, 100))
    wrong[0, 50:] = 1.0
    assert token_shares(wrong, labels, {0: 0b11}) == [(0, 0.0, 0.4)]


def test_skipped_pairs() -> None:
    labels = np.zeros(10, dtype=np.uint16)
    labels[:7] = 0b1  # covers 70%: more than 60%, no evidence
    att = np.ones((2, 10))
    assert token_shares(att, labels, {0: 0b1}) == []
    assert token_shares(att, labels, {0: 0b1}, max_cover=0.75) == [(0, 0.7, 0.7)]
    assert token_shares(att, labels, {1: 0b10}) == []  # absent part
    assert token_shares(np.zeros((2, 10)), labels, {0: 0b1}, max_cover=1.0) == []  # no attention mass
    with pytest.raises(BadInputError, match="do not fit"):
        token_shares(att, labels[:5], {0: 1})
    with pytest.raises(BadInputError, match="out of range"):
        token_shares(att, labels, {2: 1})


def test_summary_averages_over_token_shape_pairs() -> None:
    r = summarise([("chair.legs", 1.0, 0.2), ("chair.legs", 0.5, 0.3), ("sofa.seats", 0.0, 0.1)], n_shapes=2)
    assert r.score == pytest.approx(0.5) and r.chance == pytest.approx(0.2) and r.n_pairs == 3 and r.n_shapes == 2
    assert r.per_attribute["chair.legs"] == {"score": 0.75, "chance": 0.25, "n": 2}
    empty = summarise([], n_shapes=4)
    assert empty.score is None and empty.chance is None and empty.n_pairs == 0


# --------------------------------------------------------------------------------------------------
# Which tokens name which attribute


def test_value_words_of_a_chair_caption() -> None:
    attrs = {"legs": "4", "back": "tall", "armrests": "yes", "leg_shape": "round"}
    cap = "a chair with four legs, a tall back, armrests and round legs"
    words = content_words(cap)
    assert words == ["chair", "four", "legs", "tall", "back", "armrests", "round", "legs"]
    named = attribute_tokens("chair", attrs, cap, words, content_only=True)
    # the value words, not the part nouns that every value shares; "armrests" has no other word, so it counts
    assert named == {1: "legs", 3: "back", 5: "armrests", 6: "leg_shape"}
    no_arms = "a tall-backed four-legged chair with no arms and round legs"
    named = attribute_tokens("chair", {**attrs, "armrests": "no"}, no_arms, content_words(no_arms), True)
    assert {content_words(no_arms)[t]: a for t, a in named.items()} == {
        "tall": "back", "four": "legs", "no": "armrests", "round": "leg_shape",
    }  # fmt: skip


def test_word_pieces_and_skipped_function_words() -> None:
    cap = "a 3d model of a 3-drawer dresser with no feet"
    attrs = {"drawers": "3", "legs": "no"}
    # a content-word model drops "3d" (a function word), so the scored "3" is the one of "3-drawer"
    pieces = ["3", "drawer", "dresser", "no", "feet"]
    assert token_char_spans(cap, pieces, content_only=True)[0] == (16, 17)
    assert attribute_tokens("cabinet", attrs, cap, pieces, content_only=True) == {0: "drawers", 3: "legs"}
    every = ["a", "3", "##d", "model", "of", "a", "3", "-", "drawer", "dresser", "with", "no", "feet"]
    assert attribute_tokens("cabinet", attrs, cap, every) == {6: "drawers", 11: "legs"}
    arms = "a sofa with arms"
    assert token_char_spans(arms, ["sofa", "arm", "##s", "[UNK]"]) == [(2, 6), (12, 15), (15, 16), None]
    assert attribute_tokens("sofa", {"armrests": "yes"}, arms, ["sofa", "arm", "##s"]) == {1: "armrests", 2: "armrests"}
    assert value_word_spans("sofa", {"armrests": "yes", "seats": "2"}, arms) == {"armrests": [(12, 16)]}
    assert value_word_spans("not-a-category", {}, arms) == {}


def test_every_attribute_of_every_template_caption_gets_a_token() -> None:
    misses = []
    for category in CATEGORIES:
        for attrs in combinations(category):
            for group in ("train", "heldout"):
                for template in range(n_templates(group)):
                    for variant in range(2):
                        cap = render_caption(category, attrs, template, group, variant)
                        named = set(attribute_tokens(category, attrs, cap, content_words(cap), True).values())
                        if named != set(TAXONOMY[category]):
                            misses.append((cap, sorted(set(TAXONOMY[category]) - named)))
    assert not misses, misses[:10]


# --------------------------------------------------------------------------------------------------
# The model path


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("grounding") / "synth"
    build_synth(out, 60, n_points=256, workers=1, progress=False)
    return out


def test_batched_attention_is_explains(synth: Path) -> None:
    torch.manual_seed(0)
    model = create_model("tiny", n_points=256).eval()
    recs = list(iter_records(synth, "test"))[:3]
    att, words = point_attention(model, np.stack([r.points for r in recs]), [r.captions[0] for r in recs])
    for r, a, w in zip(recs, att, words, strict=True):
        e = model.explain(r.captions[0], r.points)
        assert w == e.words and a.shape == e.point_attention.shape
        np.testing.assert_allclose(a, e.point_attention, atol=1e-5)


def test_end_to_end_on_a_tiny_model(synth: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = create_model("tiny", n_points=256)
    r = measure_grounding(model, synth, "test")
    assert r is not None and r.n_shapes == 13 and r.n_pairs > 10 and 0.0 <= r.score <= 1.0 and 0.0 < r.chance < 0.6
    assert model.training  # the model's mode is given back
    small = measure_grounding(model, synth, "test", max_shapes=4, batch_size=3)
    assert small is not None and small.n_shapes == 4
    assert measure_grounding(model, synth, "test", max_shapes=0) is None
    assert measure_grounding(create_model("tiny", n_points=256, mode="global"), synth, "test") is None

    def uniform(model, points, captions, groups=None):  # attention spread evenly: the score must be chance exactly
        att, words = point_attention(model, points, captions, groups)
        return [np.ones_like(a) for a in att], words

    monkeypatch.setattr(grounding, "point_attention", uniform)
    flat = measure_grounding(model, synth, "test")
    assert flat is not None and flat.score == pytest.approx(flat.chance) and flat.n_pairs == r.n_pairs


def test_evaluate_reports_grounding_where_it_applies(synth: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("tiny", n_points=256)
    result = evaluate(model, synth)
    assert list(result)[-2:] == ["grounding", "n_shapes"] and 0.0 <= result["grounding"] <= 1.0
    assert result["grounding"] == measure_grounding(model, synth, "test").score  # all 13 test shapes, one call
    # a data set written before part labels existed: no grounding (evaluate passes this None on as null)
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((synth / "manifest.json").read_text())
    for entry in manifest["shards"]:
        table = pq.read_table(synth / entry["file"]).drop_columns(["point_attrs"])
        pq.write_table(table, old / entry["file"], compression="zstd")
        entry["sha256"] = sha256_file(old / entry["file"])
    manifest.pop("point_attrs")
    (old / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 1}))
    assert measure_grounding(model, old, "test") is None
    assert len(list(iter_records(old, "test"))) == 13
