"""Upload slots: a refused upload is answered without reaching the app; a slow body loses its slot."""

from __future__ import annotations

import asyncio
import json
import threading

from daer.serve.security import UploadSlotsMiddleware

PATH = "/api/classify"


def scope(path: str = PATH, method: str = "POST") -> dict:
    return {"type": "http", "method": method, "path": path, "headers": []}


CALLS: list[str] = []


async def read_body_app(scope: dict, receive, send) -> None:
    """A minimal ASGI app that reads its whole body, then answers 200 with its length."""
    CALLS.append(scope["path"])
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def call(mw: UploadSlotsMiddleware, sc: dict, chunks: list[bytes], delay: float = 0.0) -> tuple[list[dict], int]:
    """Run one request through ``mw``; returns the messages sent and how many body reads the app made."""
    sent: list[dict] = []
    reads = 0

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        await asyncio.sleep(delay)
        i = reads - 1
        return {"type": "http.request", "body": chunks[i], "more_body": i < len(chunks) - 1}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(mw(sc, receive, send))
    return sent, reads


def status(sent: list[dict]) -> int:
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def headers(sent: list[dict]) -> dict[bytes, bytes]:
    return dict(next(m["headers"] for m in sent if m["type"] == "http.response.start"))


def test_a_full_house_refuses_without_the_app_and_slots_come_back():
    slots = threading.BoundedSemaphore(1)
    mw = UploadSlotsMiddleware(read_body_app, slots, frozenset({PATH}), body_timeout=5, message="busy", max_bytes=100)
    CALLS.clear()
    sent, reads = call(mw, scope(), [b"ab", b"cd"])
    assert status(sent) == 200 and sent[-1]["body"] == b"4" and reads == 2 and CALLS == [PATH]
    assert slots.acquire(blocking=False)  # released after the answer: the one slot is free again
    # refused: the body is drained unparsed (so the client reads the 429), the app never runs
    sent, reads = call(mw, scope(), [b"x" * 40] * 2)
    assert status(sent) == 429 and reads == 2 and json.loads(sent[-1]["body"]) == {"error": "busy"}
    assert b"connection" not in headers(sent) and CALLS == [PATH]
    # a body over the limit is not drained to its end: the answer closes the connection
    sent, reads = call(mw, scope(), [b"x" * 60] * 10)
    assert status(sent) == 429 and reads == 2 and headers(sent)[b"connection"] == b"close" and CALLS == [PATH]
    sent, reads = call(mw, scope(path="/api/search", method="GET"), [b""])  # other routes are not slotted
    assert status(sent) == 200
    slots.release()


def test_a_body_that_does_not_arrive_in_time_gets_408_and_frees_its_slot():
    slots = threading.BoundedSemaphore(1)
    mw = UploadSlotsMiddleware(
        read_body_app, slots, frozenset({PATH}), body_timeout=0.2, message="busy", max_bytes=10**6
    )
    sent, reads = call(mw, scope(), [b"a"] * 100, delay=0.05)
    assert status(sent) == 408 and 2 <= reads < 100
    assert slots.acquire(blocking=False)
    slots.release()


def test_the_service_holds_an_upload_slot_outside_the_form_parser(backend):
    from daer.serve.app import create_app
    from daer.serve.security import BodyLimitMiddleware

    app = create_app(backend=backend, api_key="", classify_slots=3, upload_timeout=7)
    layers = [m.cls for m in app.user_middleware]  # outermost first
    assert layers.index(UploadSlotsMiddleware) < layers.index(BodyLimitMiddleware)
    mw = next(m for m in app.user_middleware if m.cls is UploadSlotsMiddleware)
    assert mw.kwargs["paths"] == frozenset({PATH}) and mw.kwargs["body_timeout"] == 7
    slots = mw.kwargs["slots"]
    assert all(slots.acquire(blocking=False) for _ in range(3)) and not slots.acquire(blocking=False)
