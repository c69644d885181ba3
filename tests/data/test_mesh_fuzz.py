"""Fuzz load_points: random bytes (and half-valid files) under every extension either give finite
unit-sphere points or a BadInputError; never another exception, never a hang."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daer.data.mesh_io import SUPPORTED_EXTS, load_points
from daer.errors import BadInputError

EXTS = [*SUPPORTED_EXTS, ".fbx", ""]
HEADERS = {  # a valid start, so the parser gets past its magic check and chews on the rest
    ".ply": [b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
             b"element face 1\nproperty list uchar int vertex_indices\nend_header\n",
             b"ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
             b"property float z\nend_header\n"],
    ".off": [b"OFF\n3 1 0\n", b"OFF\n"],
    ".obj": [b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf ", b"v "],
    ".glb": [b"glTF\x02\x00\x00\x00"],
    ".gltf": [b'{"asset": {"version": "2.0"}, "meshes": ', b'{"asset": {"version": "2.0"}, "buffers": [{"uri": "'],
    ".stl": [b"solid x\nfacet normal 0 0 1\nouter loop\nvertex ", b"\x00" * 80 + b"\x02\x00\x00\x00"],
    ".npy": [b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }" + b" " * 59 + b"\n",
             b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (), }" + b" " * 64 + b"\n"],
    ".xyz": [b"0 0 0\n1 1 1\n"],
}  # fmt: skip
SETTINGS = settings(max_examples=120, deadline=5000, suppress_health_check=[HealthCheck.too_slow], database=None)
_DIR = Path(tempfile.mkdtemp(prefix="daer-fuzz-"))


def _check(data: bytes, ext: str) -> None:
    path = _DIR / f"f{ext}"
    path.write_bytes(data)
    try:
        points, normals = load_points(path, n_points=32, rng=np.random.default_rng(0), max_bytes=1 << 20)
    except BadInputError:
        return
    assert points.shape == (32, 3) and np.isfinite(points).all()
    assert np.linalg.norm(points, axis=1).max() == pytest.approx(1.0, abs=1e-4)
    assert normals is None or (normals.shape == (32, 3) and np.isfinite(normals).all())


@pytest.mark.timeout(120)
@SETTINGS
@given(data=st.binary(max_size=1024), ext=st.sampled_from(EXTS))
def test_random_bytes_any_extension(data: bytes, ext: str) -> None:
    _check(data, ext)


@pytest.mark.timeout(120)
@SETTINGS
@given(ext=st.sampled_from(sorted(HEADERS)), which=st.integers(0, 1), tail=st.binary(max_size=512))
def test_valid_header_random_body(ext: str, which: int, tail: bytes) -> None:
    heads = HEADERS[ext]
    _check(heads[which % len(heads)] + tail, ext)


_NUM = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.integers(-5, 5).map(str),
    st.sampled_from(["1e308", "-1e308", "1e-320", "nan", "", "x", "0x10"]),
)


@pytest.mark.timeout(120)
@SETTINGS
@example(verts=[("0.0", "0.0", "1e308")], faces=[], ext=".obj")  # once overflowed to NaN points
@example(
    verts=[("0", "0", "0"), ("0", "1", "0"), ("1", "0", "0"), ("0", "0", "")], faces=[["0", "2", "-2"]], ext=".obj"
)
@given(
    verts=st.lists(st.tuples(_NUM, _NUM, _NUM), max_size=8),
    faces=st.lists(st.lists(st.integers(-3, 10).map(str), min_size=1, max_size=5), max_size=6),
    ext=st.sampled_from([".obj", ".off", ".xyz"]),
)
def test_text_meshes_with_hostile_numbers(verts, faces, ext: str) -> None:
    if ext == ".obj":
        text = "".join(f"v {x} {y} {z}\n" for x, y, z in verts) + "".join(f"f {' '.join(f)}\n" for f in faces)
    elif ext == ".off":
        body = "".join(f"{x} {y} {z}\n" for x, y, z in verts) + "".join(f"{len(f)} {' '.join(f)}\n" for f in faces)
        text = f"OFF\n{len(verts)} {len(faces)} 0\n" + body
    else:
        text = "".join(f"{x} {y} {z}\n" for x, y, z in verts)
    _check(text.encode(), ext)
