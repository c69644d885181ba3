"""The run folder: how a run was made (config, git revision, data hash) and its JSONL log.

Layout::

    RUN/train_config.json         the resolved TrainConfig
    RUN/run.json                  git SHA, data manifest hash, model config, world size, versions, resumes
    RUN/log.jsonl                 one JSON object per logged step or event
    RUN/checkpoints/step_<N>/     complete checkpoints (see daer.train.checkpoint)
    RUN/cache/                    per-run caches (point groups)
    RUN/model.safetensors, RUN/config.json   the final model (``daer.models.model.load_model(RUN)``)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from daer import __version__
from daer.data.shards import MANIFEST
from daer.errors import IntegrityError
from daer.utils.atomic import atomic_open, write_json
from daer.utils.hashing import sha256_file

RUN_INFO = "run.json"
LOG_FILE = "log.jsonl"


def git_revision() -> dict[str, Any]:
    """``{"sha": str | None, "dirty": bool | None}`` of the source tree this package runs from."""
    src = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha or None, "dirty": bool(status.strip())}


def manifest_hash(data_dir: str | os.PathLike[str]) -> str:
    """SHA-256 of a data set's ``manifest.json`` (which itself checksums every shard)."""
    return sha256_file(Path(data_dir) / MANIFEST)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_run_info(run_dir: Path, data_hash: str, model_config: dict[str, Any], world: int, device: str) -> None:
    """Record how a new run was made."""
    write_json(
        run_dir / RUN_INFO,
        {
            "created": _now(),
            "git": git_revision(),
            "data_manifest_sha256": data_hash,
            "model_config": model_config,
            "world_size": world,
            "device": device,
            "argv": sys.argv,
            "versions": {"daer": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "resumes": [],
        },
    )


def record_resume(run_dir: Path, data_hash: str, step: int, world: int) -> None:
    """Check that the data did not change since the run started, and note the resume."""
    path = run_dir / RUN_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise IntegrityError(f"{path}: unreadable run record ({e})") from e
    if info.get("data_manifest_sha256") != data_hash:
        raise IntegrityError(
            f"{run_dir} was trained on a data set with manifest hash {info.get('data_manifest_sha256')}, "
            f"the data now has {data_hash}: resume on the same data, or start a new run"
        )
    info.setdefault("resumes", []).append({"time": _now(), "step": step, "world_size": world, "git": git_revision()})
    write_json(path, info)


class JsonlLog:
    """Append-only JSONL log (written by rank 0 only), flushed after every line."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Drop lines of steps after ``step`` (work a kill lost, about to be redone on resume)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            if int(entry.get("step", 0)) <= step:
                kept.append(line)
        with atomic_open(self.path, "w", encoding="utf-8") as f:
            f.writelines(k + "\n" for k in kept)

    def write(self, entry: dict[str, Any]) -> None:
        if not self.enabled:
            return
        entry = {**entry, "time": round(time.time(), 3)}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
