"""Atomic writes: all or nothing, usual file mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from daer.utils.atomic import atomic_open, write_json


def test_failed_write_leaves_the_old_file_and_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_finished_file_respects_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "b.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o644
