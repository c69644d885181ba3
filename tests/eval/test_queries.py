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
from daer.eval.queries import read_spec_queries
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
