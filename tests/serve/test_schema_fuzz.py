"""Property test over the OpenAPI schema: hostile values for every parameter never give a 5xx.

schemathesis is not installed, so this walks ``/openapi.json`` itself: for every operation it draws
each documented parameter from a mix of schema-shaped values (in range, at and past the bounds) and
hostile ones (path traversal, NUL and control bytes, huge and negative numbers, long and odd Unicode),
sometimes leaves parameters out, and asserts the answer is a 2xx, or a 4xx whose JSON body has an
``error`` message. Uploads get random bytes behind real magic numbers, wrong names and oversize bodies.
"""

from __future__ import annotations

import io
import re
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daer.serve.app import create_app
from daer.serve.backend import LibraryBackend

CLASS_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception)\b")
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HOSTILE = [
    "../../../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "..\\..\\windows\\win.ini",
    "%00",
    "\x00",
    "a\x00b",
    "/",
    "//",
    ".",
    "..",
    "~",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "\u202e\u0645\u0631\u062d\u0628\u0627",
    "\ud7ff\ue000\uffff",
    "😀" * 200,
    "x" * 5000,
    "-1",
    "0",
    "1e309",
    "NaN",
    "-9223372036854775809",
    "18446744073709551616",
    "  ",
    "",
]
MAGIC = [
    b"",
    b"ply\nformat ascii 1.0\n",
    b"ply\nformat binary_little_endian 1.0\n",
    b"glTF",
    b"\x93NUMPY",
    b"PK\x03\x04",
]
MAGIC += [b"solid x\n", b"OFF\n", b"v 0 0 0\nv 1 0 0\nf 1 2 3\n", b"1 2 3\n4 5 6\n", b"\x93NUMPY\x01\x00v\x00{'descr':"]

NAMES = ["x.obj", "x.ply", "x.stl", "x.off", "x.glb", "x.npy", "x.npz", "x.xyz", "x", "x.gltf", "../x.obj", "a/b.ply"]


def _param_values(schema: dict[str, Any], known: list[str]) -> tuple[st.SearchStrategy[str], st.SearchStrategy[str]]:
    """(plausible, hostile) strategies for one parameter, from its schema and ``known`` good values."""
    plausible: list[st.SearchStrategy[str]] = [st.sampled_from(known)] if known else []
    hostile: list[st.SearchStrategy[str]] = [
        st.sampled_from(HOSTILE),
        st.text(st.characters(codec="utf-8"), max_size=40),
    ]
    for s in schema.get("anyOf", [schema]):
        if s.get("type") == "integer":
            lo, hi = s.get("minimum", -(10**6)), s.get("maximum", 10**6)
            plausible.append(st.integers(lo, hi).map(str))
            hostile += [st.integers(lo - 3, hi + 3).map(str), st.integers(-(10**30), 10**30).map(str)]
        elif s.get("type") == "string":
            lo, hi = s.get("minLength", 0), s.get("maxLength", 600)
            plausible.append(st.sampled_from(s["enum"]) if "enum" in s else st.text(min_size=lo, max_size=min(hi, 80)))
            hostile += [st.text(max_size=min(hi + 2, 600)), st.integers(max(0, hi - 1), hi + 1).map(lambda n: "q" * n)]
    return st.one_of(*plausible), st.one_of(*hostile)


def _operations(schema: dict[str, Any], method: str) -> list[tuple[str, list[dict[str, Any]]]]:
    ops = []
    for path, item in schema["paths"].items():
        if method in item:
            ops.append((path, item[method].get("parameters", [])))
    return ops


@pytest.fixture(scope="module")
def fuzz_client(backend: LibraryBackend) -> TestClient:
    return TestClient(create_app(backend=backend, api_key="", max_upload=200_000))


@pytest.fixture(scope="module")
def schema(fuzz_client: TestClient) -> dict[str, Any]:
    return fuzz_client.get("/openapi.json").json()


def check(r: Any) -> None:
    assert r.status_code < 500, (r.status_code, r.request.url, r.text[:300])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json"), r.headers
        message = r.json()["error"]
        assert isinstance(message, str) and message
        assert not CLASS_NAME.search(message), message  # a problem in words, never an exception class


def test_schema_lists_every_operation(schema: dict[str, Any]) -> None:
    gets = {p for p, _ in _operations(schema, "get")}
    assert {
        "/healthz",
        "/api/search",
        "/api/explain",
        "/api/shapes/{shape_id}",
        "/api/shapes/{shape_id}/render.png",
    } <= gets
    assert [p for p, _ in _operations(schema, "post")] == ["/api/classify"]


@SETTINGS
@given(data=st.data())
def test_get_operations_never_5xx(fuzz_client: TestClient, schema: dict[str, Any], data: st.DataObject) -> None:
    path, params = data.draw(st.sampled_from(_operations(schema, "get")), label="operation")
    ids = fuzz_client.app.state.backend.store.ids()[:10]
    known = {"id": ids, "shape_id": ids, "q": ["a chair with armrests", "a tall lamp", "plane"]}
    url = path
    query: dict[str, str] = {}
    for p in params:
        good = known.get(p["name"], []) + ([str(p["schema"]["default"])] if "default" in p.get("schema", {}) else [])
        plausible, hostile = _param_values(p.get("schema", {}), good)
        value = data.draw(
            hostile if data.draw(st.integers(0, 3), label="hostile?") == 0 else plausible, label=p["name"]
        )
        if p["in"] == "path":
            url = url.replace("{" + p["name"] + "}", quote(value, safe="") or "x")
        elif p.get("required") or data.draw(st.integers(0, 3), label=f"send {p['name']}") > 0:
            query[p["name"]] = value
    check(fuzz_client.get(url, params=query))


def _good_files() -> list[bytes]:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).standard_normal((300, 3)).astype(np.float32))
    tetra = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n"
    ply = b"ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    return [buf.getvalue(), tetra, ply + b"0 0 0\n1 0 0\n0 1 0\n0 0 1\n", b"0 0 0\n1 0 0\n0 1 0\n0 0 1\n"]


@st.composite
def upload_bodies(draw: st.DrawFn) -> bytes:
    """Random bytes behind a magic number, or a good file truncated or with bytes overwritten."""
    if draw(st.booleans()):
        return draw(st.sampled_from(MAGIC)) + draw(st.binary(max_size=3000))
    data = bytearray(draw(st.sampled_from(_good_files())))
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(1, len(data)))] if draw(st.booleans()) else data)


@SETTINGS
@given(
    body=upload_bodies(),
    name=st.sampled_from(
        ["x.obj", "x.ply", "x.stl", "x.off", "x.glb", "x.npy", "x.npz", "x.xyz", "x", "x.gltf", "../x.obj"]
    )
    | st.text(max_size=30),
    labels=st.none() | st.none() | st.sampled_from(HOSTILE) | st.text(max_size=200),
    key=st.none() | st.text(max_size=20),
)
def test_classify_never_5xx(
    fuzz_client: TestClient, body: bytes, name: str, labels: str | None, key: str | None
) -> None:
    form = {"labels": labels} if labels is not None else {}
    try:
        headers = {"X-API-Key": key} if key is not None and key.isascii() and key.isprintable() else {}
    except UnicodeError:
        headers = {}
    check(fuzz_client.post("/api/classify", files={"file": (name, body)}, data=form, headers=headers))


@settings(max_examples=20, deadline=None, database=None)
@given(size=st.integers(200_001, 600_000), magic=st.sampled_from(MAGIC))
def test_oversize_uploads_are_413(fuzz_client: TestClient, size: int, magic: bytes) -> None:
    r = fuzz_client.post("/api/classify", files={"file": ("x.npy", magic + bytes(size))})
    check(r)
    assert r.status_code == 413
