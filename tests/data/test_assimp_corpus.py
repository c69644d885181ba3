"""Real-world corpus: every OBJ, PLY, STL, OFF, GLB and GLTF file of Debian's ``assimp-testmodels``
(some malformed on purpose) goes through the CSV importer; each is imported or rejected with a reason.

Run with ``-s`` to see the counts. Skipped when the package is absent (CI installs it with apt-get).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from daer.data.importer import import_meshes
from daer.data.shards import iter_records

EXTS = {".obj", ".ply", ".stl", ".off", ".glb", ".gltf"}
ROOT = Path("/usr/share/assimp/models")
# Files whose fate is known: good ones must import, broken ones must be rejected for the right reason.
MUST_IMPORT = ["OBJ/box.obj", "OBJ/regr01.obj", "OBJ/box_UTF16BE.obj", "PLY/cube_binary.ply", "STL/Spider_binary.stl",
               "STL/Spider_ascii.stl", "OFF/Wuson.off", "glTF2/BoxTextured-glTF-Binary/BoxTextured.glb",
               "glTF2/BoxTextured-glTF/BoxTextured.gltf"]  # fmt: skip
MUST_REJECT = {
    "invalid/empty.obj": "empty",
    "invalid/OutOfMemory.off": "too-large",  # its header claims 353 billion vertices
    "invalid/malformed.obj": "unreadable",
    "glTF2/BoxWithInfinites-glTF-Binary/BoxWithInfinites.glb": "non-finite",
    "glTF2/IndexOutOfRange/IndexOutOfRange.gltf": "unreadable",
    "glTF2/MissingBin/BoxTextured.gltf": "unreadable",
    "glTF/TwoBoxes/TwoBoxes.gltf": "unsupported",
}


def _corpus_files() -> list[Path]:
    listed: list[str] = []
    if shutil.which("dpkg"):
        res = subprocess.run(["dpkg", "-L", "assimp-testmodels"], capture_output=True, text=True, check=False)
        listed = res.stdout.split("\n") if res.returncode == 0 else []
    files = [Path(p) for p in listed if Path(p).suffix.lower() in EXTS]
    if not files and ROOT.is_dir():
        files = [p for p in ROOT.rglob("*") if p.suffix.lower() in EXTS]
    return sorted(p for p in files if p.is_file() and ROOT in p.parents)


def test_assimp_corpus_imports_or_rejects_every_file(tmp_path):
    files = _corpus_files()
    if not files:
        pytest.skip("Debian package assimp-testmodels is not installed (apt-get install assimp-testmodels)")
    rel = [p.relative_to(ROOT).as_posix() for p in files]
    csv_path = tmp_path / "corpus.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "file", "caption", "category"])
        for r in rel:  # id = full relative path, so files differing only by extension are all tried
            w.writerow([r, r, f"test model {Path(r).stem}", Path(r).parts[0]])
    out = tmp_path / "out"
    t0 = time.monotonic()
    summary = import_meshes(
        ROOT, csv_path, out, n_points=512, timeout=10.0, workers=2, max_bytes=16 * 2**20, progress=False
    )
    seconds = time.monotonic() - t0
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    imported = {r.id: r for r in iter_records(out)} if summary.imported else {}

    by_ext = Counter(Path(r).suffix.lower() for r in imported)
    print(f"\nassimp-testmodels: {len(files)} files in {seconds:.1f} s")
    print(f"  imported {summary.imported} ({dict(sorted(by_ext.items()))})")
    print(f"  rejected {len(rejected)}: {summary.rejected}")
    for r in rejected:
        print(f"    [{r['code']}] {r['file']}: {r['reason'][:110]}")

    assert summary.imported + len(rejected) == len(files)  # each file exactly once, one way or the other
    assert set(imported) | {r["file"] for r in rejected} == set(rel)
    assert all(r["reason"].strip() and r["code"] for r in rejected)
    assert not {"crashed", "loader-error"} & set(summary.rejected), summary.rejected
    assert seconds < 60
    for rec in imported.values():
        assert rec.points.shape == (512, 3) and np.isfinite(rec.points).all()
        assert np.linalg.norm(rec.points, axis=1).max() == pytest.approx(1.0, abs=1e-4)
    codes = {r["file"]: r["code"] for r in rejected}
    for name in MUST_IMPORT:
        if name in rel:
            assert name in imported, f"{name}: {codes.get(name)}"
    for name, code in MUST_REJECT.items():
        if name in rel:
            assert codes.get(name) == code, name
