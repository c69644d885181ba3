"""The model shipped inside the package (``src/daer/assets/demo_model``, written by ``make demo-train``)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from daer.errors import BadInputError


def packaged_checkpoint() -> Path | None:
    """The packaged checkpoint's folder, or None when this install has none."""
    folder = Path(str(resources.files("daer").joinpath("assets", "demo_model")))
    return folder if (folder / "model.safetensors").is_file() else None


def resolve_checkpoint(ckpt: str | os.PathLike[str] | None) -> Path:
    """``ckpt`` when given, else the packaged checkpoint; refused when neither exists."""
    if ckpt is not None:
        return Path(ckpt)
    shipped = packaged_checkpoint()
    if shipped is None:
        raise BadInputError("no --ckpt given and this install has no packaged model: train one with `daer train`")
    return shipped
