"""The HTTP API in process: every endpoint against the library it wraps, and every refusal a JSON 4xx."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from daer.data.mesh_io import UP_ROTATIONS, load_points
from daer.data.shards import iter_records
from daer.models.zeroshot import classify_points, classify_upright
from daer.serve.app import create_app
from daer.serve.backend import LibraryBackend
from daer.serve.cache import RenderCache
from daer.serve.security import check_upload, sniff_format
from daer.viz.heatmap import top_points

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def refused(r, status: int) -> str:
    """Assert a JSON refusal with this status; return its message."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


def npy_bytes(n: int = 400, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(seed).standard_normal((n, 3)).astype(np.float32))
    return buf.getvalue()


TETRA_OBJ = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n"


# ---------------------------------------------------------------------------- health, page, docs
def test_health_page_docs(client: TestClient, backend: LibraryBackend) -> None:
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["shapes"] == len(backend.store) and h["n_points"] == backend.n_points
    page = client.get("/")
    assert page.status_code == 200 and "search-form" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/healthz", "/api/search", "/api/classify", "/api/shapes/{shape_id}", "/api/explain"} <= set(
        schema["paths"]
    )
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------------------- search
def test_search_matches_the_backend(client: TestClient, backend: LibraryBackend, stack: dict[str, Path]) -> None:
    rec = next(iter_records(stack["data"]))
    body = client.get("/api/search", params={"q": rec.captions[0], "k": 7}).json()
    assert body["query"] == rec.captions[0] and body["k"] == 7 and body["latency_ms"] >= 0
    direct = backend.search(rec.captions[0], 7)
    assert [r["id"] for r in body["results"]] == [r["id"] for r in direct]
    assert [r["score"] for r in body["results"]] == pytest.approx([r["score"] for r in direct])
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    for r in body["results"]:
        info = backend.shape(r["id"])
        assert info is not None and r["category"] == info["category"] and r["attributes"] == info["attributes"]
        assert r["caption"] in info["captions"]
        assert client.get(r["render_url"]).content.startswith(PNG_MAGIC)


def test_search_bounds(client: TestClient, backend: LibraryBackend) -> None:
    assert len(client.get("/api/search", params={"q": "x" * 512, "k": 1}).json()["results"]) == 1
    full = client.get("/api/search", params={"q": "a lamp", "k": 100}).json()["results"]
    assert len(full) == min(100, len(backend.store))
    assert "q" in refused(client.get("/api/search", params={"q": "x" * 513}), 422)
    assert "q" in refused(client.get("/api/search", params={"q": ""}), 422)
    assert "blank" in refused(client.get("/api/search", params={"q": "   \t"}), 400)
    assert "q" in refused(client.get("/api/search"), 422)
    for k in ("0", "101", "-1", "abc", "1e3", "99999999999999999999999"):
        assert "k" in refused(client.get("/api/search", params={"q": "chair", "k": k}), 422)
    # control characters are folded to spaces rather than passed on
    assert client.get("/api/search", params={"q": "a\x00chair\nwith legs"}).json()["query"] == "a chair with legs"


# ---------------------------------------------------------------------------- shapes
def test_shape_metadata_is_the_record(client: TestClient, stack: dict[str, Path]) -> None:
    for rec in list(iter_records(stack["data"]))[::9]:
        info = client.get(f"/api/shapes/{rec.id}").json()
        assert info["category"] == rec.category and info["attributes"] == rec.attributes
        assert info["captions"] == rec.captions and info["split"] == rec.split and info["n_points"] == len(rec.points)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/shapes/..%2F..%2Fetc%2Fpasswd", 404),  # decoded to a path the router does not match
        ("/api/shapes/..", 404),  # the client resolves the dot segment: /api/ is no route
        ("/api/shapes/a..b/render.png", 400),
        ("/api/shapes/%00abc", 400),
        ("/api/shapes/" + "a" * 129, 400),
        ("/api/shapes/no-such-shape", 404),
        ("/api/shapes/no-such-shape/render.png", 404),
        ("/api/shapes/%2E%2E/render.png", 400),
        ("/api/shapes/x%5C..%5Cy", 400),
    ],
)
def test_bad_ids(client: TestClient, path: str, status: int) -> None:
    refused(client.get(path), status)


def test_render_and_cache(tmp_path: Path, backend: LibraryBackend, stack: dict[str, Path]) -> None:
    app = create_app(backend=backend, api_key="", cache_dir=tmp_path / "cache")
    c = TestClient(app)
    sid = next(iter_records(stack["data"])).id
    r = c.get(f"/api/shapes/{sid}/render.png", params={"size": 96})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (96, 96)
    assert app.state.cache.stats()["misses"] == 1
    again = c.get(f"/api/shapes/{sid}/render.png", params={"size": 96})
    assert again.content == r.content and app.state.cache.stats()["hits"] == 1
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].read_bytes() == r.content and sid not in files[0].name
    # a fresh app over the same folder reads the render from disk
    app2 = create_app(backend=backend, api_key="", cache_dir=tmp_path / "cache")
    assert TestClient(app2).get(f"/api/shapes/{sid}/render.png", params={"size": 96}).content == r.content
    assert app2.state.cache.stats()["disk_hits"] == 1 and app2.state.cache.stats()["misses"] == 0
    for size in ("8", "2000", "x"):
        refused(c.get(f"/api/shapes/{sid}/render.png", params={"size": size}), 422)


def test_render_cache_lru_bounds() -> None:
    cache = RenderCache(max_items=3, max_bytes=1000)
    made = []
    for i in range(5):
        cache.get(i, lambda i=i: (made.append(i), bytes(100))[1])
    assert len(cache) == 3 and made == [0, 1, 2, 3, 4]
    cache.get(4, lambda: b"never")  # most recent: still there
    cache.get(0, lambda: bytes(100))  # evicted: made again
    assert cache.stats()["misses"] == 6 and cache.stats()["hits"] == 1
    cache.get("big", lambda: bytes(600))
    cache.get("big2", lambda: bytes(600))
    assert cache.stats()["bytes"] <= 1000


# ---------------------------------------------------------------------------- explain
def test_explain_json_matches_the_model(client: TestClient, backend: LibraryBackend, stack: dict[str, Path]) -> None:
    rec = next(iter_records(stack["data"]))
    q = "a chair with three legs, and a high backrest"
    body = client.get("/api/explain", params={"q": q, "id": rec.id, "format": "json", "top": 4}).json()
    exp = backend.model.explain(q, rec.points)
    assert body["score"] == pytest.approx(exp.score, abs=1e-5)
    assert body["level_scores"] == pytest.approx(exp.level_scores.tolist(), abs=1e-5)
    words = [w for w in exp.words if any(ch.isalnum() for ch in w)]
    assert [w["word"] for w in body["words"]] == words  # punctuation left out
    for w, ref in zip(body["words"], top_points(exp.words, exp.point_attention, k=4), strict=True):
        row = exp.point_attention[w["index"]]
        assert len(w["top_points"]) == 4 and w["peak"] == pytest.approx(float(row.max()), rel=1e-5)
        assert {p["index"] for p in w["top_points"]} == set(ref.top.tolist())
        ranked = np.sort(row)[::-1][:4]
        assert [p["attention"] for p in w["top_points"]] == pytest.approx(ranked.tolist(), rel=1e-5)
        p0 = w["top_points"][0]
        assert p0["xyz"] == pytest.approx(exp.points[p0["index"]].tolist(), abs=1e-4)
        img = client.get(w["image_url"])
        assert img.status_code == 200 and img.content.startswith(PNG_MAGIC)
    png = client.get(body["image_url"])
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(png.content)).size[0] >= 160


def test_explain_refusals(client: TestClient, stack: dict[str, Path]) -> None:
    sid = next(iter_records(stack["data"])).id
    refused(client.get("/api/explain", params={"q": "a chair", "id": "nope"}), 404)
    refused(client.get("/api/explain", params={"q": "a chair", "id": "../../x"}), 400)
    refused(client.get("/api/explain", params={"q": "", "id": sid}), 422)
    refused(client.get("/api/explain", params={"q": "a chair"}), 422)
    refused(client.get("/api/explain", params={"q": "a chair", "id": sid, "format": "gif"}), 422)
    assert "out of range" in refused(client.get("/api/explain", params={"q": "a chair", "id": sid, "word": 50}), 400)
    refused(client.get("/api/explain", params={"q": "a chair", "id": sid, "top": 0}), 422)


# ---------------------------------------------------------------------------- classify
def test_classify_matches_the_library(client: TestClient, backend: LibraryBackend, tmp_path: Path) -> None:
    data = npy_bytes()
    r = client.post("/api/classify", files={"file": ("cloud.npy", data)}, data={"labels": "chair, table,car,chair"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["format"] == "npy" and body["n_points"] == backend.n_points and body["filename"] == "cloud.npy"
    (tmp_path / "c.npy").write_bytes(data)
    pts, _ = load_points(tmp_path / "c.npy", n_points=backend.n_points)
    up, ref = classify_upright(backend.model, pts, ["chair", "table", "car"])  # a point file names no up axis
    assert body["up"] == up
    assert [p["label"] for p in body["labels"]] == [p["label"] for p in ref]
    assert [p["prob"] for p in body["labels"]] == pytest.approx([p["prob"] for p in ref], abs=1e-5)
    assert sum(p["prob"] for p in body["labels"]) == pytest.approx(1.0, abs=1e-4)
    # default labels: the data set's categories
    default = client.post("/api/classify", files={"file": ("t.obj", TETRA_OBJ)}).json()
    assert sorted(p["label"] for p in default["labels"]) == backend.labels
    # an up axis named reads the file turned that way, no search
    named = client.post(
        "/api/classify", files={"file": ("cloud.npy", data)}, data={"labels": "chair,table,car", "up": "x"}
    )
    ref = classify_points(backend.model, pts @ UP_ROTATIONS["x"].T, ["chair", "table", "car"])
    assert named.json()["up"] == "x" and [p["label"] for p in named.json()["labels"]] == [p["label"] for p in ref]


@pytest.mark.parametrize(
    ("name", "content", "status", "words"),
    [
        ("x.obj", npy_bytes(), 415, "says .obj but the content is NPY"),
        ("x.npy", TETRA_OBJ, 415, "says .npy but the content is OBJ"),
        ("x.exe", TETRA_OBJ, 415, "unsupported file type"),
        ("x.gltf", b'{"asset": {"version": "2.0"}}', 415, "unsupported file type"),
        ("x.obj", b"\x00\x01garbage" * 50, 415, "not a mesh or point format"),
        ("x.obj", b"", 400, "empty"),
        ("x.xyz", b"1 2 nan\n3 4 5\n", 415, "not a mesh or point format"),
        ("x.xyz", b"1 2 3\n1 2 3\n1 2 3\n", 422, "upload"),  # a single repeated point: degenerate
        ("x.npz", b"PK\x03\x04" + bytes(100), 415, "zip"),
        ("x.ply", b"ply\nformat ascii 1.0\nelement vertex 99\nend_header\n1 2", 422, "upload"),
    ],
)
def test_classify_refusals(client: TestClient, name: str, content: bytes, status: int, words: str) -> None:
    assert words in refused(client.post("/api/classify", files={"file": (name, content)}), status)


def test_glb_with_outside_reference_refused() -> None:
    doc = json.dumps({"asset": {"version": "2.0"}, "buffers": [{"uri": "../../etc/passwd", "byteLength": 10}]})
    chunk = doc.encode() + b" " * (-len(doc) % 4)
    glb = b"glTF" + struct.pack("<II", 2, 20 + len(chunk)) + struct.pack("<II", len(chunk), 0x4E4F534A) + chunk
    assert sniff_format(glb) == ".glb"
    with pytest.raises(Exception, match="outside file"):
        check_upload("m.glb", glb, 10**6)


def test_upload_limits(backend: LibraryBackend) -> None:
    c = TestClient(create_app(backend=backend, api_key="", max_upload=50_000))
    big = npy_bytes(6000)  # 72 kB
    assert "50000" in refused(c.post("/api/classify", files={"file": ("x.npy", big)}), 413)
    refused(c.post("/api/classify", content=b"x" * 200_000, headers={"content-type": "multipart/form-data; b=1"}), 413)

    def chunks():  # no Content-Length: the limit has to hold while the body streams in
        for _ in range(40):
            yield b"y" * 10_000

    refused(c.post("/api/classify", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}), 413)
    assert c.post("/api/classify", files={"file": ("x.npy", npy_bytes(1000))}).status_code == 200
    refused(
        c.post(
            "/api/classify",
            files={"file": ("x.npy", npy_bytes())},
            data={"labels": ",".join(f"l{i}" for i in range(65))},
        ),
        400,
    )
    refused(c.post("/api/classify", files={"file": ("x.npy", npy_bytes())}, data={"labels": "x" * 70}), 400)
    refused(c.post("/api/classify", data={"labels": "a"}), 422)  # no file


def test_api_key(backend: LibraryBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAER_API_KEY", "s3cret")
    c = TestClient(create_app(backend=backend))
    files = {"file": ("t.obj", TETRA_OBJ)}
    assert "API key" in refused(c.post("/api/classify", files=files), 401)
    assert "wrong" in refused(c.post("/api/classify", files=files, headers={"X-API-Key": "nope"}), 401)
    assert c.post("/api/classify", files=files, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert c.post("/api/classify", files=files, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert "API key" in refused(c.get("/api/search", params={"q": "a chair"}), 401)  # GETs need it too (issue 17)


def test_unknown_routes_and_methods_are_json(client: TestClient) -> None:
    refused(client.get("/nothing/here"), 404)
    refused(client.post("/api/search", data={"q": "a"}), 405)
    refused(client.delete("/api/shapes/x"), 405)


# ---------------------------------------------------------------------------- opening an index folder
def test_app_from_an_index_folder(stack: dict[str, Path]) -> None:
    c = TestClient(create_app(stack["index"], api_key=""))
    h = c.get("/healthz").json()
    assert h["method"] == "ers" and h["indexed"] == h["shapes"] == 48 and h["index"] == str(stack["index"])
    assert h["learn"] is False
    results = c.get("/api/search", params={"q": "a table", "k": 5}).json()["results"]
    assert len(results) == 5 and all(c.get(r["render_url"]).status_code == 200 for r in results)
    learning = create_app(stack["index"], api_key="", learn=True)
    c2 = TestClient(learning)
    assert c2.get("/healthz").json()["learn"] is True
    index = learning.state.backend.searcher.index
    before = float(index.root_visits.sum())
    c2.get("/api/search", params={"q": "a table", "k": 5})
    assert float(index.root_visits.sum()) > before  # the served query updated the success statistics


def test_index_with_another_data_set_is_refused(stack: dict[str, Path], tmp_path: Path) -> None:
    from daer.data.build import build_synth
    from daer.errors import IntegrityError
    from daer.serve.backend import open_backend

    build_synth(tmp_path / "other", 10, n_points=256, workers=1, progress=False)
    with pytest.raises(IntegrityError, match="not the indexed data set"):
        open_backend(stack["index"], data_dir=tmp_path / "other")
    with pytest.raises(IntegrityError):
        open_backend(tmp_path / "other")  # a data set folder is not an index


def test_cli_defaults_to_loopback() -> None:
    from daer.cli import build_parser

    args = build_parser().parse_args(["serve", "--index", "idx"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.max_upload_mb == 20.0


def test_a_slow_explanation_does_not_hold_a_search(backend) -> None:
    """Explanations and uploads run on their own model copy and lock: a search answers while one is busy."""
    import threading
    import time

    assert backend.heavy_model is not backend.model
    started = threading.Event()
    original = backend.heavy_model.explain

    def slow_explain(*args, **kwargs):
        started.set()
        time.sleep(2.0)
        return original(*args, **kwargs)

    backend.heavy_model.explain = slow_explain
    try:
        sid = backend.search("a chair", 1)[0]["id"]
        worker = threading.Thread(target=backend.explain, args=("a slow question", sid))
        worker.start()
        assert started.wait(10)
        t0 = time.perf_counter()
        assert backend.search("a chair with four legs", 5)
        assert time.perf_counter() - t0 < 1.5  # not queued behind the 2 s explanation
        worker.join()
    finally:
        del backend.heavy_model.explain


@pytest.mark.parametrize(("argv", "env", "want"), [([], None, 1), (["--threads", "2"], None, 2), ([], "2", 2)])
def test_serve_runs_model_work_on_one_thread_unless_told(stack, monkeypatch, argv, env, want) -> None:
    """Requests run side by side: each on one torch thread (a one-query search is as fast, and does not
    collapse when another request or an upload worker holds a core) unless --threads or DAER_THREADS says."""
    import uvicorn

    from daer.cli import main

    seen = {}
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # configure_threads sets it; monkeypatch puts the old value back
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(threads=torch.get_num_threads()))
    if env is None:
        monkeypatch.delenv("DAER_THREADS", raising=False)
    else:
        monkeypatch.setenv("DAER_THREADS", env)
    before = torch.get_num_threads()
    try:
        assert main(["serve", "--index", str(stack["index"]), *argv]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == {"threads": want}
