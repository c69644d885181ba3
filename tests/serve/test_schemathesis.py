"""The HTTP API fuzzed from its own OpenAPI schema by schemathesis: valid and schema-violating requests
for every operation; no answer is a 5xx, and every 4xx says what was wrong (never an exception class).

Cases come from each operation's schemathesis strategy (hypothesis), positive and negative generation.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from daer.serve.app import create_app
from daer.serve.backend import LibraryBackend

CLASS_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception)\b")
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


@pytest.fixture(scope="module")
def operations(backend: LibraryBackend) -> list[schemathesis.APIOperation]:
    app = create_app(backend=backend, api_key="", max_upload=200_000)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in ops} >= {"/api/search", "/api/classify", "/api/explain"}
    return ops


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_no_5xx_and_every_4xx_says_why(operations: list[schemathesis.APIOperation], mode) -> None:
    checked = []
    for op in operations:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=20, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call()
            where = (case.method, case.formatted_path, response.status_code, response.text[:300])
            assert response.status_code < 500, where
            if response.status_code >= 400:
                body = response.json()
                assert isinstance(body.get("error"), str) and body["error"].strip(), where
                assert not CLASS_NAME.search(body["error"]), where

        try:
            check()
        except Unsatisfiable:  # nothing to violate (no parameters, no body): only positive cases exist
            assert mode == schemathesis.GenerationMode.NEGATIVE, op.path
            continue
        checked.append(op.path)
    assert {"/api/search", "/api/classify", "/api/explain"} <= set(checked), checked
