"""Load a mesh or point file as a normalised point cloud, rejecting bad input with a clear reason.

Meshes go through trimesh (OBJ, PLY, STL, OFF, GLB/GLTF with scenes flattened by their transforms,
3MF when trimesh's optional readers are installed) and are sampled area-weighted; point files
(``.npy``, ``.npz``, ``.xyz``/``.txt``/``.pts``, ``.pt``, PLY point clouds) are resampled. Every
result is centred and scaled to the unit sphere, and turned so that the file's up axis becomes +z
(daer's convention, as in Align3D-Synth): glTF/GLB files are +y up by their specification, every other
format is taken as +z up unless the caller names its up axis (ShapeNet's OBJ files, for one, are +y up).
Every failure is a :class:`BadFileError` (a
``BadInputError``) whose ``code`` names the kind of failure, so importers can count them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import pickle
import re
import stat
import struct
import urllib.parse
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from daer.data.sampling import normalize_unit_sphere, resample_points, sample_surface
from daer.errors import BadInputError

MESH_EXTS: tuple[str, ...] = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf", ".3mf")
POINT_EXTS: tuple[str, ...] = (".npy", ".npz", ".xyz", ".txt", ".pts", ".pt")
SUPPORTED_EXTS: tuple[str, ...] = MESH_EXTS + POINT_EXTS
DEFAULT_MAX_BYTES = 256 * 2**20
Y_UP_EXTS: tuple[str, ...] = (".glb", ".gltf")  # +y up by the glTF 2.0 specification (front +z)
# Proper rotations taking each up axis to +z: "y" maps glTF's front (+z) to daer's front (-y).
UP_HELP = (
    "the file's up axis (default: y for glTF/GLB, as their specification says, and for the modelnet40-h5, "
    "scanobjectnn-h5 and text2shape formats; z otherwise)"
)
AUTO_UP = "auto"  # ask the model: each axis tried as up (daer.models.zeroshot.classify_upright, vote_up)
AUTO_UP_HELP = (
    "the file's up axis; auto (the default, except for glTF/GLB, which are y up by their specification) "
    "tries x, y and z and keeps the turn whose best label scores highest"
)
UP_ROTATIONS: dict[str, np.ndarray] = {
    "z": np.eye(3, dtype=np.float32),
    "y": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float32),
    "x": np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=np.float32),
}
_POINT_KEYS = ("xyz", "points", "pos", "coords", "data")
OFF_HEADERS = (b"OFF", b"COFF", b"NOFF", b"CNOFF", b"STOFF", b"4OFF", b"NCOFF")
MAX_JSON_DEPTH = 64  # glTF nests about 6 levels; ``extras`` may add some, a parser's recursion limit is ~1000
_BLANKS = bytes.maketrans(b"\t\r\f\v", b"    ")
_INDENT = re.compile(rb"\n +")
_NOT_FACE_LINE = re.compile(rb"\n(?!f)[^\n]*")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


@dataclass(frozen=True)
class MeshLimits:
    """What a mesh file may declare, checked by a cheap pre-scan of its bytes before any parser runs.

    A few bytes of OBJ text (``f 1 2 3``) cost a parser hundreds of bytes each, so the byte limit alone
    does not bound memory; these do.

    Attributes:
        max_vertices: vertex records (OBJ ``v`` lines, OFF and PLY vertex counts).
        max_triangles: triangles after polygons are split into fans (OBJ), or faces (OFF, PLY).
        max_face_corners: corners of one polygon.
    """

    max_vertices: int = 50_000_000
    max_triangles: int = 50_000_000
    max_face_corners: int = 65_536


DEFAULT_LIMITS = MeshLimits()


class BadFileError(BadInputError):
    """A file that cannot become a point cloud.

    Attributes:
        code: short machine-readable kind ("missing", "empty", "too-large", "unsupported", "unreadable",
            "non-finite", "degenerate", "no-geometry", "not-a-file").
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def load_points(
    path: str | os.PathLike[str],
    n_points: int = 2048,
    rng: np.random.Generator | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    limits: MeshLimits = DEFAULT_LIMITS,
    up: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a mesh or point file and return ``n_points`` points on the unit sphere, +z up.

    Args:
        path: the file; its extension picks the reader, its first bytes are checked against it.
        n_points: points to return (>= 1).
        rng: sampling randomness; a fixed default seed when None.
        max_bytes: files larger than this are refused before reading.
        limits: vertex, triangle and polygon-size limits a mesh is held to before it is parsed.
        up: the file's up axis, "x", "y" or "z"; None for the format's own (see :func:`up_axis`).

    Returns:
        points (n_points, 3) float32 centred and scaled so the farthest point has norm 1, and unit
        normals (n_points, 3) float32 for meshes (None for point files).

    Raises:
        BadFileError: missing, empty, oversize, unsupported, unreadable, non-finite or degenerate input.
    """
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    path = Path(path)
    rng = np.random.default_rng(0) if rng is None else rng
    ext = _check_file(path, max_bytes)
    turn = UP_ROTATIONS[up_axis(ext, up)]
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # hostile files make trimesh and NumPy warn; the reason is raised instead
            if ext in MESH_EXTS:
                points, normals = _load_mesh_points(path, ext, n_points, rng, max_bytes, limits)
            else:
                points, normals = normalize_cloud(_read_point_file(path, ext, max_bytes), n_points, rng), None
        # the contract, checked last so that no reader quirk can leak a malformed cloud
        if points.shape != (n_points, 3) or not np.isfinite(points).all():
            raise BadFileError("unreadable", f"produced points of shape {points.shape} or non-finite values")
        if normals is not None and (normals.shape != points.shape or not np.isfinite(normals).all()):
            normals = None
        return points @ turn.T, None if normals is None else normals @ turn.T
    except BadFileError as e:
        if str(e).startswith(path.name):
            raise
        raise BadFileError(e.code, f"{path.name}: {e}") from None
    except BadInputError as e:
        raise BadFileError("degenerate", f"{path.name}: {e}") from e
    except FileNotFoundError as e:
        raise BadFileError("unreadable", f"{path.name}: a file it refers to is missing: {e}") from e
    except ModuleNotFoundError as e:
        raise BadFileError("unsupported", f"{path.name}: reading it needs the optional package {e.name}") from e
    except MemoryError:
        raise BadFileError("too-large", f"{path.name}: reading it needs more memory than is allowed") from None
    except Exception as e:  # any parser failure on hostile bytes is a bad file, not a crash
        raise BadFileError("unreadable", f"{path.name}: cannot read as {ext[1:]}: {_describe(e)}") from e


def up_axis(ext: str, up: str | None = None) -> str:
    """The up axis of a file with extension ``ext``: ``up`` when given, else "y" for glTF/GLB, else "z"."""
    if up is None:
        return "y" if ext.lower() in Y_UP_EXTS else "z"
    if up not in UP_ROTATIONS:
        raise BadInputError(f"up axis must be one of {sorted(UP_ROTATIONS)}, got {up!r}")
    return up


def classify_up(ext: str, up: str | None = None) -> str:
    """The up axis to classify a file with: ``up`` when given, "y" for glTF/GLB, else :data:`AUTO_UP`."""
    if up is None:
        return "y" if ext.lower() in Y_UP_EXTS else AUTO_UP
    return up if up == AUTO_UP else up_axis(ext, up)


def read_up(up: str) -> str:
    """The axis to read a file with for a classification axis ``up``: for auto, the file's own axes (z)."""
    return "z" if up == AUTO_UP else up


def _describe(e: Exception) -> str:
    """A parser's failure in words for the user: its message, never its exception class (kept in the chain)."""
    msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    if isinstance(e, IndexError):
        return "a face or record refers to data that is not in the file" + (f" ({msg})" if msg else "")
    if isinstance(e, KeyError):
        return f"a required field is missing ({msg})" if msg else "a required field is missing"
    if isinstance(e, RecursionError):
        return "it is nested too deeply"
    return msg or "its structure is inconsistent"


def _check_file(path: Path, max_bytes: int) -> str:
    """Cheap checks before any parsing: existence, kind, size, extension, magic bytes. Returns the extension."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadFileError("missing", f"{path}: file not found") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        raise BadFileError("missing", f"{path}: cannot open: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadFileError("not-a-file", f"{path}: not a regular file")
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTS:
        raise BadFileError("unsupported", f"{path.name}: unsupported extension {ext or '(none)'!r}")
    if ext == ".3mf" and "3mf" not in trimesh.available_formats():
        raise BadFileError("unsupported", f"{path.name}: 3MF needs trimesh's optional readers (lxml, networkx)")
    if st.st_size == 0:
        raise BadFileError("empty", f"{path.name}: empty file")
    if st.st_size > max_bytes:
        raise BadFileError("too-large", f"{path.name}: {st.st_size} bytes is over the limit of {max_bytes}")
    with open(path, "rb") as f:
        head = f.read(4096)
    _check_magic(path.name, ext, head)
    return ext


def _text_start(head: bytes) -> bytes:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")


def _off_header(head: bytes) -> bool:
    stripped = _text_start(head)
    return any(stripped.upper().startswith(h) for h in OFF_HEADERS) or stripped.startswith(b"#")


# The one list of file signatures: extension -> (does the first bytes' content fit, what was expected).
# Mesh loading checks a file against its extension; the service sniffs an upload's format with it.
SIGNATURES: dict[str, tuple[Callable[[bytes], bool], str]] = {
    ".npy": (lambda h: h.startswith(b"\x93NUMPY"), "a NumPy header"),
    ".npz": (lambda h: h.startswith(b"PK"), "a zip header"),
    ".glb": (lambda h: h.startswith(b"glTF"), "a binary glTF 'glTF' header"),
    ".ply": (lambda h: h.startswith(b"ply"), "a 'ply' header"),
    ".pt": (lambda h: h.startswith(b"PK"), "a zip header (torch.save format)"),
    ".3mf": (lambda h: h.startswith(b"PK"), "a zip header"),
    ".gltf": (lambda h: _text_start(h).startswith(b"{"), "a JSON object"),
    ".off": (_off_header, "'OFF'"),
}


def _check_magic(name: str, ext: str, head: bytes) -> None:
    """Refuse content that cannot be what its extension says (cheap: the first 4 KiB only)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) and ext in (".obj", ".off"):
        head = head.decode("utf-16", errors="replace").encode("utf-8")
    if ext in SIGNATURES and not SIGNATURES[ext][0](head):
        raise BadFileError("unreadable", f"{name}: not a {ext[1:].upper()} file (expected {SIGNATURES[ext][1]})")
    if ext in (".obj", ".xyz", ".txt", ".pts", ".off", ".gltf") and b"\x00" in head:
        raise BadFileError("unreadable", f"{name}: binary bytes in a text {ext[1:].upper()} file")


def json_depth(raw: bytes, chunk: int = 1 << 20) -> int:
    """Deepest nesting of arrays and objects in JSON text, found without parsing it (so without recursion).

    Strings are blanked first, so brackets inside them do not count; an unterminated string leaves its
    brackets counted, which can only overstate the depth of text that is not valid JSON anyway.
    """
    bare = _JSON_STRING.sub(b"0", raw)
    deepest = depth = 0
    for start in range(0, len(bare), chunk):
        a = np.frombuffer(bare, dtype=np.uint8, count=min(chunk, len(bare) - start), offset=start)
        step = (a == 0x5B).astype(np.int64) + (a == 0x7B) - (a == 0x5D) - (a == 0x7D)  # [ { ] }
        run = np.cumsum(step) + depth
        deepest, depth = max(deepest, int(run.max())), int(run[-1])
    return deepest


def check_json_depth(name: str, raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse (``BadFileError`` "too-large") JSON nested deeper than ``max_depth``, before any parser sees it."""
    depth = json_depth(raw)
    if depth > max_depth:
        raise BadFileError(
            "too-large", f"{name}: its JSON is nested {depth} levels deep; at most {max_depth} levels are read"
        )


def obj_counts(raw: bytes, chunk: int = 1 << 21) -> tuple[int, int, int, int]:
    """``(vertices, faces, triangles, most corners of one face)`` of OBJ text, counted without parsing it.

    Counts what trimesh's reader would see (backslash continuations joined, indented lines included so
    as to err on the high side): ``v`` lines, ``f`` lines, the triangles of their fans (a face of
    ``c`` corners gives ``c - 2``) and the largest ``c``. Runs in C and NumPy, in bounded memory.
    """
    text = b"\n" + raw.replace(b"\r\n", b"\n").replace(b"\\\n", b"").translate(_BLANKS) + b"\n"
    text = _INDENT.sub(b"\n", text)
    vertices = text.count(b"\nv ")
    faces_text = _NOT_FACE_LINE.sub(b"", text)[1:] + b"\n"  # "f ...\nf ...\n": only the face lines are left
    del text
    if faces_text == b"\n":
        return vertices, 0, 0, 0
    n_faces = triangles = most = carry = 0  # carry: corners of a line that goes on in the next chunk
    after_space = False
    for start in range(0, len(faces_text), chunk):  # fixed-size chunks: one huge line costs no more memory
        a = np.frombuffer(faces_text, dtype=np.uint8, count=min(chunk, len(faces_text) - start), offset=start)
        space = a == 32
        prev = np.concatenate(([after_space], space[:-1]))
        counted = np.cumsum(prev & ~space & (a != 10), dtype=np.int64)  # tokens after a space: not the "f"
        ends = np.flatnonzero(a == 10)
        if len(ends):
            at = counted[ends]
            corners = np.diff(at, prepend=0)
            corners[0] += carry
            n_faces += len(corners)
            triangles += int(np.maximum(corners - 2, 0).sum())
            most = max(most, int(corners.max()))
            carry = int(counted[-1] - at[-1])
        else:
            carry += int(counted[-1])
        after_space = bool(space[-1])
    return vertices, n_faces, triangles, most


def _header_counts(path: Path, ext: str) -> tuple[int, int] | None:
    """Declared ``(vertices, faces)`` of an OFF or PLY header, or None when it cannot be read from the header."""
    with open(path, "rb") as f:
        head = f.read(65536)
    if ext == ".ply":
        end = head.find(b"end_header")
        counts = dict(re.findall(rb"(?m)^element[ \t]+(\w+)[ \t]+(\d+)", head[: end if end >= 0 else None]))
        return int(counts.get(b"vertex", 0)), int(counts.get(b"face", 0))
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        head = head.decode("utf-16", errors="replace").encode("utf-8")
    lines = [ln.split(b"#", 1)[0].split() for ln in head.lstrip(b"\xef\xbb\xbf").splitlines()]
    tokens = [t for ln in lines for t in ln][:8]
    if tokens and tokens[0].upper().endswith(b"OFF"):
        tokens = tokens[1:] if tokens[0].upper() in OFF_HEADERS else tokens
        with contextlib.suppress(ValueError, IndexError):
            return int(tokens[0]), int(tokens[1])
    return None


def check_mesh_limits(path: str | os.PathLike[str], ext: str, limits: MeshLimits = DEFAULT_LIMITS) -> None:
    """Refuse (``BadFileError`` "too-large") a mesh file whose counts exceed ``limits``, before parsing it.

    OBJ text is counted; OFF and PLY are held to the counts their headers declare (their parsers read
    that many records or fail); STL and GLB are bounded by their byte size.
    """
    path = Path(path)
    if ext == ".obj":
        raw = path.read_bytes()
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raw = raw.decode("utf-16", errors="replace").encode("utf-8")
        vertices, _, triangles, most = obj_counts(raw)
    elif ext in (".off", ".ply"):
        counts = _header_counts(path, ext)
        if counts is None:
            return
        (vertices, triangles), most = counts, 0
    else:
        return
    checks = (
        (most, limits.max_face_corners, "corners in one face"),
        (vertices, limits.max_vertices, "vertices"),
        (triangles, limits.max_triangles, "triangles" if ext == ".obj" else "faces"),
    )
    for count, limit, what in checks:
        if count > limit:
            raise BadFileError("too-large", f"{path.name}: {count:,} {what}, over the limit of {limit:,}")


def _check_gltf(path: Path, ext: str, max_bytes: int) -> None:
    """Refuse glTF 1.0 and required extensions trimesh cannot decode, with a reason rather than zeros."""
    with open(path, "rb") as f:
        if ext == ".glb":
            header = f.read(20)
            if len(header) < 20:
                raise BadFileError("unreadable", f"{path.name}: truncated GLB header")
            version, _, chunk_len, chunk_type = struct.unpack("<4xIIII", header)
            if version != 2:
                raise BadFileError("unsupported", f"{path.name}: binary glTF version {version} (only glTF 2 is read)")
            if chunk_type != 0x4E4F534A:  # "JSON"
                raise BadFileError("unreadable", f"{path.name}: GLB does not start with a JSON chunk")
            raw = f.read(chunk_len)
        else:
            raw = f.read()
    check_json_depth(path.name, raw)
    doc = json.loads(raw.decode("utf-8-sig"))
    if not isinstance(doc, dict):
        raise BadFileError("unreadable", f"{path.name}: glTF JSON is not an object")
    version = str((doc.get("asset") or {}).get("version", "")) if isinstance(doc.get("asset"), dict) else ""
    if not version.startswith("2"):
        raise BadFileError("unsupported", f"{path.name}: glTF version {version or '(none)'!r} (only glTF 2 is read)")
    external = 0
    for buf in doc.get("buffers") or []:
        uri = buf.get("uri") if isinstance(buf, dict) else None
        if isinstance(uri, str) and not uri.startswith("data:"):
            with contextlib.suppress(OSError, ValueError):
                external += (path.parent / urllib.parse.unquote(uri)).stat().st_size
    if external > max_bytes:
        raise BadFileError("too-large", f"{path.name}: its buffers hold {external} bytes, over the limit {max_bytes}")
    required = doc.get("extensionsRequired") or []
    if isinstance(required, list) and "KHR_draco_mesh_compression" in required and not _has_module("DracoPy"):
        raise BadFileError("unsupported", f"{path.name}: Draco-compressed glTF needs the DracoPy package")


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _is_binary_stl(path: Path) -> bool:
    """True when the file's size is exactly what its binary STL triangle count says."""
    if path.suffix.lower() != ".stl":
        return False
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(80)
        count = f.read(4)
    return len(count) == 4 and size == 84 + 50 * struct.unpack("<I", count)[0]


def _check_stl(path: Path) -> None:
    """Binary STL must match its triangle count; anything else must be ASCII STL ('solid ...')."""
    if _is_binary_stl(path):
        return
    with open(path, "rb") as f:
        head = f.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head[:5].lower() == b"solid":
        raise BadFileError(
            "unreadable", f"{path.name}: neither binary STL (size does not match its triangle count) nor ASCII STL"
        )


def _text_source(path: Path) -> str | io.BytesIO:
    """OBJ/OFF/ASCII-STL text re-encoded as UTF-8 when it is UTF-16 (with a BOM) or a legacy 8-bit encoding."""
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return io.BytesIO(raw.decode("utf-16").encode("utf-8"))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return io.BytesIO(raw.decode("latin-1").encode("utf-8"))  # e.g. material names in cp1252
    return str(path)


def _load_mesh_points(
    path: Path, ext: str, n: int, rng: np.random.Generator, max_bytes: int, limits: MeshLimits = DEFAULT_LIMITS
) -> tuple[np.ndarray, np.ndarray | None]:
    check_mesh_limits(path, ext, limits)
    if ext in (".gltf", ".glb"):
        _check_gltf(path, ext, max_bytes)
    if ext == ".stl":
        _check_stl(path)
    source = _text_source(path) if ext in (".obj", ".off", ".stl") and not _is_binary_stl(path) else str(path)
    kwargs = {"skip_materials": True} if ext in (".obj", ".ply", ".glb", ".gltf") else {}
    scene = trimesh.load_scene(source, file_type=ext[1:], process=False, **kwargs)
    meshes: list[trimesh.Trimesh] = []
    clouds: list[np.ndarray] = []
    for geom in scene.dump(concatenate=False):  # transforms applied: the scene is flattened
        if isinstance(geom, trimesh.Trimesh):
            if len(geom.faces):
                meshes.append(geom)
            elif len(geom.vertices):
                clouds.append(np.asarray(geom.vertices, dtype=np.float64))
        elif isinstance(geom, trimesh.PointCloud) and len(geom.vertices):
            clouds.append(np.asarray(geom.vertices, dtype=np.float64))
    if not meshes and not clouds:
        raise BadFileError(
            "no-geometry",
            f"{path.name}: no triangles or points in the file (lines and unsupported primitives are ignored)",
        )
    if meshes:
        mesh = _combine(path.name, meshes)
        if mesh is not None:
            points, normals = sample_surface(mesh, n, rng)
            points = _normalize_sample(points, np.asarray(mesh.vertices)[mesh.faces.ravel()])
            normals = normals if np.isfinite(normals).all() else None
            return points, normals
        if not clouds:
            raise BadFileError("degenerate", f"{path.name}: zero surface area (every triangle is degenerate)")
    return normalize_cloud(np.concatenate(clouds), n, rng), None


def _combine(name: str, meshes: list[trimesh.Trimesh]) -> trimesh.Trimesh | None:
    """One mesh pre-normalised to the unit sphere (so areas cannot overflow); None when it has no area."""
    verts, faces, offset = [], [], 0
    for m in meshes:
        v = np.asarray(m.vertices, dtype=np.float64)
        f = np.asarray(m.faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3:
            raise BadFileError("unreadable", f"{name}: vertices must have 3 coordinates, got shape {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or f.min() < 0 or f.max() >= len(v):
            raise BadFileError("unreadable", f"{name}: a face refers to a vertex that does not exist")
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    vertices = np.concatenate(verts)
    faces_all = np.concatenate(faces)
    used = vertices[np.unique(faces_all)]
    if not np.isfinite(used).all():
        raise BadFileError("non-finite", f"{name}: vertices with NaN or infinite coordinates")
    scale = float(np.abs(used).max())
    if scale == 0.0:
        return None
    used, vertices = used / scale, vertices / scale  # |x| <= 1 first: centre and radius cannot overflow
    centre = (used.min(axis=0) + used.max(axis=0)) / 2.0
    radius = float(np.linalg.norm(used - centre, axis=1).max())
    if radius <= 1e-9:
        return None
    mesh = trimesh.Trimesh(vertices=(vertices - centre) / radius, faces=faces_all, process=False, validate=False)
    area = float(mesh.area_faces.sum())
    return mesh if np.isfinite(area) and area > 1e-12 else None


def _normalize_sample(sample: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Normalise the sample itself; a tiny sample that collapses to a point keeps the full geometry's frame."""
    sample = np.asarray(sample, dtype=np.float64)
    spread = float(np.linalg.norm(sample - sample.mean(axis=0), axis=1).max())
    if spread > 1e-9:  # the geometry was already brought to unit scale, so this is a real spread
        return normalize_unit_sphere(sample)
    full = np.asarray(full, dtype=np.float64)
    centre = (full.min(axis=0) + full.max(axis=0)) / 2.0
    radius = float(np.linalg.norm(full - centre, axis=1).max())
    return ((sample - centre) / radius).astype(np.float32)


def normalize_cloud(points: np.ndarray, n_points: int, rng: np.random.Generator) -> np.ndarray:
    """Validate a raw (N, 3+) cloud (extra columns dropped), resample it to ``n_points`` and normalise.

    Returns:
        (n_points, 3) float32 on the unit sphere.

    Raises:
        BadFileError: wrong shape or type ("unreadable"), no points ("no-geometry"), NaN/inf
            ("non-finite"), all points coinciding ("degenerate").
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise BadFileError("unreadable", f"expected (N, 3) points, got shape {points.shape}")
    if len(points) == 0:
        raise BadFileError("no-geometry", "no points")
    if not np.issubdtype(points.dtype, np.number) or np.iscomplexobj(points):
        raise BadFileError("unreadable", f"points of type {points.dtype} are not real numbers")
    points = points[:, :3].astype(np.float64)
    if not np.isfinite(points).all():
        raise BadFileError("non-finite", "points with NaN or infinite coordinates")
    scale = float(np.abs(points).max())
    try:
        full = normalize_unit_sphere(points / scale if scale > 0 else points)  # |x| <= 1 first: no overflow
    except BadInputError as e:
        raise BadFileError("degenerate", f"single-point geometry ({e})") from None
    return _normalize_sample(resample_points(full, n_points, rng), full)


def _read_point_file(path: Path, ext: str, max_bytes: int) -> np.ndarray:
    """The (N, 3) coordinates of a point file (extra columns such as colours or normals dropped)."""
    if ext in (".xyz", ".txt", ".pts"):
        text = path.read_bytes().decode("utf-8", errors="strict").replace(",", " ")
        arr = np.loadtxt(io.StringIO(text), dtype=np.float64, comments="#", ndmin=2)
    elif ext == ".npy":
        arr = _points_from(read_npy(path), path.name)
    elif ext == ".npz":
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
        if total > 4 * max_bytes:
            raise BadFileError("too-large", f"{path.name}: {total} bytes uncompressed is over 4x the size limit")
        with np.load(path, allow_pickle=False) as npz:
            arr = _points_from({k: npz[k] for k in npz.files}, path.name)
    else:  # .pt: torch.save output, read without unpickling arbitrary objects
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        obj = {k: v.numpy() for k, v in obj.items()} if isinstance(obj, dict) else obj.numpy()
        arr = _points_from(obj, path.name)
    return arr


def _points_from(obj: object, name: str) -> np.ndarray:
    """Coordinates from an array (N, C>=3) or (C, N) with C in {3, 6}, or a dict holding one under a known key."""
    if isinstance(obj, dict):
        key = next((k for k in _POINT_KEYS if k in obj), None)
        if key is None:
            arrays = [k for k, v in obj.items() if isinstance(v, np.ndarray)]
            if len(arrays) != 1:
                raise BadFileError("unreadable", f"{name}: no point array (looked for keys {', '.join(_POINT_KEYS)})")
            key = arrays[0]
        obj = obj[key]
    arr = np.asarray(obj)
    if arr.ndim == 2 and arr.shape[1] < 3 and arr.shape[0] in (3, 6):
        arr = arr.T
    elif arr.ndim == 2 and arr.shape[0] in (3, 6) and arr.shape[1] > 6 and arr.shape[1] not in (3, 6):
        arr = arr.T  # channel-first clouds such as Cap3D's (6, 16384)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise BadFileError("unreadable", f"{name}: expected an (N, 3+) point array, got shape {arr.shape}")
    return arr[:, :3]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only; any other class is refused (no code runs)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def read_npy(path: str | os.PathLike[str]) -> np.ndarray | dict:
    """Read a ``.npy`` file; object arrays (e.g. OpenShape's pickled dicts) go through a NumPy-only unpickler.

    Returns:
        the array, or the dict stored in a 0-d object array.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        obj = _NumpyOnlyUnpickler(f).load()
    arr = np.asarray(obj, dtype=object) if not isinstance(obj, np.ndarray) else obj
    if arr.shape == () and isinstance(arr.item(), dict):
        return arr.item()
    if shape == () and isinstance(obj, dict):
        return obj
    raise BadFileError("unreadable", f"{Path(path).name}: object array of shape {shape} is not a point dict")
