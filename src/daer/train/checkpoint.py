"""Atomic training checkpoints, without pickle.

A checkpoint is a folder ``<run>/checkpoints/step_<N>`` written whole into a hidden temporary
folder, flushed to disk, then renamed into place: a folder with the final name is always
complete, so a kill at any moment leaves the previous checkpoints intact. It holds the model
(``model.safetensors`` + ``config.json``, written by the model's own ``save``) and the trainer
state: tensors (optimizer moments, torch RNG) in ``trainer_state.safetensors`` and everything else
(step, data position, schedule, Python/NumPy RNG, optimizer hyper-parameters) in
``trainer_state.json``.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from daer.errors import IntegrityError
from daer.utils.atomic import write_json

CKPT_DIR = "checkpoints"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
_STEP_RE = re.compile(r"^step_(\d+)$")


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as (step, folder), oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        m = _STEP_RE.match(path.name)
        if m and path.is_dir():
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(run_dir: str | os.PathLike[str], step: int, write: Callable[[Path], None], keep: int = 2) -> Path:
    """Write a checkpoint atomically and drop all but the newest ``keep``.

    Args:
        run_dir: the run folder.
        step: the number of optimizer steps taken; names the folder.
        write: fills the (temporary) folder it is given.
        keep: complete checkpoints to keep (at least 1).
    """
    root = Path(run_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a kill during an earlier save
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        write(tmp)
        _fsync_tree(tmp)
        if final.exists():  # re-saving the same step: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".tmp-old-{final.name}-", dir=root))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old_ckpt in list_checkpoints(run_dir)[: -max(1, keep)]:
        shutil.rmtree(old_ckpt, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------------------------
# Optimizer and RNG state as (tensors, JSON)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        raise TypeError("tensors go to the tensor file")
    return value


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into named tensors and a JSON-able remainder."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        meta: dict[str, Any] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value.detach().cpu().contiguous()
                meta[key] = {"__tensor__": f"optimizer.{pid}.{key}"}
            else:
                meta[key] = _jsonable(value)
        state[str(pid)] = meta
    groups = [{k: _jsonable(v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"state": state, "param_groups": groups}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of :func:`optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for pid, entry in meta["state"].items():
        restored: dict[str, Any] = {}
        for key, value in entry.items():
            if isinstance(value, dict) and "__tensor__" in value:
                if value["__tensor__"] not in tensors:
                    raise IntegrityError(f"optimizer tensor {value['__tensor__']} missing from {STATE_TENSORS}")
                restored[key] = tensors[value["__tensor__"]]
            else:
                restored[key] = value
        state[int(pid)] = restored
    groups = []
    for g in meta["param_groups"]:
        groups.append({k: (v if k == "params" or not isinstance(v, list) else tuple(v)) for k, v in g.items()})
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's Python, NumPy and torch (CPU and CUDA) RNG states."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    meta = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, base64.b64encode(np.asarray(keys, dtype=np.uint32).tobytes()).decode(), pos, has_gauss, cached],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.frombuffer(base64.b64decode(keys), dtype=np.uint32), pos, has_gauss, cached))


def write_trainer_state(folder: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write the trainer state files into a checkpoint folder being built."""
    save_file(tensors, str(folder / STATE_TENSORS))
    write_json(folder / STATE_JSON, meta)


def read_trainer_state(folder: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read the trainer state of a checkpoint folder (safetensors + JSON; nothing is unpickled)."""
    folder = Path(folder)
    try:
        tensors = load_file(str(folder / STATE_TENSORS))
        meta = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise IntegrityError(f"checkpoint {folder} lacks its trainer state ({e.filename})") from e
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise IntegrityError(f"checkpoint {folder} has a damaged trainer state: {e}") from e
    return tensors, meta
