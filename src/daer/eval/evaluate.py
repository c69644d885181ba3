"""Evaluate a model on one split of a data set: instance retrieval, zero-shot, attribute accuracy, spec queries.

What is measured (SYNTH_SPEC.md, "Relevance and metrics"):

- **Instance retrieval** (``t2s_r*``, ``s2t_r*``): one caption per shape, its first (on Align3D-Synth the
  one that names every attribute). Shapes whose captions are the same text share one query, and
  retrieving any of them counts, since the text cannot tell them apart. Protocol: every shape is ranked
  by the global cosine, the top ``rerank`` candidates are re-scored with ``model.score`` (the fused HAF
  score, or the global cosine in mode ``global``) and the target's rank is read among them; a target
  outside the candidates is a miss. With ``rerank >= n`` this is the exact full-score ranking. It is the
  retrieve-then-re-rank protocol of the search index, and it costs O(n · rerank) fused scores instead of
  O(n²), which is what makes 100k shapes possible.
- **Zero-shot** (``zeroshot_top1``): the mean score over each class's prompt ensemble; the 19 Align3D-Synth
  categories with ``class_prompts``, or, for other data sets, the data set's own category names with
  generic prompts.
- **Attribute accuracy** (``attr_acc``, Align3D-Synth only): each shape's first caption is re-rendered
  with the same template and variant and one attribute changed to each other value; a (shape, attribute)
  pair is right when the true caption outscores all of them.
- **Spec queries** (``spec_p1``, ``spec_p10``, Align3D-Synth only): ``spec_queries`` from the held-out
  templates; P@k out of min(k, relevant shapes), queries with no relevant shape left out; same
  re-ranking protocol as instance retrieval. ``spec_cat_p10``: the share of those top 10 in the query's
  category (whatever their attributes), which tells a query's category misread from its attributes.
- **Grounding** (``grounding``): the share of a value word's HAF attention on the points of the parts that
  express it, on up to ``grounding_shapes`` of the evaluated shapes (:mod:`daer.eval.grounding`); None for a
  model in mode ``global`` and for data without part labels.

Metrics that do not apply are ``None``: attributes and spec queries outside Align3D-Synth, instance
retrieval where captions only name the class (ModelNet40, ScanObjectNN imports). Ties count against the
model (see :mod:`daer.eval.metrics`).

FPS/kNN groups: read from the shards where the data set stores the set this model is fed
(:mod:`daer.data.point_groups`), else computed by the encoder as it encodes each batch.

Memory: shapes stream shard by shard in batches; per shape only the global embedding, the zero-shot row
and the candidate lists are kept (O(n · (D + rerank))). Point tokens exist one batch at a time: the
candidates are re-scored in a second pass over the shards that encodes each batch again. Caption
features (tokens) are kept for the second pass, O(n · T · D), except in mode ``global``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from daer.data.point_groups import GroupSpec, served_points, stored_spec, unpack
from daer.data.record import SPLITS
from daer.data.sampling import fixed_subset
from daer.data.shards import iter_records, iter_records_with_groups, read_manifest
from daer.errors import BadInputError
from daer.eval import metrics as M
from daer.eval.grounding import DEFAULT_SHAPES, grounding_score
from daer.eval.synth_probes import attribute_scores, is_synth
from daer.synth.captions import SpecQuery, class_prompts, spec_queries
from daer.synth.taxonomy import CATEGORIES

EVAL_KEYS: tuple[str, ...] = (
    "t2s_r1", "t2s_r5", "t2s_r10", "s2t_r1", "s2t_r5", "s2t_r10",
    "zeroshot_top1", "attr_acc", "spec_p1", "spec_p10", "spec_cat_p10", "grounding", "n_shapes",
)  # fmt: skip
GENERIC_PROMPTS: tuple[str, ...] = (
    "a {name}",
    "a 3d model of a {name}",
    "a point cloud of a {name}",
    "a 3d shape of a {name}",
    "a cad model of a {name}",
    "a 3d scan of a {name}",
)


class Scorer(Protocol):
    """What :func:`evaluate` needs of a model (``DaerModel`` has it).

    ``encode_text`` returns text features and ``encode_points`` shape features as dataclasses with a
    normalised ``global_`` (B, D) tensor, ``select(index)`` and ``len``; text features also ``cat``
    (``TextFeatures`` and ``PointFeatures`` do). ``score(text, shapes)`` gives (Bt, Bs).
    """

    training: bool

    def encode_text(self, captions: list[str]) -> Any: ...
    def encode_points(self, points: Tensor, groups: Any = None) -> Any: ...
    def score(self, text: Any, shapes: Any) -> Tensor: ...
    def eval(self) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...


@dataclass
class _Meta:
    """The evaluated shapes, in split order (no points)."""

    ids: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    attributes: list[dict[str, str]] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)


class _TextBank:
    """Features of a list of texts, encoded in batches and kept on the CPU; ``get`` hands a subset back."""

    def __init__(self, model: Scorer, texts: Sequence[str], batch: int, keep_tokens: bool, device: torch.device):
        self.device = device
        parts, globals_ = [], []
        for start in range(0, len(texts), batch):
            f = model.encode_text(list(texts[start : start + batch]))
            globals_.append(f.global_.float().cpu().numpy())
            if keep_tokens:
                parts.append(_to(f, torch.device("cpu")))
        self.global_ = np.concatenate(globals_) if globals_ else np.zeros((0, 0), np.float32)  # (U, D)
        self.features = type(parts[0]).cat(parts) if parts else None

    def get(self, idx: np.ndarray) -> Any:
        if self.features is None:
            raise RuntimeError("text tokens were not kept")
        return _to(self.features.select(torch.as_tensor(idx, dtype=torch.long)), self.device)


def _to(features: Any, device: torch.device) -> Any:
    """A copy of a TextFeatures-like dataclass (tensors and word lists) with its tensors on ``device``."""
    kw = {}
    for name, value in vars(features).items():
        if isinstance(value, Tensor):
            value = value.detach().to(device)
        kw[name] = value
    return type(features)(**kw)


def _device(model: Any) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _global_mode(model: Any) -> bool:
    """Whether ``model.score`` is the global cosine, so candidates need no second pass."""
    return getattr(getattr(model, "config", None), "mode", None) == "global"


def _model_points(model: Any) -> int | None:
    n = getattr(getattr(model, "config", None), "n_points", None)
    return int(n) if n is not None else None


def _selection(n_split: int, max_shapes: int | None, seed: int) -> np.ndarray:
    """Boolean mask over the split's shapes (in stream order): all, or a seeded random subset."""
    keep = np.ones(n_split, dtype=bool)
    if max_shapes is not None:
        if max_shapes < 1:
            raise BadInputError(f"max_shapes must be >= 1, got {max_shapes}")
        if max_shapes < n_split:
            keep[:] = False
            keep[np.random.default_rng([seed, 0xE7A1]).choice(n_split, max_shapes, replace=False)] = True
    return keep


def _read_meta(data_dir: str | os.PathLike[str], split: str, keep: np.ndarray) -> _Meta:
    meta = _Meta()
    for i, rec in enumerate(iter_records(data_dir, split, columns=["category", "attributes", "captions"])):
        if i >= len(keep):
            raise BadInputError(f"{data_dir}: split {split!r} holds more shapes than its manifest says")
        if keep[i]:
            meta.ids.append(rec.id)
            meta.categories.append(rec.category)
            meta.attributes.append(rec.attributes)
            meta.captions.append(rec.captions[0])
    return meta


@dataclass
class _Stream:
    """Where the evaluated shapes' points come from, and how they are batched."""

    data_dir: str | os.PathLike[str]
    split: str
    keep: np.ndarray
    ids: list[str]
    batch: int
    n_points: int | None
    groups: GroupSpec | None = None  # the stored FPS/kNN group set the model is fed, if the data set has it

    def batches(self) -> Iterator[tuple[int, Tensor, Any]]:
        """(first shape index, (B, N, 3) float32 points, their stored groups or None) of the kept shapes, in order."""
        return _point_batches(self.data_dir, self.split, self.keep, self.ids, self.batch, self.n_points, self.groups)


def _point_batches(
    data_dir: str | os.PathLike[str],
    split: str,
    keep: np.ndarray,
    ids: list[str],
    batch: int,
    n_points: int | None,
    spec: GroupSpec | None = None,
) -> Iterator[tuple[int, Tensor, Any]]:
    subset = None
    buf: list[np.ndarray] = []
    gbuf: list[np.ndarray] = []
    done = 0

    def out() -> tuple[int, Tensor, Any]:
        return done, torch.from_numpy(np.stack(buf)), unpack(np.stack(gbuf), spec) if spec is not None else None

    for i, (rec, row) in enumerate(iter_records_with_groups(data_dir, split, spec, columns=["points"])):
        if i >= len(keep) or not keep[i]:
            continue
        if rec.id != ids[done + len(buf)]:
            raise BadInputError(f"{data_dir}: shapes of split {split!r} changed order while reading")
        pts = np.asarray(rec.points, dtype=np.float32)
        if n_points is not None and len(pts) > n_points:
            if subset is None:  # the fixed subset training serves, so the model sees the same sampling
                subset = fixed_subset(len(pts), n_points)
            pts = pts[subset]
        buf.append(pts)
        if row is not None:
            gbuf.append(row)
        if len(buf) == batch:
            yield out()
            done, buf, gbuf = done + len(buf), [], []
    if buf:
        yield out()
    if done + len(buf) != len(ids):
        raise BadInputError(f"{data_dir}: split {split!r} lost shapes while reading")


def _captions_name_instances(meta: _Meta) -> bool:
    """False when captions only name the class: each category's shapes share one caption, and some caption is
    shared (ModelNet40 / ScanObjectNN imports, "a chair")."""
    first: dict[str, str] = {}
    per_class = all(first.setdefault(c, cap) == cap for c, cap in zip(meta.categories, meta.captions, strict=True))
    return not (per_class and len(set(meta.captions)) < len(meta.captions))


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def zeroshot_prompts(
    names: list[str], synth: bool, given: Mapping[str, str | list[str]] | None = None
) -> list[list[str]]:
    """Each class's zero-shot prompts: Align3D-Synth's class prompts, or generic ones naming the class.

    The one home of zero-shot prompts: the evaluation scores a class by the mean of its prompts' scores,
    and DAP's reward does the same. ``given`` (``read_class_prompts``) overrides classes by id: a readable
    name goes into the generic prompts in place of the id's words, a list of prompts is used as it is.
    """
    given = given or {}
    prompts = []
    for name in names:
        chosen = given.get(name)
        if isinstance(chosen, list):
            prompts.append(list(chosen))
        elif synth and chosen is None:
            prompts.append(class_prompts(name))
        else:
            words = (chosen or name.replace("_", " ")).strip()
            prompts.append(
                [p.replace("a {name}", _article(words) + " {name}").format(name=words) for p in GENERIC_PROMPTS]
            )
    return prompts


def _zeroshot_classes(
    synth: bool, manifest: dict[str, Any], given: Mapping[str, str | list[str]] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Class names and each class's prompts; ``given`` may only name classes the data set has."""
    names = list(CATEGORIES) if synth else sorted(c for c in manifest.get("categories", {}) if c)
    unknown = sorted(set(given or {}) - set(names))
    if unknown:
        raise BadInputError(
            f"class names given for categories the data set does not have: {', '.join(unknown[:10])}"
            f"{' …' if len(unknown) > 10 else ''} (its categories: {', '.join(names[:20])}"
            f"{' …' if len(names) > 20 else ''})"
        )
    return names, zeroshot_prompts(names, synth, given)


def _column(scores: Tensor) -> np.ndarray:
    return scores.float().cpu().numpy()[:, 0]


def _inverse(cand: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For candidate lists (Q, C) over n items: (order, starts) so item j's (row, slot) pairs are
    ``divmod(order[starts[j]:starts[j+1]], C)``."""
    flat = cand.reshape(-1)
    order = np.argsort(flat, kind="stable")
    return order, np.searchsorted(flat[order], np.arange(n + 1))


def evaluate(
    model: Scorer,
    data_dir: str | os.PathLike[str],
    split: str = "test",
    batch_size: int = 64,
    max_shapes: int | None = None,
    seed: int = 0,
    *,
    rerank: int = 100,
    n_spec: int = 10,
    text_batch: int = 256,
    progress: bool = False,
    grounding_shapes: int = DEFAULT_SHAPES,
    spec: Sequence[SpecQuery] | None = None,
    class_names: Mapping[str, str | list[str]] | None = None,
) -> dict[str, float | int | None]:
    """Evaluate ``model`` on one split of a data set folder.

    Args:
        model: a ``DaerModel`` (or anything with ``encode_text``, ``encode_points`` and ``score``).
        data_dir: data set folder (shards + manifest).
        split: "train", "val" or "test".
        batch_size: shapes encoded at a time.
        max_shapes: evaluate a seeded random subset of this many shapes (None: all).
        seed: seeds that subset.
        rerank: candidates per query re-scored with ``model.score`` (>= 10).
        n_spec: spec queries per category.
        text_batch: captions encoded at a time.
        progress: show progress bars.
        grounding_shapes: evaluated shapes (at most) that the grounding metric looks at (0: skip it).
        spec: spec queries to score instead of the generated ones (e.g. ``read_spec_queries``; any data set
            whose shapes carry attributes).
        class_names: zero-shot classes by category id: a readable name or a list of prompts
            (``read_class_prompts``), for ids such as ``pin_header`` or ``03001627``.

    Returns:
        ``{"t2s_r1", "t2s_r5", "t2s_r10", "s2t_r1", "s2t_r5", "s2t_r10", "zeroshot_top1", "attr_acc",
        "spec_p1", "spec_p10", "spec_cat_p10", "grounding"}``
        as fractions in [0, 1] or None where they do not apply, and
        ``n_shapes``.
    """
    if split not in SPLITS:
        raise BadInputError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if batch_size < 1 or text_batch < 1:
        raise BadInputError(f"batch sizes must be >= 1, got {batch_size} and {text_batch}")
    if rerank < 10 or n_spec < 0:
        raise BadInputError(f"rerank must be >= 10 and n_spec >= 0, got {rerank} and {n_spec}")
    manifest = read_manifest(data_dir)
    keep = _selection(int(manifest["counts"].get(split, 0)), max_shapes, seed)
    meta = _read_meta(data_dir, split, keep)
    n = len(meta.ids)
    if n == 0:
        raise BadInputError(f"{data_dir}: split {split!r} has no shapes")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            n_points = _model_points(model)
            served = served_points(manifest["n_points"], n_points)
            groups = stored_spec(manifest, getattr(model, "config", None), served)
            stream = _Stream(data_dir, split, keep, meta.ids, batch_size, n_points, groups)
            out = _run(model, stream, meta, manifest, rerank, n_spec, text_batch, progress, spec, class_names)
            out["grounding"] = grounding_score(
                model, data_dir, split, max_shapes=grounding_shapes, seed=seed, ids=meta.ids, n_points=stream.n_points
            )
    finally:
        model.train(was_training)
    out["n_shapes"] = n
    return {k: out.get(k) for k in EVAL_KEYS}


def _run(
    model: Scorer,
    stream: _Stream,
    meta: _Meta,
    manifest: dict[str, Any],
    rerank: int,
    n_spec: int,
    text_batch: int,
    progress: bool,
    spec_given: Sequence[SpecQuery] | None = None,
    class_names: Mapping[str, str | list[str]] | None = None,
) -> dict[str, float | None]:
    n, device, fused = len(meta.ids), _device(model), not _global_mode(model)
    synth = is_synth(manifest, meta.categories)
    dseed = int(manifest.get("seed", 0))
    out: dict[str, float | None] = {}

    # Texts: unique captions (instance retrieval), class prompts, spec queries.
    retrieval = _captions_name_instances(meta)
    texts: list[str] = list(dict.fromkeys(meta.captions)) if retrieval else []
    text_index = {t: i for i, t in enumerate(texts)}
    owner = np.array([text_index[c] for c in meta.captions], dtype=np.int64) if retrieval else None
    captions = _TextBank(model, texts, text_batch, fused, device)
    classes, prompts = _zeroshot_classes(synth, manifest, class_names)
    label_of = {c: i for i, c in enumerate(classes)}
    labels = np.array([label_of.get(c, -1) for c in meta.categories], dtype=np.int64)
    do_zs = len(classes) >= 2 and (labels >= 0).any()
    n_prompts = [len(p) for p in prompts]
    prompt_bank = _TextBank(model, [p for ps in prompts for p in ps], text_batch, True, device) if do_zs else None
    if spec_given is not None:
        queries = list(spec_given)
    else:
        queries = spec_queries(dseed, n_spec, stream.split) if synth and n_spec > 0 else []
    spec_bank = _TextBank(model, [q.text for q in queries], text_batch, fused, device)

    # Pass 1: global embeddings, zero-shot rows, attribute scores.
    shape_global: np.ndarray | None = None
    zs = np.zeros((n, len(classes)), dtype=np.float64)
    attr_true: list[float] = []
    attr_other: list[list[float]] = []
    prompt_feats = prompt_bank.get(np.arange(sum(n_prompts))) if prompt_bank is not None else None
    bounds = np.cumsum([0, *n_prompts])
    bar = tqdm(total=n, desc="eval encode", unit="shape", disable=not progress, leave=False)
    for start, pts, groups in stream.batches():
        feats = model.encode_points(pts, groups)
        g = feats.global_.float().cpu().numpy()  # (B, D)
        if shape_global is None:
            shape_global = np.empty((n, g.shape[1]), dtype=np.float32)
        shape_global[start : start + len(g)] = g
        if prompt_feats is not None:
            s = model.score(prompt_feats, feats).float().cpu().numpy()  # (K·P, B)
            for k in range(len(classes)):
                zs[start : start + len(g), k] = s[bounds[k] : bounds[k + 1]].mean(axis=0)
        if synth:
            rows = slice(start, start + len(g))
            shapes = zip(meta.ids[rows], meta.categories[rows], meta.attributes[rows], meta.captions[rows], strict=True)
            attribute_scores(model, feats, list(shapes), dseed, start, attr_true, attr_other)
        bar.update(len(g))
    bar.close()
    assert shape_global is not None

    if do_zs:
        ok = labels >= 0
        out["zeroshot_top1"] = M.zeroshot_top1(zs[ok], labels[ok])
    if synth:
        width = max(len(r) for r in attr_other)
        other = np.full((len(attr_other), width), np.nan)
        for i, r in enumerate(attr_other):
            other[i, : len(r)] = r
        out["attr_acc"] = M.attribute_accuracy(np.array(attr_true), other)

    # Candidates by global cosine, then re-scored with the full score in a second pass.
    t2s = s2t = spec = None
    if retrieval:
        t2s = list(M.topk_dot(captions.global_, shape_global, rerank))  # [(U, C) shape idx, scores]
        s2t = list(M.topk_dot(shape_global, captions.global_, rerank))  # [(n, C) text idx, scores]
    if queries:
        spec = list(M.topk_dot(spec_bank.global_, shape_global, rerank))
    if fused and (retrieval or queries):
        _rescore(model, stream, captions, spec_bank, t2s, s2t, spec, progress)

    if retrieval:
        assert t2s is not None and s2t is not None and owner is not None
        r_t2s = M.recall_at_k(M.relevant_rank(t2s[1], owner[t2s[0]] == np.arange(len(texts))[:, None]))
        r_s2t = M.recall_at_k(M.relevant_rank(s2t[1], s2t[0] == owner[:, None]))
        out.update({f"t2s_r{k}": v for k, v in r_t2s.items()})
        out.update({f"s2t_r{k}": v for k, v in r_s2t.items()})
    if spec is not None:
        mask, codes = M.relevance_table(
            [(q.category, q.attributes) for q in queries], list(zip(meta.categories, meta.attributes, strict=True))
        )
        n_rel = mask @ np.bincount(codes, minlength=mask.shape[1])  # (Q,)
        idx, _ = M.order_candidates(spec[0], spec[1])
        ranked = np.take_along_axis(mask, codes[idx[:, :10]], 1)  # (Q, 10) relevance of the top 10
        p = M.precision_at_k(ranked, n_rel, (1, 10))
        out["spec_p1"], out["spec_p10"] = p[1], p[10]
        shape_cats = np.asarray(meta.categories)[idx[:, :10]]  # (Q, 10)
        same_cat = shape_cats == np.array([q.category for q in queries])[:, None]
        per_cat = Counter(meta.categories)
        n_cat = np.array([per_cat[q.category] for q in queries])
        keep = n_rel > 0  # the queries spec_p10 counts
        out["spec_cat_p10"] = M.precision_at_k(same_cat[keep], n_cat[keep], (10,))[10]
    return out


def _rescore(
    model: Scorer,
    stream: _Stream,
    captions: _TextBank,
    spec_bank: _TextBank,
    t2s: list[np.ndarray] | None,
    s2t: list[np.ndarray] | None,
    spec: list[np.ndarray] | None,
    progress: bool,
) -> None:
    """Replace the global scores of every candidate pair by ``model.score``, one shape at a time.

    Shapes are encoded again batch by batch, so point tokens are never held for more than one batch.
    """
    n = len(stream.ids)
    inv_t2s = _inverse(t2s[0], n) if t2s is not None else None
    inv_spec = _inverse(spec[0], n) if spec is not None else None
    bar = tqdm(total=n, desc="eval re-rank", unit="shape", disable=not progress, leave=False)
    for start, pts, groups in stream.batches():
        feats = model.encode_points(pts, groups)
        for b in range(len(feats)):
            j = start + b
            one = feats.select(slice(b, b + 1))
            if t2s is not None and s2t is not None and inv_t2s is not None:
                order, starts = inv_t2s
                rows, slots = np.divmod(order[starts[j] : starts[j + 1]], t2s[0].shape[1])
                need = np.unique(np.concatenate([rows, s2t[0][j]]))
                s = _column(model.score(captions.get(need), one))
                t2s[1][rows, slots] = s[np.searchsorted(need, rows)]
                s2t[1][j] = s[np.searchsorted(need, s2t[0][j])]
            if spec is not None and inv_spec is not None:
                order, starts = inv_spec
                rows, slots = np.divmod(order[starts[j] : starts[j + 1]], spec[0].shape[1])
                if len(rows):
                    spec[1][rows, slots] = _column(model.score(spec_bank.get(rows), one))
        bar.update(len(feats))
    bar.close()
