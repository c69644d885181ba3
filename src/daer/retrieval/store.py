"""On-disk index folders: a manifest, FAISS files and numpy arrays, written atomically and verified on load.

Layout of an index folder::

    manifest.json      {"format": "daer-index", "format_version", "method", "model_hash", "dim", "count",
                        "meta": {...}, "files": {name: {"sha256", "bytes"}}}
    <name>.faiss       faiss.write_index output
    <name>.npy         numpy arrays (large ones may be opened memory-mapped)
    <name>.json        small JSON documents
    other files        written through ``IndexWriter.file`` (e.g. JSON lines), checksummed like the rest

The folder is assembled under a temporary name beside the target and renamed into place only when
complete, so a reader never sees a half-written index. Loading checks every file's size and SHA-256
and the expected model hash and dimension; any difference raises :class:`~daer.errors.IntegrityError`.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import faiss
import numpy as np

from daer.errors import IntegrityError
from daer.utils.atomic import write_json
from daer.utils.hashing import sha256_file

FORMAT = "daer-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

# method name → "module:Class" of the index type that reads it (imported lazily by load_index)
METHODS = {
    "ers": "daer.retrieval.ers:ERSIndex",
    "exact": "daer.retrieval.baselines:ExactIndex",
    "ivf": "daer.retrieval.baselines:IVFIndex",
    "hnsw": "daer.retrieval.baselines:HNSWIndex",
}


class IndexWriter:
    """Build an index folder under a temporary name; ``commit`` (or a clean ``with`` exit) publishes it.

    Args:
        path: final folder; an existing index there is replaced only on commit.
        method: index method name (a key of :data:`METHODS`).
        model_hash: identity of the model whose embeddings are indexed.
        dim: embedding dimension.
        count: number of indexed items.
    """

    def __init__(self, path: str | os.PathLike[str], method: str, model_hash: str, dim: int, count: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        self.header: dict[str, Any] = {"method": method, "model_hash": model_hash, "dim": int(dim), "count": int(count)}
        self.meta: dict[str, Any] = {}
        self._names: set[str] = set()

    def _file(self, name: str, suffix: str) -> Path:
        if not name or "/" in name or name.startswith(".") or name == "manifest":
            raise ValueError(f"bad index file name {name!r}")
        if name + suffix in self._names:
            raise ValueError(f"index file {name + suffix!r} written twice")
        self._names.add(name + suffix)
        return self.tmp / f"{name}{suffix}"

    def put_faiss(self, name: str, index: faiss.Index) -> None:
        """Store a FAISS index as ``<name>.faiss``."""
        faiss.write_index(index, str(self._file(name, ".faiss")))

    def put_array(self, name: str, array: np.ndarray) -> None:
        """Store an array as ``<name>.npy``."""
        np.save(self._file(name, ".npy"), np.ascontiguousarray(array), allow_pickle=False)

    def open_array(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.memmap:
        """A writable memory-mapped ``<name>.npy`` to fill in place (for arrays larger than memory)."""
        return np.lib.format.open_memmap(self._file(name, ".npy"), mode="w+", dtype=dtype, shape=shape)

    def file(self, filename: str) -> Path:
        """Path of a new file ``filename`` (any suffix) inside the folder, to write in any way before commit."""
        stem, dot, suffix = filename.partition(".")
        return self._file(stem, dot + suffix)

    def has(self, name: str, suffix: str) -> bool:
        """Whether ``<name><suffix>`` was already written."""
        return (self.tmp / f"{name}{suffix}").exists()

    def put_json(self, name: str, obj: Any) -> None:
        """Store a JSON document as ``<name>.json``."""
        write_json(self._file(name, ".json"), obj)

    def commit(self) -> Path:
        """Write the manifest with every file's checksum and move the folder into place."""
        files = {}
        for f in sorted(self.tmp.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                files[f.name] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **self.header, "meta": self.meta}
        manifest["files"] = files
        write_json(self.tmp / MANIFEST, manifest)
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Remove the temporary folder."""
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class IndexFolder:
    """A verified index folder: its manifest and typed readers for its files."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def meta(self) -> dict[str, Any]:
        """The method-specific settings stored with the index."""
        return self.manifest.get("meta", {})

    def has(self, name: str, suffix: str) -> bool:
        """Whether ``<name><suffix>`` is part of the index."""
        return f"{name}{suffix}" in self.manifest["files"]

    def _file(self, name: str, suffix: str) -> Path:
        if not self.has(name, suffix):
            raise IntegrityError(f"index {self.path}: missing file {name}{suffix}")
        return self.path / f"{name}{suffix}"

    def faiss(self, name: str, mmap: bool = False) -> faiss.Index:
        """Read ``<name>.faiss`` (memory-mapped when ``mmap``)."""
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        return faiss.read_index(str(self._file(name, ".faiss")), flags)

    def array(self, name: str, mmap: bool = False) -> np.ndarray:
        """Read ``<name>.npy`` (memory-mapped read-only when ``mmap``)."""
        return np.load(self._file(name, ".npy"), mmap_mode="r" if mmap else None, allow_pickle=False)

    def file(self, filename: str) -> Path:
        """Path of a checked file of the index, e.g. ``meta.jsonl``."""
        stem, dot, suffix = filename.partition(".")
        return self._file(stem, dot + suffix)

    def json(self, name: str) -> Any:
        """Read ``<name>.json``."""
        with open(self._file(name, ".json"), encoding="utf-8") as f:
            return json.load(f)


def open_index_dir(
    path: str | os.PathLike[str],
    expect_model_hash: str | None = None,
    expect_dim: int | None = None,
    expect_method: str | None = None,
    verify: bool = True,
) -> IndexFolder:
    """Open an index folder, refusing a damaged or mismatched one.

    Args:
        path: the index folder.
        expect_model_hash: refuse an index built from another model.
        expect_dim: refuse an index of another embedding dimension.
        expect_method: refuse an index of another method.
        verify: check every file's SHA-256 (sizes are always checked).

    Raises:
        IntegrityError: missing or unreadable manifest, unknown format version, a file missing, resized or
            altered, or a model hash / dimension / method other than expected.
    """
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise IntegrityError(f"index {path}: no {MANIFEST} (not an index folder, or an interrupted build)")
    try:
        with open(mpath, encoding="utf-8") as f:
            manifest = json.load(f)
        files = manifest["files"]
        version = manifest["format_version"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"index {path}: unreadable manifest ({e})") from e
    if manifest.get("format") != FORMAT:
        raise IntegrityError(f"index {path}: manifest format {manifest.get('format')!r}, expected {FORMAT!r}")
    if version != FORMAT_VERSION:
        raise IntegrityError(f"index {path}: format version {version} not supported (this daer reads {FORMAT_VERSION})")
    for name, info in files.items():
        f = path / name
        if not f.is_file():
            raise IntegrityError(f"index {path}: file {name} is missing")
        if f.stat().st_size != info["bytes"]:
            raise IntegrityError(
                f"index {path}: file {name} has {f.stat().st_size} bytes, manifest says {info['bytes']}"
            )
        if verify and sha256_file(f) != info["sha256"]:
            raise IntegrityError(f"index {path}: file {name} is damaged (SHA-256 differs from the manifest)")
    if expect_model_hash is not None and manifest.get("model_hash") != expect_model_hash:
        raise IntegrityError(
            f"index {path}: built from model {manifest.get('model_hash')!r}, not the expected {expect_model_hash!r}"
        )
    if expect_dim is not None and manifest.get("dim") != expect_dim:
        raise IntegrityError(f"index {path}: dimension {manifest.get('dim')}, expected {expect_dim}")
    if expect_method is not None and manifest.get("method") != expect_method:
        raise IntegrityError(f"index {path}: method {manifest.get('method')!r}, expected {expect_method!r}")
    return IndexFolder(path, manifest)


def load_index(path: str | os.PathLike[str], **expect: Any) -> Any:
    """Load any stored index (ERS or a baseline), dispatching on the manifest's method.

    Args:
        path: the index folder.
        **expect: ``expect_model_hash`` / ``expect_dim`` / ``verify``, as for :func:`open_index_dir`.
    """
    folder = open_index_dir(path, **expect)
    method = folder.manifest.get("method")
    if method not in METHODS:
        raise IntegrityError(f"index {path}: unknown method {method!r} (known: {', '.join(METHODS)})")
    module, cls = METHODS[method].split(":")
    return getattr(importlib.import_module(module), cls).from_folder(folder)
