"""The HTTP API fuzzed from its own OpenAPI schema by schemathesis: valid and schema-violating requests
for every operation; no answer is a 5xx, and every 4xx says what was wrong (never an exception class)."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from daer.serve.app import create_app
from daer.serve.backend import LibraryBackend

CLASS_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception)\b")


@pytest.fixture(scope="module")
def api_schema(backend: LibraryBackend) -> schemathesis.BaseSchema:
    app = create_app(backend=backend, api_key="", max_upload=200_000)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(
        modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE], max_examples=25
    )
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_5xx_and_every_4xx_says_why(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str) and body["error"].strip(), body
        assert not CLASS_NAME.search(body["error"]), body
