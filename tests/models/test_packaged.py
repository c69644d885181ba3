"""The packaged model: found in the install, the default checkpoint of the commands that read one."""

from __future__ import annotations

from pathlib import Path

import pytest

from daer.errors import BadInputError
from daer.models import packaged
from daer.models.packaged import packaged_checkpoint, resolve_checkpoint


def test_resolve_prefers_the_given_checkpoint(tmp_path: Path) -> None:
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run"
    shipped = packaged_checkpoint()
    assert shipped is not None and (shipped / "model.safetensors").is_file()
    assert resolve_checkpoint(None) == shipped


def test_resolve_without_a_packaged_model_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packaged, "packaged_checkpoint", lambda: None)
    with pytest.raises(BadInputError, match="no --ckpt given.*daer train"):
        resolve_checkpoint(None)
