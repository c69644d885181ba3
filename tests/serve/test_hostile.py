"""Issue 17's probe of the service under hostile input, one test per row (large inputs are generated here)."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from benchmarks.bench_service import serve_thread
from fastapi.testclient import TestClient

from daer.serve.app import create_app
from daer.serve.backend import LibraryBackend
from tests.serve.test_api import TETRA_OBJ, refused


def glb(doc_json: bytes) -> bytes:
    """A GLB container holding just this JSON chunk."""
    chunk = doc_json + b" " * (-len(doc_json) % 4)
    return b"glTF" + struct.pack("<II", 2, 20 + len(chunk)) + struct.pack("<II", len(chunk), 0x4E4F534A) + chunk


# ---------------------------------------------------------------------------- row 1
def test_row1_deeply_nested_glb_json_is_a_4xx(client: TestClient) -> None:
    """A GLB whose JSON chunk is 200,000 nested arrays: refused with a message, not a 500 from recursion."""
    deep = glb(b"[" * 200_000 + b"]" * 200_000)
    message = refused(client.post("/api/classify", files={"file": ("x.glb", deep)}), 415)
    assert "nested 200000 levels deep" in message
    # nesting inside strings does not count, and an ordinary GLB header still passes this check
    ok = glb(json.dumps({"asset": {"version": "2.0"}, "extras": {"note": "[" * 1000}}).encode())
    r = client.post("/api/classify", files={"file": ("x.glb", ok)})
    assert r.status_code == 422 and "nested" not in r.json()["error"]  # no geometry, but not refused for depth


# ---------------------------------------------------------------------------- row 7
KEY = "s3cret-key"


def keyed_paths(backend: LibraryBackend) -> list[str]:
    sid = backend.store.ids()[0]
    return [
        "/api/search?q=a+chair",
        f"/api/shapes/{sid}",
        f"/api/shapes/{sid}/render.png?size=64",
        f"/api/explain?q=a+chair&id={sid}&format=json",
        f"/api/explain?q=a+chair&id={sid}&size=64",
        "/openapi.json",
        "/docs",
        "/redoc",
    ]


def test_row7_every_endpoint_needs_the_key(backend: LibraryBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAER_API_KEY", KEY)
    c = TestClient(create_app(backend=backend))
    for path in keyed_paths(backend):
        assert "API key" in refused(c.get(path), 401), path
        assert "wrong" in refused(c.get(path, headers={"X-API-Key": "nope"}), 401), path
        assert c.get(path, headers={"X-API-Key": KEY}).status_code == 200, path
        assert c.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200, path
    files = {"file": ("t.obj", TETRA_OBJ)}
    assert "API key" in refused(c.post("/api/classify", files=files), 401)
    assert c.post("/api/classify", files=files, headers={"X-API-Key": KEY}).status_code == 200
    # the page, its static files and the liveness check stay public; the page sends the key from its field
    for path in ("/", "/static/app.js", "/static/style.css", "/healthz"):
        assert c.get(path).status_code == 200, path
    assert 'id="apikey"' in c.get("/").text and "X-API-Key" in c.get("/static/app.js").text
    schema = c.get("/openapi.json", headers={"X-API-Key": KEY}).json()
    assert schema["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    assert "security" in schema["paths"]["/api/search"]["get"] and "security" not in schema["paths"]["/healthz"]["get"]


def test_no_key_configured_leaves_everything_open(client: TestClient, backend: LibraryBackend) -> None:
    for path in keyed_paths(backend):
        assert client.get(path).status_code == 200, path


def test_row7_upload_without_key_is_refused_before_its_body_is_read(
    backend: LibraryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: the streamed body of a 20 MB upload is not consumed before the 401."""
    monkeypatch.setenv("DAER_API_KEY", KEY)
    c = TestClient(create_app(backend=backend))
    sent = []

    def body() -> Iterator[bytes]:
        yield b"--b\r\nContent-Disposition: form-data; name=file; filename=x.obj\r\n\r\n"
        for _ in range(20 * 16):
            sent.append(1)
            yield b"f 1 2 3\n" * 8192  # 64 KiB
        yield b"\r\n--b--\r\n"

    r = c.post("/api/classify", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert "API key" in refused(r, 401)
    assert len(sent) <= 1, f"{len(sent)} chunks of 64 KiB were read before the refusal"


def test_row7_over_a_socket_the_401_comes_before_the_body(
    backend: LibraryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real server: headers announcing 20 MB and 64 KiB of body get the 401 straight away."""
    monkeypatch.setenv("DAER_API_KEY", KEY)
    with serve_thread(create_app(backend=backend)) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            head = (
                f"POST /api/classify HTTP/1.1\r\nHost: {host}\r\nContent-Length: {20 * 2**20}\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
            )
            s.sendall(head.encode() + b"x" * 65536)
            t0 = time.monotonic()
            answer = s.recv(4096)
            assert time.monotonic() - t0 < 5
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"API key" in answer


def test_row7_serve_help_documents_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    from daer.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "DAER_API_KEY" in text and "--api-key-file" in text and "X-API-Key" in text
    args = build_parser().parse_args(["serve", "--index", "idx", "--api-key-file", "key.txt"])
    assert args.api_key_file == "key.txt"
