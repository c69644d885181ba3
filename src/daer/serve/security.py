"""Request checks for the service: shape ids, labels, API key, upload size and upload content.

Nothing here trusts a client: ids must match a strict pattern (and then exist in the index, which is a
dictionary look-up, never a path), uploads are limited in bytes before and while they are read, and
an upload's format is decided from its bytes; the file name's extension only has to agree.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import struct
import threading
import zipfile
from collections.abc import Awaitable, Callable, MutableMapping
from io import BytesIO
from typing import Any

from fastapi import HTTPException

from daer.data.mesh_io import MAX_JSON_DEPTH, OFF_HEADERS, SIGNATURES, json_depth

DEFAULT_MAX_UPLOAD = 20 * 2**20  # bytes
MULTIPART_SLACK = 64 * 2**10  # room for multipart headers and the labels field around the file
API_KEY_ENV = "DAER_API_KEY"
API_KEY_HEADER = "X-API-Key"
PUBLIC_PATHS = frozenset({"/", "/healthz"})
ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,127}$")
MAX_LABELS = 64
MAX_LABEL_CHARS = 64
# Upload formats the service reads. glTF (JSON with external URIs), 3MF and torch files are left out:
# they can refer to other files or carry more machinery than a point cloud needs.
UPLOAD_FORMATS: tuple[str, ...] = (".obj", ".ply", ".stl", ".off", ".glb", ".npy", ".npz", ".xyz", ".txt", ".pts")
_TEXT_POINT_EXTS = (".xyz", ".txt", ".pts")
_NUMBER = re.compile(rb"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class RequestRefused(Exception):
    """A request the service turns down with a 4xx status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_shape_id(shape_id: str) -> str:
    """Refuse ids outside ``[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}`` (so no slash, no '..', no control bytes)."""
    if not ID_PATTERN.match(shape_id) or ".." in shape_id:
        raise RequestRefused(400, f"invalid shape id {shape_id[:80]!r}: use letters, digits and _ . : - (max 128)")
    return shape_id


def parse_labels(raw: str | None) -> list[str] | None:
    """Comma-separated class labels: 1..64 of them, each 1..64 printable characters, duplicates dropped."""
    if raw is None or not raw.strip():
        return None
    labels: list[str] = []
    for part in raw.split(","):
        label = " ".join(part.split())
        if not label:
            continue
        if len(label) > MAX_LABEL_CHARS or not label.isprintable():
            raise RequestRefused(400, f"label {label[:40]!r}...: labels are 1-{MAX_LABEL_CHARS} printable characters")
        if label not in labels:
            labels.append(label)
    if not labels:
        return None
    if len(labels) > MAX_LABELS:
        raise RequestRefused(400, f"{len(labels)} labels given; at most {MAX_LABELS}")
    return labels


def check_api_key(expected: str | None, headers: MutableMapping[str, str] | Any) -> None:
    """Refuse (401) a request without the right key when the service has one.

    The key comes in ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``; compared in constant time.
    """
    if not expected:
        return
    given = headers.get(API_KEY_HEADER.lower()) or headers.get(API_KEY_HEADER) or ""
    auth = headers.get("authorization") or ""
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not given:
        raise RequestRefused(
            401, f"this server needs an API key: send it in the {API_KEY_HEADER} header or as Authorization: Bearer"
        )
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
        raise RequestRefused(401, "wrong API key")


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(head) - 3  # a multi-byte character cut at the end of the sample
    return True


_OBJ_KEYS = frozenset(
    b"v vn vt vp f l p o g s usemtl mtllib cstype deg curv curv2 surf parm end mg bmat step trim hole sp con".split()
)


def _sample_lines(head: bytes) -> list[bytes]:
    """Non-empty, non-comment lines of a text sample; the last one is dropped as possibly cut when there are others."""
    lines = head.splitlines()
    lines = lines[:-1] if len(lines) > 1 else lines
    return [ln.strip() for ln in lines[:200] if ln.strip() and not ln.lstrip().startswith(b"#")]


def _numeric_rows(head: bytes) -> bool:
    """True when the sampled lines are all rows of at least 3 numbers (an XYZ-style point file)."""
    lines = _sample_lines(head)
    return bool(lines) and all(
        len(cells := ln.replace(b",", b" ").split()) >= 3 and all(_NUMBER.match(c) for c in cells[:3]) for ln in lines
    )


def _obj_like(head: bytes) -> bool:
    """True when the sampled lines are OBJ statements and include at least one vertex."""
    keys = [ln.split(None, 1)[0] for ln in _sample_lines(head)]
    return b"v" in keys and all(k in _OBJ_KEYS for k in keys)


def _binary_stl(data: bytes) -> bool:
    return len(data) >= 84 and len(data) == 84 + 50 * struct.unpack("<I", data[80:84])[0]


def _glb_local_only(data: bytes) -> str | None:
    """None when a GLB refers to no outside file, else the reason to refuse it."""
    if len(data) < 20:
        return "truncated GLB header"
    chunk_len, chunk_type = struct.unpack("<II", data[12:20])
    if chunk_type != 0x4E4F534A:
        return "GLB does not start with a JSON chunk"
    raw = data[20 : 20 + chunk_len]
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:  # json.loads would recurse once per level and fail on the recursion limit
        return f"GLB JSON chunk is nested {depth} levels deep; at most {MAX_JSON_DEPTH} levels are read"
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "GLB JSON chunk is not valid JSON"
    if not isinstance(doc, dict):
        return "GLB JSON chunk is not an object"
    for key in ("buffers", "images"):
        for item in doc.get(key) or []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if isinstance(uri, str) and not uri.startswith("data:"):
                return f"GLB refers to an outside file ({key} uri {uri[:60]!r}); upload a self-contained GLB"
    return None


def _npz_ok(data: bytes) -> str | None:
    try:
        with zipfile.ZipFile(BytesIO(data)) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        return f"not a readable zip archive ({e})"
    if not names or not all(n.endswith(".npy") for n in names):
        return "zip archive that is not a NumPy .npz (members other than .npy)"
    return None


def sniff_format(data: bytes) -> str | None:
    """The upload format its bytes show (an extension from ``UPLOAD_FORMATS``), or None when unknown.

    Text point files all report ``.xyz``.
    """
    head = data[:8192]
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    for ext in (".npy", ".npz", ".glb", ".ply"):  # binary signatures, from the loader's one list
        if SIGNATURES[ext][0](head):
            return ext
    if _binary_stl(data):
        return ".stl"
    if not _is_text(head):
        return None
    if stripped[:5].lower() == b"solid":
        return ".stl"
    first = stripped.split(None, 1)[0].upper() if stripped.split() else b""
    if first in OFF_HEADERS:
        return ".off"
    if _obj_like(head):
        return ".obj"
    if _numeric_rows(head):
        return ".xyz"
    return None


def content_problem(data: bytes, ext: str) -> str | None:
    """Why a GLB or NPZ upload is refused (outside references, JSON nesting, non-array members), else None.

    This parses the GLB's JSON chunk, so the service runs it in its upload worker, not on the event loop.
    """
    return _glb_local_only(data) if ext == ".glb" else _npz_ok(data) if ext == ".npz" else None


def check_upload(filename: str | None, data: bytes, max_bytes: int, content: bool = True) -> str:
    """Decide an upload's format from its bytes and check the name agrees; returns the extension to read it as.

    With ``content=False`` only the cheap checks run (size, the first bytes, the name); leave the rest
    to :func:`content_problem`.

    Raises:
        RequestRefused: 413 over ``max_bytes``; 400 empty; 415 unknown content, an unsupported or
            disagreeing extension, or a GLB/NPZ that is not self-contained.
    """
    if len(data) > max_bytes:
        raise RequestRefused(413, f"upload of {len(data)} bytes is over the limit of {max_bytes} bytes")
    if not data:
        raise RequestRefused(400, "empty upload")
    name = (filename or "").strip()
    ext = ("." + name.rsplit(".", 1)[1].lower()) if "." in name else ""
    if ext and ext not in UPLOAD_FORMATS:
        raise RequestRefused(415, f"unsupported file type {ext!r}; send one of {', '.join(UPLOAD_FORMATS)}")
    found = sniff_format(data)
    if found is None:
        raise RequestRefused(415, "the file's content is not a mesh or point format this service reads")
    same = ext == found or (ext in _TEXT_POINT_EXTS and found == ".xyz")
    if ext and not same:
        raise RequestRefused(415, f"file name says {ext} but the content is {found[1:].upper()}")
    reason = content_problem(data, found) if content else None
    if reason:
        raise RequestRefused(415, reason)
    return ext if same and ext else found


class RedactQueryFilter(logging.Filter):
    """Drop the query string from access-log lines (uvicorn's ``client - "METHOD PATH?QUERY HTTP/x" status``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?[redacted]", *args[3:])
        return True


def redact_access_log(logger_name: str = "uvicorn.access") -> None:
    """Keep query strings (search text) out of the access log; idempotent."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactQueryFilter) for f in logger.filters):
        logger.addFilter(RedactQueryFilter())


def is_public_path(path: str) -> bool:
    """Paths served without a key: liveness, the page and its static files (the page's API calls send the key)."""
    return path in PUBLIC_PATHS or path.startswith("/static/")


ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` while a body streams in; an HTTPException so frameworks pass it through as a 413."""

    def __init__(self, message: str) -> None:
        super().__init__(status_code=413, detail=message)


class BodyLimitMiddleware:
    """Refuse (413, JSON) request bodies over ``max_bytes``: early from Content-Length, else while reading.

    Starlette spools multipart files before an endpoint runs, so the limit must sit below it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, message: str | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = message or f"request body over the limit of {max_bytes} bytes"

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _send_json(send, 413, self.message)
            return
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self.message)
            return message

        await _answer_on(_BodyTooLarge, 413, self.message, self.app, scope, limited_receive, send)


class UploadSlotsMiddleware:
    """Hold one of a bounded number of slots for each upload request, from its headers to its answer.

    A request that finds every slot taken is answered 429 without parsing its body (parsing a 20 MB
    multipart body only to refuse it took the event loop from searches: issue 17, row 5). Its body is
    drained unparsed, up to ``max_bytes``, before the answer, because a client still sending when the
    server closes never sees the 429 (measured: every refused upload then read as a dropped connection).
    A body must arrive within ``body_timeout`` seconds (408), so slow senders cannot keep the slots.
    """

    def __init__(
        self,
        app: ASGIApp,
        slots: threading.BoundedSemaphore,
        paths: frozenset[str],
        body_timeout: float,
        message: str,
        max_bytes: int,
    ) -> None:
        self.app, self.slots, self.paths = app, slots, paths
        self.body_timeout, self.message, self.max_bytes = float(body_timeout), message, int(max_bytes)

    async def _drain(self, receive: Callable[[], Awaitable[dict]]) -> bool:
        """Read and drop the body; True when all of it came, within the byte and time limits."""
        deadline, seen = asyncio.get_running_loop().time() + self.body_timeout, 0
        while seen <= self.max_bytes:
            try:
                message = await _receive_by(receive, deadline)
            except _BodyTimeout:
                return False
            if message["type"] != "http.request":
                return False
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return seen <= self.max_bytes
        return False

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        if not self.slots.acquire(blocking=False):
            whole = await self._drain(receive)
            close = [] if whole else [(b"connection", b"close")]
            await _send_json(send, 429, self.message, [(b"retry-after", b"1"), *close])
            return
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        complete = False

        async def timed_receive() -> dict:
            nonlocal complete
            if complete:  # the body is in; later calls wait for a disconnect, without a deadline
                return await receive()
            message = await _receive_by(receive, deadline)
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        late = f"the upload did not arrive within {self.body_timeout:g} s"
        try:
            await _answer_on(_BodyTimeout, 408, late, self.app, scope, timed_receive, send, [(b"connection", b"close")])
        finally:
            self.slots.release()


async def _answer_on(
    error: type[Exception],
    status: int,
    message: str,
    app: ASGIApp,
    scope: dict,
    receive: Callable[[], Awaitable[dict]],
    send: Callable,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Run ``app``; when it raises ``error`` before its answer has started, answer ``status`` with ``message``."""
    started = False

    async def tracking_send(msg: dict) -> None:
        nonlocal started
        started = started or msg["type"] == "http.response.start"
        await send(msg)

    try:
        await app(scope, receive, tracking_send)
    except error:
        if not started:
            await _send_json(send, status, message, extra)


class _BodyTimeout(Exception):
    """The request body did not arrive in time (raised inside the app; answered 408)."""


async def _receive_by(receive: Callable[[], Awaitable[dict]], deadline: float) -> dict:
    """The next ASGI message, or :class:`_BodyTimeout` when it has not come by ``deadline`` (loop time)."""
    left = deadline - asyncio.get_running_loop().time()
    try:
        return await asyncio.wait_for(receive(), timeout=max(left, 0.0))
    except asyncio.TimeoutError:
        raise _BodyTimeout from None


class ApiKeyMiddleware:
    """Refuse (401, JSON) every request but the public paths without the service's key, before its body is read.

    It sits outside every other layer, so an upload without the key is answered from its headers alone;
    with no key configured it passes everything through.
    """

    def __init__(self, app: ASGIApp, key: str | None) -> None:
        self.app = app
        self.key = key or None

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if self.key is None or scope["type"] != "http" or is_public_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            check_api_key(self.key, headers)
        except RequestRefused as e:
            await _send_json(send, e.status, e.message, [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


async def _send_json(send: Callable, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
