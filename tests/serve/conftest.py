"""A tiny real stack for the service tests: a synth data set, a tiny model, an ERS index and its backend."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from daer.data.build import build_synth
from daer.models.model import create_model
from daer.retrieval.indexer import build_index
from daer.serve.app import create_app
from daer.serve.backend import LibraryBackend, open_backend

N_SHAPES = 48
N_POINTS = 256


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of the synth data set, the saved tiny model and the ERS index over them."""
    root = tmp_path_factory.mktemp("serve")
    build_synth(root / "data", N_SHAPES, n_points=N_POINTS, workers=1, progress=False)
    torch.manual_seed(0)
    create_model("tiny", n_points=N_POINTS).save(root / "run")
    build_index(root / "run", root / "data", root / "index", method="ers", progress=False)
    return {"root": root, "data": root / "data", "run": root / "run", "index": root / "index"}


@pytest.fixture(scope="session")
def backend(stack: dict[str, Path]) -> LibraryBackend:
    """The real backend: the ERS searcher, the index's model and its data set."""
    return open_backend(stack["index"])


@pytest.fixture()
def client(backend: LibraryBackend) -> TestClient:
    return TestClient(create_app(backend=backend, api_key=""))
