"""Grounding: does a caption word's HAF attention land on the part that the word names?

The pointing game of SYNTH_SPEC.md ("Part labels"). Align3D-Synth stores, per point, which attributes its
part expresses (``point_attrs``: bit i for the i-th attribute of the category). For each evaluated shape
and its first caption, every scored caption token that names an attribute value ("four" in "four legs",
"armrests", "tall" in "a tall back") is paired with that attribute; the model's attention of the token,
mapped back onto the input points as :meth:`DaerModel.explain` does it, gives the token's **share**: the
fraction of its attention mass on points carrying the attribute's bit. The score is the mean share over
all (token, shape) pairs; **chance** is the mean fraction of such points over the same pairs (what uniform
attention scores).

A pair is left out when the attribute's parts cover more than 60% of the shape's points (pointing at
them is then no evidence: a mug's body, a bed's frame) or none of them (the part is absent: "no
armrests").

Which tokens name a value: the attribute's value phrase is found in the caption (the phrase bank's forms
for that value, :func:`daer.synth.captions.value_phrases`), and its tokens that the other values'
phrases never use are the value words ("four" but not "legs" in "four legs"); a phrase with no such word
("armrests" against "no armrests") counts whole. This needs no template: it reads any caption the phrase
bank can write.

The scoring is a pure function (:func:`token_shares`) of (point attention, labels, token-to-attribute
map), tested without a model; :func:`measure_grounding` runs a model over a data set in batches.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from daer.data.point_groups import GroupSpec, served_points, stored_spec, unpack
from daer.data.sampling import fixed_subset, normalize_unit_sphere
from daer.data.shards import iter_records, iter_records_with_groups, read_manifest
from daer.errors import BadInputError
from daer.models.content_words import is_content_word
from daer.synth.captions import value_phrases
from daer.synth.generator import attribute_mask
from daer.synth.taxonomy import TAXONOMY

MAX_COVER = 0.6  # attributes whose parts cover more of the shape than this are skipped
DEFAULT_SHAPES = 200
_WORDS = re.compile(r"[a-z0-9]+")


@dataclass
class GroundingResult:
    """What :func:`measure_grounding` found.

    Attributes:
        score: mean attention share on the named attribute's points over (token, shape) pairs; None
            when no pair was scorable.
        chance: mean share of those points in the shapes over the same pairs (uniform attention's score).
        n_pairs: scored (token, shape) pairs.
        n_shapes: shapes evaluated (with labels).
        per_attribute: ``"category.attribute"`` -> ``{"score", "chance", "n"}``.
    """

    score: float | None
    chance: float | None
    n_pairs: int
    n_shapes: int
    per_attribute: dict[str, dict[str, float]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Pure scoring


def token_shares(
    point_attention: np.ndarray,
    labels: np.ndarray,
    token_masks: Mapping[int, int],
    max_cover: float = MAX_COVER,
) -> list[tuple[int, float, float]]:
    """The grounding share of each named token of one caption on one shape.

    Args:
        point_attention: (T, N) non-negative attention of each scored token on each input point.
        labels: (N,) ``point_attrs`` bit masks of the same points.
        token_masks: token index -> bit mask of the attribute it names.
        max_cover: skip a token whose attribute's points are more than this share of the shape.

    Returns:
        ``(token, share, chance)`` per scored token, where share = attention mass on points with the bit /
        total attention mass and chance = share of points with the bit; tokens whose attribute has no
        point, covers more than ``max_cover``, or whose attention row is all zero, are left out.
    """
    att = np.asarray(point_attention, dtype=np.float64)
    labels = np.asarray(labels)
    if att.ndim != 2 or labels.shape != (att.shape[1],):
        raise BadInputError(f"point attention (T, N) and labels (N,) do not fit: {att.shape} vs {labels.shape}")
    out = []
    for t, mask in sorted(token_masks.items()):
        if not 0 <= t < len(att):
            raise BadInputError(f"token {t} out of range for {len(att)} attention rows")
        on = (labels & mask) != 0
        chance = float(on.mean())
        total = float(att[t].sum())
        if chance == 0.0 or chance > max_cover or total <= 0.0:
            continue
        out.append((t, float(att[t, on].sum()) / total, chance))
    return out


def summarise(pairs: Sequence[tuple[str, float, float]], n_shapes: int) -> GroundingResult:
    """Average ``(key, share, chance)`` pairs into a result (key = ``"category.attribute"``)."""
    if not pairs:
        return GroundingResult(None, None, 0, n_shapes)
    shares = np.array([p[1] for p in pairs])
    chances = np.array([p[2] for p in pairs])
    per: dict[str, dict[str, float]] = {}
    keys = np.array([p[0] for p in pairs])
    for key in sorted(set(keys.tolist())):
        sel = keys == key
        per[key] = {"score": float(shares[sel].mean()), "chance": float(chances[sel].mean()), "n": int(sel.sum())}
    return GroundingResult(float(shares.mean()), float(chances.mean()), len(pairs), n_shapes, per)


# --------------------------------------------------------------------------------------------------
# Which tokens name which attribute


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(phrase) + r"(?![\w-])")


def _strip_article(phrase: str) -> str:
    return re.sub(r"^(a|an|the) ", "", phrase.lower())


def value_word_spans(category: str, attributes: Mapping[str, str], caption: str) -> dict[str, list[tuple[int, int]]]:
    """Character spans of the words in ``caption`` that name each attribute's value.

    Each attribute's value phrase is looked up (longest forms first, articles dropped, whole words only,
    never overlapping a phrase already claimed by another attribute); within it, the words that no phrase
    of another value of the attribute uses are the value words, or the whole phrase when there are none.
    Attributes the caption does not name are absent from the result.
    """
    if category not in TAXONOMY:
        return {}
    text = caption.lower()
    candidates = []
    for name, value in attributes.items():
        if name not in TAXONOMY[category] or value not in TAXONOMY[category][name]:
            continue
        for phrase in value_phrases(category, name, value):
            candidates.append((len(_strip_article(phrase)), name, _strip_article(phrase)))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    claimed: list[tuple[int, int]] = []
    found: dict[str, tuple[int, int, str]] = {}
    for _, name, phrase in candidates:
        if name in found:
            continue
        for m in _phrase_pattern(phrase).finditer(text):
            if all(m.end() <= a or m.start() >= b for a, b in claimed):
                found[name] = (m.start(), m.end(), phrase)
                claimed.append(m.span())
                break
    out: dict[str, list[tuple[int, int]]] = {}
    for name, (start, end, _) in found.items():
        others = {
            w
            for v in TAXONOMY[category][name]
            if v != attributes[name]
            for p in value_phrases(category, name, v)
            for w in _WORDS.findall(p.lower())
        }
        words = [(start + m.start(), start + m.end()) for m in _WORDS.finditer(text[start:end])]
        distinct = [(a, b) for a, b in words if text[a:b] not in others]
        out[name] = distinct or words
    return out


def token_char_spans(caption: str, words: Sequence[str], content_only: bool = False) -> list[tuple[int, int] | None]:
    """Where each token string of a text encoder's output lies in the (lower-cased) caption.

    The caption is split into words as the tokenizers do (runs of letters and digits, single punctuation
    marks); each token is the start of the next word it begins ("arm" of "armrests"), a "##" token the
    continuation of the previous one. ``content_only``: the tokens are a model's content words only
    (``text_content_words``), so words that are not content ("3d", "that") are skipped, never matched; if
    that fails for some token (a caption with no content word keeps them all), every word is tried.
    A token that cannot be found (``[UNK]``) is None.
    """
    if content_only:
        spans = _align(caption, words, True)
        if all(s is not None for s in spans):
            return spans
    return _align(caption, words, False)


_SPLIT = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def _align(caption: str, words: Sequence[str], content_only: bool) -> list[tuple[int, int] | None]:
    text = caption.lower()
    units = [(m.start(), m.group()) for m in _SPLIT.finditer(text)]
    nxt, pos = 0, -1  # next word to try; end of the last matched piece (-1: none)
    out: list[tuple[int, int] | None] = []
    for w in words:
        piece = w.lower()
        if piece.startswith("##") and len(piece) > 2:
            piece = piece[2:]
            if pos >= 0 and text.startswith(piece, pos):
                out.append((pos, pos + len(piece)))
                pos += len(piece)
            else:
                out.append(None)
            continue
        for k in range(nxt, len(units)):
            start, unit = units[k]
            if piece and unit.startswith(piece) and (not content_only or is_content_word(unit)):
                out.append((start, start + len(piece)))
                nxt, pos = k + 1, start + len(piece)
                break
        else:
            out.append(None)
    return out


def attribute_tokens(
    category: str, attributes: Mapping[str, str], caption: str, words: Sequence[str], content_only: bool = False
) -> dict[int, str]:
    """Token index -> the attribute it names, for the scored ``words`` of ``caption`` (see
    :func:`token_char_spans` for ``content_only``)."""
    spans = value_word_spans(category, attributes, caption)
    out: dict[int, str] = {}
    for t, span in enumerate(token_char_spans(caption, words, content_only)):
        if span is None:
            continue
        for name, ranges in spans.items():
            if any(a <= span[0] < b for a, b in ranges):
                out[t] = name
                break
    return out


# --------------------------------------------------------------------------------------------------
# The model side


def has_attention(model: Any) -> bool:
    """Whether the model has HAF attention to ground with (mode ``haf``); a global model has none."""
    return getattr(model, "haf", None) is not None and getattr(getattr(model, "config", None), "mode", "") == "haf"


@torch.no_grad()
def point_attention(
    model: Any, points: Tensor | np.ndarray, captions: list[str], groups: Any = None
) -> tuple[list[np.ndarray], list[list[str]]]:
    """The batched form of :meth:`DaerModel.explain`'s ``point_attention``, one caption per shape.

    Args:
        model: a ``DaerModel`` in mode ``haf``.
        points: (B, N, 3) points (each normalised to the unit sphere here, as ``explain`` does).
        captions: B captions.
        groups: the points' stored FPS/kNN groups (None: computed by the encoder). Stored groups were computed
            on the points centred and scaled in float32 (``normalize_batch``), these are normalised in float64
            first: the same similarity transform, so the same groups but for a near-tie that rounding could tip.

    Returns:
        per shape (T_b, N) attention of each scored token on each point (each level's attention of the
        point's nearest token centre times N_l, averaged with the policy's level weights), and the tokens.
    """
    from daer.models.pointops import knn

    haf = model.haf
    raw = points.detach().cpu().numpy() if isinstance(points, Tensor) else np.asarray(points)
    pts = np.stack([normalize_unit_sphere(p) for p in raw.astype(np.float32)])
    p = torch.from_numpy(pts).to(model.device)  # (B, N, 3)
    shapes = model.encode_points(p, groups)
    tf = model.encode_text(list(captions))
    attn = haf.attention(tf, shapes)  # per level (B, T, N_l)
    weights = haf.level_weight.clamp_min(0)
    weights = weights / weights.sum() if float(weights.sum()) > 0 else torch.full_like(weights, 1 / len(attn))
    b, t = attn[0].shape[:2]
    out = torch.zeros(b, t, p.shape[1], device=p.device)
    for a, c, w in zip(attn, shapes.centers, weights, strict=True):
        nearest = knn(p, c, 1)[..., 0]  # (B, N) index of each point's nearest token centre
        out += w * torch.gather(a, 2, nearest[:, None, :].expand(-1, t, -1)) * a.shape[2]
    arr = out.float().cpu().numpy()
    return [arr[i, : len(tf.words[i])] for i in range(b)], [list(w) for w in tf.words]


# --------------------------------------------------------------------------------------------------
# Over a data set


_Shape = tuple[str, dict[str, str], str, np.ndarray, np.ndarray, "np.ndarray | None"]


def _labelled_shapes(
    data_dir: str | os.PathLike[str], split: str, chosen: set[str], n_points: int | None, spec: GroupSpec | None
) -> Iterator[_Shape]:
    """(category, attributes, first caption, points, labels, stored groups or None) of the chosen shapes that
    have labels."""
    cols = ["category", "attributes", "captions", "points", "point_attrs"]
    subset = None
    for rec, row in iter_records_with_groups(data_dir, split, spec, columns=cols):
        if rec.id not in chosen or rec.point_attrs is None or rec.category not in TAXONOMY or not rec.captions:
            continue
        pts, labels = np.asarray(rec.points, dtype=np.float32), np.asarray(rec.point_attrs)
        if subset is None:
            subset = fixed_subset(len(pts), n_points)
        if subset is not None:
            pts, labels = pts[subset], labels[subset]
        yield rec.category, rec.attributes, rec.captions[0], pts, labels, row


def measure_grounding(
    model: Any,
    data_dir: str | os.PathLike[str],
    split: str = "test",
    *,
    max_shapes: int = DEFAULT_SHAPES,
    seed: int = 0,
    ids: Sequence[str] | None = None,
    batch_size: int = 32,
    n_points: int | None = None,
) -> GroundingResult | None:
    """Grounding of ``model`` on up to ``max_shapes`` labelled shapes of one split (module docstring).

    Args:
        model: a ``DaerModel``.
        data_dir: data set folder.
        split: "train", "val" or "test".
        max_shapes: shapes evaluated, a seeded random subset of the labelled ones (0: none, returns None).
        seed: seeds that subset.
        ids: only consider these shapes (the ones ``evaluate`` kept).
        batch_size: shapes encoded at a time.
        n_points: points the model takes (the same fixed subset ``evaluate`` serves); None: all.

    Returns:
        None for a model in mode ``global`` (it has no per-token attention over points: its only readout
        is one pooled embedding, so no word points anywhere), for data without part labels (imports,
        shards written before the ``point_attrs`` column) and for ``max_shapes=0``; else the result
        (its ``score`` None when no caption token named a scorable attribute).
    """
    if max_shapes < 0 or batch_size < 1:
        raise BadInputError(f"max_shapes must be >= 0 and batch_size >= 1, got {max_shapes} and {batch_size}")
    if max_shapes == 0 or not has_attention(model):
        return None
    manifest = read_manifest(data_dir)
    if not manifest.get("point_attrs"):
        return None
    spec = stored_spec(manifest, getattr(model, "config", None), served_points(manifest["n_points"], n_points))
    pool = [r.id for r in iter_records(data_dir, split, columns=[])]
    if ids is not None:
        wanted = set(ids)
        pool = [i for i in pool if i in wanted]
    if len(pool) > max_shapes:
        pick = np.random.default_rng([seed, 0x6A0]).choice(len(pool), max_shapes, replace=False)
        pool = [pool[i] for i in sorted(pick)]
    was_training = model.training
    model.eval()
    pairs: list[tuple[str, float, float]] = []
    n_shapes = 0
    try:
        with torch.inference_mode():
            batch: list[_Shape] = []
            for item in _labelled_shapes(data_dir, split, set(pool), n_points, spec):
                batch.append(item)
                if len(batch) == batch_size:
                    pairs += _score_batch(model, batch, spec)
                    n_shapes, batch = n_shapes + len(batch), []
            if batch:
                pairs += _score_batch(model, batch, spec)
                n_shapes += len(batch)
    finally:
        model.train(was_training)
    if n_shapes == 0:
        return None
    return summarise(pairs, n_shapes)


def _score_batch(model: Any, batch: list[_Shape], spec: GroupSpec | None) -> list[tuple[str, float, float]]:
    groups = unpack(np.stack([b[5] for b in batch]), spec) if spec is not None else None
    att, words = point_attention(model, np.stack([b[3] for b in batch]), [b[2] for b in batch], groups)
    content_only = bool(getattr(getattr(model, "config", None), "text_content_words", False))
    out = []
    for (category, attributes, caption, _, labels, _), a, w in zip(batch, att, words, strict=True):
        named = attribute_tokens(category, attributes, caption, w, content_only)
        masks = {t: attribute_mask(category, name) for t, name in named.items()}
        for t, share, chance in token_shares(a, labels, masks):
            out.append((f"{category}.{named[t]}", share, chance))
    return out


def grounding_score(model: Any, data_dir: str | os.PathLike[str], split: str = "test", **kwargs: Any) -> float | None:
    """:func:`measure_grounding`'s score alone (what ``daer eval --json`` reports as ``grounding``)."""
    result = measure_grounding(model, data_dir, split, **kwargs)
    return None if result is None else result.score
