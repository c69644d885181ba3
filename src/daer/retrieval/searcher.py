"""Text-to-shape search over an index folder written by :func:`daer.retrieval.indexer.build_index`.

A query is encoded by the index's model; the index returns the top C candidates by global cosine; the
top R of them are re-ranked with the model's final score, HAF level scores on the stored fine tokens
fused with the global cosine (``model.haf.level_scores`` + ``model.haf.fuse``); each result carries the
shape's category, attributes and first caption from the index's metadata file.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daer.errors import BadInputError, IntegrityError
from daer.models.model import DaerModel, load_model
from daer.models.point_encoder import PointFeatures
from daer.retrieval.ers import ERSIndex
from daer.retrieval.indexer import META_FILE, METHODS, model_hash
from daer.retrieval.rerank import rerank_top
from daer.retrieval.store import IndexFolder, open_index_dir


class Searcher:
    """An opened index with its model: ``search(query, k)`` for one text, ``search_many`` with timings.

    Args:
        index_dir: index folder.
        ckpt: checkpoint to use (default: the one recorded at build time); its hash must match the index.
        verify: check every index file's SHA-256 on open.
        candidates: C, candidates taken from the index per query (at least k).
        rerank_depth: R, how many of them are re-ranked with the fine score (0: no re-ranking).
        learn: let ERS update its success statistics from served queries.
        model: an already loaded model (its hash is still checked against the index).
    """

    def __init__(
        self,
        index_dir: str | os.PathLike[str],
        ckpt: str | os.PathLike[str] | None = None,
        verify: bool = True,
        candidates: int = 50,
        rerank_depth: int = 50,
        learn: bool = False,
        model: DaerModel | None = None,
    ) -> None:
        folder = open_index_dir(index_dir, verify=verify)
        meta = folder.meta
        ckpt = ckpt if ckpt is not None else meta.get("ckpt")
        if not ckpt:
            raise IntegrityError(f"index {index_dir}: no checkpoint recorded; pass one explicitly")
        mh = model_hash(ckpt)
        if mh != folder.manifest.get("model_hash"):
            raise IntegrityError(
                f"index {index_dir} was built with model {folder.manifest.get('model_hash')!r}, "
                f"but checkpoint {ckpt} is {mh!r}: rebuild the index or pass the right --ckpt"
            )
        self.model = load_model(ckpt) if model is None else model
        if int(self.model.config.embed_dim) != int(folder.manifest["dim"]):
            raise IntegrityError(f"index {index_dir}: dimension {folder.manifest['dim']} differs from the model's")
        self.folder = folder
        self.path = Path(index_dir)
        self.method = folder.manifest["method"]
        self.index = _open(folder)
        if isinstance(self.index, ERSIndex):
            self.index.set_learning(learn)
        self.vectors = folder.array("vectors", mmap=True)  # (n, D)
        self.fine = {int(lv): folder.array(f"fine_{lv}", mmap=True) for lv in meta.get("fine_levels", [])}
        self.offsets = folder.array("meta_offsets")
        self._meta_fd = os.open(folder.file(META_FILE), os.O_RDONLY)
        self.candidates = candidates
        self.rerank_depth = rerank_depth if self.fine else 0
        self.data_dir = meta.get("data_dir")
        self._model_lock = threading.Lock()  # torch modules are shared: encode one query at a time

    @property
    def n(self) -> int:
        """Number of indexed shapes."""
        return len(self.vectors)

    def close(self) -> None:
        """Release the metadata file."""
        if self._meta_fd >= 0:
            os.close(self._meta_fd)
            self._meta_fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # best effort, also at interpreter exit
            self.close()

    # ------------------------------------------------------------------ metadata
    def metadata(self, row: int) -> dict[str, Any]:
        """``{"id", "category", "attributes", "caption"}`` of an indexed row."""
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        return json.loads(os.pread(self._meta_fd, end - start, start))

    # ------------------------------------------------------------------ scoring
    def fine_scores(self, text: Any, rows: np.ndarray) -> np.ndarray:
        """Final model score of one encoded query (TextFeatures of 1) against indexed ``rows``: (R,)."""
        haf = self.model.haf
        if haf is None or not self.fine:
            raise BadInputError("this index stores no fine tokens (global model or built without them)")
        sizes = self.folder.meta["level_sizes"]
        levels, centers = [], []
        for lv in range(1, len(sizes) + 1):
            if lv in self.fine:
                tok = torch.from_numpy(np.asarray(self.fine[lv][rows], dtype=np.float32))  # (R, N_l, D)
            else:  # a level not stored: one zero token; its score is left out of the fusion below
                tok = torch.zeros(len(rows), 1, self.vectors.shape[1])
            levels.append(tok)
            centers.append(torch.zeros(len(rows), tok.shape[1], 3))
        glob = torch.from_numpy(np.asarray(self.vectors[rows], dtype=np.float32))
        shapes = PointFeatures(levels, centers, glob)
        with torch.no_grad():
            level_scores = haf.level_scores(text, shapes)[0]  # (R, L)
            g = (text.global_[0].float() @ glob.T).float()  # (R,)
            if len(self.fine) == len(sizes):
                return haf.fuse(level_scores, g).numpy()
            keep = torch.tensor([lv in self.fine for lv in range(1, len(sizes) + 1)])
            w = haf.level_weight.clamp_min(0) * keep
            scale = haf.level_weight.clamp_min(0).sum() / w.sum().clamp_min(1e-12)  # keep the total weight
            fine = (level_scores * w).sum(-1) * scale
            return ((1 - haf.mix) * g + haf.mix * fine).numpy()

    # ------------------------------------------------------------------ search
    def search_many(self, queries: list[str], k: int = 10, rerank: bool = True, **params: Any) -> list[dict[str, Any]]:
        """One result per query: ``{"query", "latency_ms", "results": [{"id", "score", "category",
        "attributes", "caption"}]}``; each query is timed from text encoding to metadata."""
        if k < 1:
            raise BadInputError(f"k must be >= 1, got {k}")
        out = []
        for query in queries:
            if not isinstance(query, str) or not query.strip():
                raise BadInputError(f"a query must be non-empty text, got {query!r}")
            t0 = time.perf_counter()
            rows, scores = self._rows(query, k, rerank, **params)
            results = [{**self.metadata(int(r)), "score": float(s)} for r, s in zip(rows, scores, strict=True)]
            results = [
                {key: res[key] for key in ("id", "score", "category", "attributes", "caption")} for res in results
            ]
            out.append({"query": query, "latency_ms": (time.perf_counter() - t0) * 1000.0, "results": results})
        return out

    def search(self, query: str, k: int = 10) -> list[dict[str, Any]]:
        """Top ``k`` results for one text (the service's searcher interface)."""
        return self.search_many([query], k)[0]["results"]

    def _rows(self, query: str, k: int, rerank: bool, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        with self._model_lock, torch.no_grad():
            text = self.model.encode_text([query])
        q = text.global_.float().cpu().numpy()  # (1, D)
        depth = self.rerank_depth if rerank else 0
        c = max(k, self.candidates, depth)

        def reranker(_: int, rows: np.ndarray) -> np.ndarray:
            with self._model_lock:
                return self.fine_scores(text, rows)

        if isinstance(self.index, ERSIndex):
            scores, rows = self.index.search(
                q, k=k, candidates=c, reranker=reranker if depth else None, rerank_depth=depth, **params
            )
            scores, rows = scores[0], rows[0]
        else:
            scores, rows = self.index.search(q, k=c, **params)
            scores, rows = rerank_top(scores[0], rows[0], lambda r: reranker(0, r), depth)
            scores, rows = scores[:k], rows[:k]
        ok = rows >= 0
        return rows[ok], scores[ok]


def _open(folder: IndexFolder) -> Any:
    method = folder.manifest.get("method")
    if method not in METHODS:
        raise IntegrityError(f"index {folder.path}: unknown method {method!r}")
    return METHODS[method].from_folder(folder)
