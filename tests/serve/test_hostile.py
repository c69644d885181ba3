"""Issue 17's probe of the service under hostile input, one test per row (large inputs are generated here)."""

from __future__ import annotations

import json
import struct

from fastapi.testclient import TestClient

from tests.serve.test_api import refused


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
