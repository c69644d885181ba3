"""A tiny real stack for the service tests: a synth data set, a tiny model and a backend over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from daer.data.build import build_synth
from daer.data.shards import load_points
from daer.models.model import DaerModel, create_model, load_model
from daer.serve.app import create_app
from daer.serve.backend import LibraryBackend
from daer.serve.shapes import ShapeStore

N_SHAPES = 48
N_POINTS = 256


class ExactTextSearcher:
    """Brute-force global-cosine search over the model's embeddings of every shape (interim searcher)."""

    def __init__(self, model: DaerModel, store: ShapeStore, data_dir: Path) -> None:
        self.model, self.store = model, store
        self.ids, pts = load_points(data_dir)
        with torch.no_grad():
            self.emb = model.encode_points(torch.from_numpy(pts)).global_.numpy()  # (M, D)

    def search(self, query: str, k: int) -> list[dict[str, Any]]:
        with torch.no_grad():
            t = self.model.encode_text([query]).global_.numpy()[0]
        s = self.emb @ t
        out = []
        for i in np.argsort(-s, kind="stable")[:k]:
            info = self.store.info(self.ids[i])
            assert info is not None
            out.append({**info, "score": float(s[i]), "caption": info["captions"][0]})
        return out


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of the synth data set and the saved tiny model."""
    root = tmp_path_factory.mktemp("serve")
    build_synth(root / "data", N_SHAPES, n_points=N_POINTS, workers=1, progress=False)
    torch.manual_seed(0)
    create_model("tiny", n_points=N_POINTS).save(root / "run")
    return {"root": root, "data": root / "data", "run": root / "run"}


@pytest.fixture(scope="session")
def backend(stack: dict[str, Path]) -> LibraryBackend:
    model = load_model(stack["run"])
    store = ShapeStore(stack["data"])
    return LibraryBackend(ExactTextSearcher(model, store, stack["data"]), model, store, identity="test")


@pytest.fixture()
def client(backend: LibraryBackend) -> TestClient:
    return TestClient(create_app(backend=backend, api_key=""))
