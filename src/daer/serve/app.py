"""The HTTP service: text-to-3D search, shape renders, word-level explanations and upload-to-classify.

One thin layer over the library (``create_app`` takes an index folder or any :class:`SearchBackend`).
Every refusal is a 4xx whose JSON body is ``{"error": message}``; nothing a client sends is used as a
path; uploads are size-limited below the multipart parser and read by content, not by extension.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import numpy as np
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from daer import __version__
from daer.data.mesh_io import AUTO_UP_HELP, MeshLimits, classify_up, read_up
from daer.errors import BadInputError, DaerError, IntegrityError
from daer.serve.backend import SearchBackend
from daer.serve.cache import RenderCache
from daer.serve.schemas import (
    ClassifyResponse,
    ErrorBody,
    ExplainResponse,
    Health,
    SearchHit,
    SearchResponse,
    ShapeInfo,
    TopPoint,
    WordExplanation,
)
from daer.serve.security import (
    API_KEY_ENV,
    API_KEY_HEADER,
    DEFAULT_MAX_UPLOAD,
    MULTIPART_SLACK,
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    RequestRefused,
    UploadSlotsMiddleware,
    check_shape_id,
    check_upload,
    is_public_path,
    parse_labels,
    redact_access_log,
)
from daer.serve.uploads import SERVICE_LIMITS, UploadReader
from daer.viz.heatmap import splat_radius, top_points, word_heatmaps
from daer.viz.render import render_points

log = logging.getLogger("daer.serve")
STATIC = Path(str(resources.files("daer.serve") / "static"))
_PNG = {"image/png": {}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {400: "bad request", 404: "unknown shape", 422: "invalid parameter"}.items()
}

Q = Annotated[str, Query(min_length=1, max_length=512, description="text query, 1-512 characters")]
ShapeId = Annotated[str, Query(min_length=1, max_length=128, description="shape id")]
Upload = Annotated[UploadFile, File(description="mesh or point file (20 MB at most unless the server says otherwise)")]
UpAxis = Annotated[
    Literal["auto", "x", "y", "z"] | None,
    Form(description=AUTO_UP_HELP),
]
Labels = Annotated[str | None, Form(max_length=8192, description="comma-separated labels (default: the categories)")]


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)  # speed over a few percent of size; renders are cached
    return buf.getvalue()


def _query(q: str) -> str:
    q = q.strip()
    if not q:
        raise RequestRefused(400, "q is blank")
    if any(ord(ch) < 32 for ch in q):
        q = " ".join("".join(" " if ord(ch) < 32 else ch for ch in q).split())
    return q


def _error(status: int, message: str, detail: list[dict] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


def create_app(
    index_dir: str | os.PathLike[str] | None = None,
    *,
    backend: SearchBackend | None = None,
    api_key: str | None = None,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_items: int = 2048,
    classify_slots: int = 2,
    learn: bool = False,
    upload_timeout: float = 30.0,
    upload_memory_mb: int = 1024,
    mesh_limits: MeshLimits = SERVICE_LIMITS,
    log_queries: bool = False,
) -> FastAPI:
    """Build the FastAPI app.

    Args:
        index_dir: an index folder made by ``daer index build`` (its checkpoint and data set are opened).
        backend: use this backend instead of opening ``index_dir``.
        api_key: key required on every endpoint but ``/healthz`` and the page (``/``, ``/static/``), checked
            before a request body is read; default: the ``DAER_API_KEY`` environment variable ("" for none).
        max_upload: largest accepted upload in bytes (20 MB by default).
        cache_dir: optional folder for a persistent render cache.
        cache_items: renders kept in memory.
        classify_slots: uploads decoded and classified at the same time; more are refused with 429.
        learn: let ERS learn success statistics from served queries (when opening ``index_dir``).
        upload_timeout: seconds a worker may take to read one upload (then it is killed and replaced).
        upload_memory_mb: address space a worker may add while reading one upload.
        mesh_limits: vertex, triangle and polygon-size limits checked before an upload is parsed.
        log_queries: keep query strings (search text) in the access log; by default they are redacted.
    """
    if backend is None:
        if index_dir is None:
            raise BadInputError("create_app needs an index folder or a backend")
        from daer.serve.backend import open_backend

        backend = open_backend(index_dir, learn=learn)
    if not log_queries:
        redact_access_log()
    key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV)) or None
    be: SearchBackend = backend
    cache = RenderCache(max_items=cache_items, disk_dir=cache_dir)
    slots = threading.BoundedSemaphore(max(1, classify_slots))
    reader = UploadReader(max(1, classify_slots), upload_timeout, upload_memory_mb, mesh_limits)
    where = str(index_dir) if index_dir is not None else "(in-process backend)"

    app = FastAPI(
        title="daer",
        version=__version__,
        description="Search a 3D shape library by text, see which part each word matched, classify an upload.",
    )
    app.state.backend = be
    app.state.cache = cache
    app.state.uploads = reader
    app.router.on_shutdown.append(reader.close)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=max_upload + MULTIPART_SLACK,
        message=f"request body over the limit: uploads are at most {max_upload} bytes",
    )

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            response.headers.setdefault(
                "Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'"
            )
        return response

    app.add_middleware(
        UploadSlotsMiddleware,
        slots=slots,
        paths=frozenset({"/api/classify"}),
        body_timeout=upload_timeout,
        message="the server is busy classifying other uploads; try again shortly",
        max_bytes=max_upload + MULTIPART_SLACK,
    )  # outside the body limit and the form parser: a refused upload's body is never parsed
    app.add_middleware(ApiKeyMiddleware, key=key)  # added last: the outermost layer, before any body is read
    app.state.api_key_required = key is not None

    @app.exception_handler(RequestRefused)
    async def refused(_: Request, e: RequestRefused) -> JSONResponse:
        return _error(e.status, e.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        detail = [{k: v for k, v in err.items() if k in ("loc", "msg", "type")} for err in e.errors()]
        first = detail[0] if detail else {"loc": (), "msg": "invalid request"}
        where_ = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return _error(422, f"{where_ or 'request'}: {first.get('msg')}", jsonable_encoder(detail))

    @app.exception_handler(IntegrityError)
    async def damaged(_: Request, e: IntegrityError) -> JSONResponse:
        log.error("integrity error: %s", e)
        return _error(500, "the index or data set is damaged; see the server log")

    @app.exception_handler(DaerError)
    async def bad_input(_: Request, e: DaerError) -> JSONResponse:
        return _error(400, str(e))

    @app.exception_handler(Exception)
    async def crashed(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "internal error; see the server log")

    def render_url(shape_id: str) -> str:
        return f"/api/shapes/{quote(shape_id, safe='')}/render.png"

    def known(shape_id: str) -> dict[str, Any]:
        info = be.shape(check_shape_id(shape_id))
        if info is None:
            raise RequestRefused(404, f"no shape with id {shape_id!r}")
        return info

    # ------------------------------------------------------------------ page
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness and what is loaded."""
        return {"status": "ok", "index": where, **be.health()}

    # ------------------------------------------------------------------ search
    @app.get("/api/search", response_model=SearchResponse, responses=_ERRORS, tags=["search"])
    def search(q: Q, k: Annotated[int, Query(ge=1, le=100, description="results, 1-100")] = 10) -> dict[str, Any]:
        """Shapes ranked for a text query."""
        text = _query(q)
        t0 = time.perf_counter()
        found = be.search(text, k)
        ms = (time.perf_counter() - t0) * 1000.0
        hits = []
        for r in found:
            sid = str(r["id"])
            hits.append(
                SearchHit(
                    id=sid,
                    score=float(r["score"]),
                    category=str(r.get("category") or ""),
                    attributes={str(a): str(v) for a, v in (r.get("attributes") or {}).items()},
                    caption=str(r.get("caption") or ""),
                    render_url=render_url(sid),
                )
            )
        return {"query": text, "k": k, "latency_ms": round(ms, 3), "results": hits}

    # ------------------------------------------------------------------ shapes
    @app.get("/api/shapes/{shape_id}", response_model=ShapeInfo, responses=_ERRORS, tags=["shapes"])
    def shape(shape_id: str) -> dict[str, Any]:
        """A shape's category, attributes and captions."""
        info = known(shape_id)
        return {**info, "render_url": render_url(info["id"])}

    @app.get(
        "/api/shapes/{shape_id}/render.png",
        response_class=Response,
        responses={200: {"content": _PNG}, **_ERRORS},
        tags=["shapes"],
    )
    def render(shape_id: str, size: Annotated[int, Query(ge=32, le=512)] = 256) -> Response:
        """A PNG render of a shape (cached)."""
        info = known(shape_id)

        def make() -> bytes:
            pts = be.points(info["id"])
            if pts is None:
                raise RequestRefused(404, f"no shape with id {shape_id!r}")
            return _png(render_points(pts, size=size, point_radius=splat_radius(len(pts), size)))

        data = cache.get(("render", be.identity, info["id"], size), make)
        return Response(data, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})

    # ------------------------------------------------------------------ explain
    @app.get(
        "/api/explain",
        responses={200: {"content": {**_PNG, "application/json": {"schema": ExplainResponse.model_json_schema()}}}}
        | _ERRORS,
        tags=["search"],
    )
    def explain(
        q: Q,
        id: ShapeId,  # noqa: A002 - the documented parameter name
        format: Literal["png", "json"] = "png",  # noqa: A002
        word: Annotated[int | None, Query(ge=0, le=511, description="one word's render (its token index)")] = None,
        top: Annotated[int, Query(ge=1, le=100, description="top points per word (json)")] = 10,
        size: Annotated[int, Query(ge=64, le=384, description="tile size of the png")] = 160,
    ) -> Response:
        """Each word's attention on the shape: a PNG of one heat map per word, or JSON of its top points."""
        text = _query(q)
        info = known(id)
        exp = be.explain(text, info["id"])
        if exp is None:
            raise RequestRefused(404, f"no shape with id {id!r}")
        if word is not None and word >= len(exp.words):
            raise RequestRefused(400, f"word {word} is out of range: the query has {len(exp.words)} tokens")
        base = {"q": text, "id": info["id"]}
        if format == "json":
            weights = np.asarray(exp.token_weights, dtype=np.float64)
            words = []
            for w in top_points(exp.words, exp.point_attention, k=top):
                pts = [
                    TopPoint(index=int(i), xyz=[round(float(c), 5) for c in exp.points[i]], attention=float(a))
                    for i, a in zip(w.top, w.weights, strict=True)
                ]
                url = "/api/explain?" + urlencode({**base, "word": w.index})
                words.append(
                    WordExplanation(
                        index=w.index,
                        word=w.word,
                        peak=w.peak,
                        weight=float(weights[w.index]) if w.index < len(weights) else 0.0,
                        top_points=pts,
                        image_url=url,
                    )
                )
            body = ExplainResponse(
                query=text,
                id=info["id"],
                score=float(exp.score),
                level_scores=[float(s) for s in exp.level_scores],
                words=words,
                image_url="/api/explain?" + urlencode(base),
            )
            return JSONResponse(jsonable_encoder(body))

        def make() -> bytes:
            if word is None:
                image = word_heatmaps(exp.points, exp.words, exp.point_attention, size=size, title=exp.text)
            else:
                image = word_heatmaps(
                    exp.points, [exp.words[word]], exp.point_attention[word : word + 1], size=size, content_only=False
                )
            return _png(image)

        data = cache.get(("explain", be.identity, text, info["id"], word, size), make)
        return Response(data, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})

    # ------------------------------------------------------------------ classify
    @app.post("/api/classify", response_model=ClassifyResponse, responses=_ERRORS, tags=["classify"])
    async def classify(
        file: Upload,
        labels: Labels = None,
        up: UpAxis = None,
    ) -> dict[str, Any]:
        """Zero-shot classify an uploaded mesh or point file."""
        names = parse_labels(labels)  # the request holds an upload slot (UploadSlotsMiddleware)
        data = await file.read(max_upload + 1)
        ext = check_upload(file.filename, data, max_upload, content=False)  # cheap: the rest runs in a worker
        return await run_in_threadpool(
            _classify, be, reader, data, ext, names, file.filename or "upload", max_upload, up
        )

    if key is not None:
        _document_key(app)
    return app


def _document_key(app: FastAPI) -> None:
    """Declare the API key in the OpenAPI schema (every operation but /healthz needs it)."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = make()
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
                "bearer": {"type": "http", "scheme": "bearer"},
            }
            for path, item in schema.get("paths", {}).items():
                for op in item.values():
                    if isinstance(op, dict) and not is_public_path(path):
                        op["security"] = [{"apiKey": []}, {"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _classify(
    be: SearchBackend,
    reader: UploadReader,
    data: bytes,
    ext: str,
    labels: list[str] | None,
    filename: str,
    max_upload: int,
    up: str | None = None,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    up = classify_up(ext, up)
    with tempfile.TemporaryDirectory(prefix="daer-upload-") as tmp:
        path = Path(tmp) / f"upload{ext}"
        path.write_bytes(data)
        points = reader.read(path, ext, be.n_points, max_upload, read_up(up))
    up, ranked = be.classify(points, labels, up)
    return {
        "filename": filename[:200],
        "format": ext[1:],
        "up": up,
        "n_points": int(points.shape[0]),
        "labels": ranked,
        "latency_ms": round((time.perf_counter() - t0) * 1000.0, 3),
    }
