"""Per-word attention heat maps: one small render per word, its points coloured by that word's attention.

The model's :class:`~daer.models.model.Explanation` gives ``point_attention`` (T, N): each word's
attention mapped onto the input points, where 1 means uniform attention. A figure shows one render
per word, coloured on the ``heat`` map (dark blue = ignored, yellow = looked at), with the word and
its peak attention (×uniform) as a label, so a reader sees which part each word points at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from daer.errors import BadInputError
from daer.viz.render import render_points

_LABEL_H_FRAC = 0.16  # label strip height as a fraction of the tile size
_SPECIALS = frozenset({"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>", "<bos>", "<eos>"})


@dataclass
class WordAttention:
    """The points one word looks at most.

    Attributes:
        index: the word's position among the explanation's tokens.
        word: the token string.
        peak: its largest point attention (1 = uniform).
        top: indices of its ``k`` most-attended points, highest first.
        weights: their attention values.
    """

    index: int
    word: str
    peak: float
    top: np.ndarray
    weights: np.ndarray


def is_content_word(word: str) -> bool:
    """True for tokens worth a picture: not punctuation, not a special token."""
    return word not in _SPECIALS and any(ch.isalnum() for ch in word)


def check_attention(points: np.ndarray, words: list[str], attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes: points (N, 3) and attention (T, N) for T words; returns float32 copies."""
    pts = np.asarray(points, dtype=np.float32)
    att = np.asarray(attention, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise BadInputError(f"points must have shape (N, 3), got {pts.shape}")
    if att.ndim != 2 or att.shape != (len(words), len(pts)):
        raise BadInputError(f"attention must have shape ({len(words)}, {len(pts)}), got {att.shape}")
    if not np.isfinite(att).all():
        raise BadInputError("attention contains NaN or infinite values")
    return pts, att


def select_words(words: list[str], max_words: int | None = None, content_only: bool = True) -> list[int]:
    """Indices of the words to draw, in caption order (content words only by default, at most ``max_words``)."""
    keep = [i for i, w in enumerate(words) if not content_only or is_content_word(w)]
    if not keep:  # nothing but punctuation: draw what there is rather than nothing
        keep = list(range(len(words)))
    return keep if max_words is None else keep[:max_words]


def top_points(words: list[str], attention: np.ndarray, k: int = 10, content_only: bool = True) -> list[WordAttention]:
    """Each (content) word's ``k`` most-attended points.

    Args:
        words: T token strings.
        attention: (T, N) attention per word and point.
        k: points per word (clipped to N).
        content_only: skip punctuation and special tokens.
    """
    att = np.asarray(attention, dtype=np.float32)
    if att.ndim != 2 or att.shape[0] != len(words):
        raise BadInputError(f"attention must have shape ({len(words)}, N), got {att.shape}")
    if k < 1:
        raise BadInputError(f"k must be >= 1, got {k}")
    k = min(k, att.shape[1])
    out = []
    for i in select_words(words, None, content_only):
        row = att[i]
        top = np.argpartition(-row, k - 1)[:k]
        top = top[np.argsort(-row[top], kind="stable")]
        out.append(WordAttention(i, words[i], float(row.max()), top.astype(np.int64), row[top].copy()))
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def _fit(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: float) -> str:
    """Cut ``text`` with an ellipsis until it fits ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def splat_radius(n_points: int, size: int) -> float:
    """Splat radius in pixels for a ``size`` render of ``n_points`` points: sparse clouds get bigger splats.

    At 2,048 points this is the renderer's default (``size / 150``); fewer points grow it up to 3x.
    """
    return max(1.0, size / 150.0) * float(np.clip(np.sqrt(2048 / max(n_points, 1)), 1.0, 3.0))


def normalise_rows(attention: np.ndarray) -> np.ndarray:
    """Scale each row to 0..1 by its own min and max (a flat row becomes all zeros)."""
    att = np.asarray(attention, dtype=np.float32)
    lo = att.min(axis=1, keepdims=True)
    span = att.max(axis=1, keepdims=True) - lo
    return np.where(span > 1e-12, (att - lo) / np.maximum(span, 1e-12), 0.0).astype(np.float32)


def word_heatmaps(
    points: np.ndarray,
    words: list[str],
    attention: np.ndarray,
    size: int = 160,
    *,
    cols: int | None = None,
    max_words: int | None = 24,
    content_only: bool = True,
    view: tuple[float, float] = (35.0, 22.0),
    title: str | None = None,
) -> Image.Image:
    """A grid of renders, one per word, each coloured by that word's attention over the points.

    Colours are scaled per word (its least-attended point dark blue, its most-attended yellow), so each
    tile shows where that word looks; the label gives the word and its peak attention relative to
    uniform (``x1.0`` = no preference).

    Args:
        points: (N, 3) the shape's points.
        words: T token strings.
        attention: (T, N) attention of each word on each point (e.g. ``Explanation.point_attention``).
        size: tile width in pixels (the render is square; a label strip sits under it).
        cols: tiles per row (default: up to 6, balanced).
        max_words: draw at most this many words (None: all).
        content_only: skip punctuation and special tokens.
        view: (azimuth, elevation) of the camera in degrees.
        title: optional line of text above the grid (e.g. the caption).

    Returns:
        an RGB ``PIL.Image.Image``.
    """
    if size < 32:
        raise BadInputError(f"size must be >= 32, got {size}")
    pts, att = check_attention(points, words, attention)
    chosen = select_words(words, max_words, content_only)
    if not chosen:
        raise BadInputError("no words to draw")
    norm = normalise_rows(att[chosen])  # (W, N)
    n = len(chosen)
    cols = cols or min(6, max(1, math.ceil(math.sqrt(n * 1.5))))
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    label_h = max(14, int(size * _LABEL_H_FRAC))
    font = _font(max(10, int(label_h * 0.72)))
    title_h = label_h + 6 if title else 0
    radius = splat_radius(len(pts), size)
    sheet = Image.new("RGB", (cols * size, title_h + rows * (size + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((6, 3), _fit(title, font, cols * size - 12), fill=(20, 20, 20), font=font)
    for j, i in enumerate(chosen):
        x, y = (j % cols) * size, title_h + (j // cols) * (size + label_h)
        tile = render_points(pts, size=size, values=norm[j], view=view, cmap="heat", point_radius=radius)
        sheet.paste(tile, (x, y))
        label = _fit(f"{words[i]}  x{float(att[i].max()):.2f}", font, size - 8)
        draw.text((x + 4, y + size + 1), label, fill=(20, 20, 20), font=font)
    return sheet
