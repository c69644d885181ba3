"""Spec queries from a file: parsing with clear errors, and evaluation against a full-matrix reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from daer.data.build import build_synth
from daer.data.shards import iter_records
from daer.errors import BadInputError
from daer.eval import metrics as M
from daer.eval.evaluate import evaluate
from daer.eval.queries import read_class_prompts, read_spec_queries
from daer.models.model import create_model

HANDWRITTEN = Path(__file__).resolve().parents[2] / "benchmarks" / "queries" / "handwritten.jsonl"


def test_reads_the_packaged_handwritten_set():
    queries = read_spec_queries(HANDWRITTEN)
    assert len(queries) >= 40 and all(q.text and q.category for q in queries)
    from daer.synth.taxonomy import TAXONOMY

    for q in queries:  # every query names real categories, attributes and values
        assert all(TAXONOMY[q.category][a] and v in TAXONOMY[q.category][a] for a, v in q.attributes.items())


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", ":2: not JSON"),
        ('["a list"]', ":2: expected an object"),
        ('{"category": "chair"}', ":2: 'text' must be"),
        ('{"text": "a chair", "category": ""}', ":2: 'category' must be"),
        ('{"text": "a chair", "category": "chair", "attributes": {"legs": 4}}', ":2: 'attributes' must"),
    ],
)
def test_bad_lines_are_refused_with_their_number(tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    path.write_text('{"text": "a stool", "category": "stool"}\n' + line + "\n")
    with pytest.raises(BadInputError, match=message):
        read_spec_queries(path)


def test_empty_or_missing_files_are_refused(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n# only a comment\n")
    with pytest.raises(BadInputError, match="no queries"):
        read_spec_queries(tmp_path / "empty.jsonl")
    with pytest.raises(BadInputError, match="cannot read"):
        read_spec_queries(tmp_path / "missing.jsonl")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    build_synth(folder, 60, n_points=256, workers=1, progress=False)
    return folder


def test_given_queries_are_scored_like_a_full_matrix(synth, tmp_path):
    rows = [
        {"text": "a chair with arms", "category": "chair", "attributes": {"armrests": "yes"}},
        {"text": "a pickup truck", "category": "car", "attributes": {"body": "pickup"}},
        {"text": "some table", "category": "table"},
        {"text": "a stool", "category": "stool", "attributes": {}},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    queries = read_spec_queries(path)
    torch.manual_seed(0)
    model = create_model("tiny", n_points=256).eval()
    result = evaluate(model, synth, spec=queries)
    recs = list(iter_records(synth, "test"))
    with torch.no_grad():
        shapes = model.encode_points(torch.from_numpy(np.stack([r.points for r in recs])))
        scores = model.score(model.encode_text([q.text for q in queries]), shapes).numpy()
    rel = [[M.spec_match((q.category, q.attributes), (r.category, r.attributes)) for r in recs] for q in queries]
    want = M.spec_precision(scores, np.array(rel), (1, 10))
    assert result["spec_p1"] == pytest.approx(want[1]) and result["spec_p10"] == pytest.approx(want[10])


# --------------------------------------------------------------------------------------------------
# Class names for zero-shot


class _Lexicon(torch.nn.Module):
    """Text: one-hot of the first of WORDS it contains (zeros when none); shape: one-hot of its category's
    word. A prompt made of a category id ("a c0") reads as nothing, a readable name as its class."""

    WORDS = ("airplane", "guitar", "bathtub")

    def __init__(self, data: Path, word_of: dict[str, str]) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.zeros(1))
        self.word_of = {r.points.astype(np.float32).tobytes(): word_of[r.category] for r in iter_records(data, "test")}
        self.texts: list[str] = []

    def _onehot(self, word: str | None) -> torch.Tensor:
        v = torch.zeros(len(self.WORDS))
        if word is not None:
            v[self.WORDS.index(word)] = 1.0
        return v

    def encode_text(self, captions):
        from daer.models.text_encoder import TextFeatures

        self.texts += captions
        g = torch.stack([self._onehot(next((w for w in self.WORDS if w in c), None)) for c in captions])
        return TextFeatures(g[:, None], torch.ones(len(g), 1, dtype=torch.bool), g, [[c] for c in captions])

    def encode_points(self, points, groups=None):
        from daer.models.point_encoder import PointFeatures

        g = torch.stack([self._onehot(self.word_of[p.tobytes()]) for p in points.numpy().astype(np.float32)])
        return PointFeatures([g[:, None]], [torch.zeros(len(g), 1, 3)], g)

    def score(self, text, shapes):
        return text.global_ @ shapes.global_.T


def test_class_names_give_zero_shot_the_words_its_ids_lack(tmp_path):
    from daer.data.record import ShapeRecord
    from daer.data.shards import DatasetWriter

    word_of = {"c0": "airplane", "c1": "guitar", "c2": "bathtub"}
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "set", "modelnet40-h5", shard_size=4) as w:
        for i in range(9):
            cat = f"c{i % 3}"
            w.add(ShapeRecord(f"s{i}", cat, {}, [f"a {cat}"], "test", rng.normal(size=(64, 3)).astype(np.float32)))
    data = tmp_path / "set"
    assert evaluate(_Lexicon(data, word_of), data)["zeroshot_top1"] == 0.0  # "a c0" names nothing: ties lose
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"c0": "airplane", "c1": ["something with strings: a guitar"], "c2": "bathtub"}))
    model = _Lexicon(data, word_of)
    assert evaluate(model, data, class_names=read_class_prompts(names))["zeroshot_top1"] == 1.0
    assert "something with strings: a guitar" in model.texts and "a 3d model of an airplane" in model.texts
    with pytest.raises(BadInputError, match="does not have: c9"):
        evaluate(model, data, class_names={"c9": "chair"})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "expected a non-empty object"),
        ("{}", "expected a non-empty object"),
        ('{"c0": ""}', "'c0' must map to a non-empty name"),
        ('{"c0": []}', "'c0' must map to a non-empty name"),
        ('{"c0": ["a chair", 3]}', "'c0' must map"),
        ('{"c0": "a' + "x" * 600 + '"}', "1 to 500 characters"),
        ("{not json", "not JSON"),
    ],
)
def test_bad_class_name_files_are_refused(tmp_path, content, message):
    path = tmp_path / "names.json"
    path.write_text(content)
    with pytest.raises(BadInputError, match=message):
        read_class_prompts(path)
    with pytest.raises(BadInputError, match="cannot read"):
        read_class_prompts(tmp_path / "missing.json")
