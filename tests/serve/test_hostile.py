"""Issue 17's probe of the service under hostile input, one test per row (large inputs are generated here)."""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
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
            answer = b""
            while b"}" not in answer and (chunk := s.recv(4096)):  # headers, then the JSON body
                answer += chunk
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


# ---------------------------------------------------------------------------- rows 2-4
THREE_VERTICES = b"v 0 0 0\nv 1 0 0\nv 0 1 0\n"


@pytest.mark.parametrize(
    ("row", "content", "words"),
    [
        # one face line of 10.47M corners (20 MB, as in the probe): its fan would be 10.47M triangles
        (
            2,
            THREE_VERTICES + b"f" + b" 1 2 3" * 3_490_000 + b"\n",
            "10,470,000 corners in one face, over the limit of 256",
        ),
        # alternating triangles and quads over 4 vertices (20 MB)
        (3, THREE_VERTICES + b"v 0 0 1\n" + b"f 1 2 3\nf 1 2 3 4\n" * 1_100_000, "3,300,000 triangles, over the limit"),
        # 2.5M triangles over 3 vertices (20 MB)
        (4, THREE_VERTICES + b"f 1 2 3\n" * 2_500_000, "2,500,000 triangles, over the limit of 1,000,000"),
    ],
)
def test_rows2_to_4_obj_face_floods_are_refused_before_parsing(
    client: TestClient, row: int, content: bytes, words: str
) -> None:
    assert len(content) < 20 * 2**20
    t0 = time.perf_counter()
    message = refused(client.post("/api/classify", files={"file": ("x.obj", content)}), 413)
    assert words in message and "x.obj" not in message and "upload" in message, message
    assert time.perf_counter() - t0 < 10  # the probe saw 4-14 s and +0.8-3 GB per upload


def test_obj_under_the_limits_is_still_read(client: TestClient) -> None:
    polygon = b"".join(b"v %d %d 0\n" % (i % 16, i // 16) for i in range(256)) + b"v 0 0 1\n"
    fan = b"f " + b" ".join(str(i).encode() for i in range(1, 257)) + b"\nf 1 2 257\n"
    r = client.post("/api/classify", files={"file": ("p.obj", polygon + fan)})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("x.off", b"OFF\n3 5000000 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "5,000,000 faces"),
        ("x.off", b"OFF\n# comment\n9000000 1 0\n0 0 0\n", "9,000,000 vertices"),
        (
            "x.ply",
            b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            b"element face 4000000\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n",
            "4,000,000 faces",
        ),
    ],
)
def test_declared_counts_over_the_limits_are_refused(client: TestClient, name: str, content: bytes, words: str) -> None:
    assert words in refused(client.post("/api/classify", files={"file": (name, content)}), 413)


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def _allocate(mib: int) -> int:
    return len(bytearray(mib << 20))


def test_worker_timeout_and_memory_cap() -> None:
    """The upload worker's limits: an overrun is killed and replaced, an allocation past the cap fails."""
    from daer.data.timed_pool import TaskFailed, TimedPool

    with TimedPool(_sleep, workers=1, timeout=0.5, start_method="fork") as pool:
        out = pool.run(5.0)
        assert isinstance(out, TaskFailed) and out.code == "timeout"
        assert pool.run(0.0) == "slept"  # a fresh worker took the dead one's place
    with TimedPool(_allocate, workers=1, timeout=20, start_method="fork", memory_limit=256 << 20) as pool:
        assert pool.run(64) == 64 << 20
        out = pool.run(2048)
        assert isinstance(out, TaskFailed) and out.code == "too-large" and "256 MiB" in out.reason
        assert pool.run(64) == 64 << 20  # the same worker goes on


def test_upload_reader_refuses_a_slow_read(backend: LibraryBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that overruns the upload timeout is a 422 naming the limit, and the next upload still works."""
    c = TestClient(create_app(backend=backend, api_key="", upload_timeout=0.05))
    slow = THREE_VERTICES + b"f 1 2 3\n" * 400_000  # under every count limit, but not read in 50 ms
    assert "longer than 0.05 s" in refused(c.post("/api/classify", files={"file": ("x.obj", slow)}), 422)
    c.app.state.uploads.timeout = c.app.state.uploads.pool.timeout = 30.0
    assert c.post("/api/classify", files={"file": ("t.obj", TETRA_OBJ)}).status_code == 200


# ---------------------------------------------------------------------------- row 6
def test_row6_served_queries_stay_in_memory(
    stack: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's model gets a memory-only text-feature cache: no query reaches text_features.sqlite."""
    import daer.models.model as model_module
    from daer.models.text_cache import TextFeatureCache

    monkeypatch.setenv("DAER_CACHE_DIR", str(tmp_path / "cache"))
    real, caches = model_module.load_model, []

    def spy(*args: object, **kw: object) -> object:
        caches.append(kw.get("text_cache"))
        return real(*args, **kw)

    monkeypatch.setattr(model_module, "load_model", spy)
    c = TestClient(create_app(stack["index"], api_key=""))
    assert c.get("/api/search", params={"q": "a private query about a red chair"}).status_code == 200
    assert caches and all(isinstance(x, TextFeatureCache) and x.path is None for x in caches), caches
    assert not (tmp_path / "cache").exists()
    cache = caches[0]
    key = "k" * 64
    cache.put_many({key: (np.arange(3, dtype=np.int32), np.zeros((3, 4), dtype=np.float16))})
    assert key in cache.get_many([key]) and not (tmp_path / "cache").exists()


def test_row6_access_log_redacts_query_strings(backend: LibraryBackend, caplog: pytest.LogCaptureFixture) -> None:
    create_app(backend=backend, api_key="")
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    access = logging.getLogger("uvicorn.access")
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/api/search?q=my+secret+words&k=5", "1.1", 200)
    line = caplog.records[-1].getMessage()
    assert "/api/search?[redacted]" in line and "secret" not in line


# ---------------------------------------------------------------------------- messages
def test_refusals_name_the_problem_not_an_exception_class(client: TestClient) -> None:
    quad = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3 4\n"  # a face with a fourth vertex that does not exist
    message = refused(client.post("/api/classify", files={"file": ("q.obj", quad)}), 422)
    assert "refers to data that is not in the file" in message and "Error" not in message, message


def test_classify_reads_the_named_up_axis(client: TestClient, tmp_path) -> None:
    """The reader turns the file's up axis to +z (glTF/GLB by their specification, others when told)."""
    import numpy as np
    import trimesh

    tall = tmp_path / "tall.obj"
    tall.write_text(trimesh.creation.box(extents=(0.5, 2.0, 0.25)).export(file_type="obj"))
    reader = client.app.state.uploads
    extent = {up: np.ptp(reader.read(tall, ".obj", 512, 10**6, up), axis=0) for up in (None, "y")}
    assert extent[None].argmax() == 1 and extent["y"].argmax() == 2
    data = tall.read_bytes()
    assert client.post("/api/classify", files={"file": ("t.obj", data)}, data={"up": "y"}).status_code == 200
    assert client.post("/api/classify", files={"file": ("t.obj", data)}, data={"up": "w"}).status_code == 422
