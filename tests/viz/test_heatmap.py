"""Per-word heat maps: top points against a full sort, layout, word selection, colours where the attention is."""

from __future__ import annotations

import numpy as np
import pytest

from daer.errors import BadInputError
from daer.viz.heatmap import is_content_word, normalise_rows, select_words, splat_radius, top_points, word_heatmaps
from daer.viz.render import colormap


def cloud(n: int = 512, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n, 3)).astype(np.float32)
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def test_top_points_match_a_full_sort() -> None:
    rng = np.random.default_rng(1)
    words = ["a", "red", ",", "chair"]
    att = rng.random((4, 300)).astype(np.float32)
    got = top_points(words, att, k=7)
    assert [w.word for w in got] == ["a", "red", "chair"]  # punctuation skipped
    for w in got:
        ref = np.argsort(-att[w.index], kind="stable")[:7]
        assert np.array_equal(np.sort(w.top), np.sort(ref))
        assert np.all(np.diff(w.weights) <= 0)
        assert w.peak == pytest.approx(float(att[w.index].max()))
        assert np.allclose(w.weights, att[w.index][w.top])
    assert len(top_points(words, att, k=10_000)[0].top) == 300  # k clipped to N


def test_word_selection() -> None:
    assert is_content_word("legs") and is_content_word("3") and is_content_word("##ing")
    assert not is_content_word(",") and not is_content_word("[CLS]") and not is_content_word("-")
    assert select_words(["a", ",", "b", "."]) == [0, 2]
    assert select_words([",", "."]) == [0, 1]  # nothing but punctuation: draw it anyway
    assert select_words(["a", "b", "c"], max_words=2) == [0, 1]


def test_normalise_rows() -> None:
    out = normalise_rows(np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]]))
    assert np.allclose(out[0], [0.0, 1.0, 0.5]) and np.allclose(out[1], 0.0)


def test_layout_size() -> None:
    pts = cloud()
    words = ["a", "tall", ",", "lamp", "with", "a", "shade"]
    att = np.ones((len(words), len(pts)), np.float32)
    img = word_heatmaps(pts, words, att, size=64, cols=3)
    label_h = max(14, int(64 * 0.16))
    assert img.size == (3 * 64, 2 * (64 + label_h))  # 6 content words in 2 rows of 3
    titled = word_heatmaps(pts, words, att, size=64, cols=3, title="a tall lamp")
    assert titled.size[1] == img.size[1] + label_h + 6


def test_hot_colour_lands_where_the_word_looks() -> None:
    """A word attending only to the top of a sphere paints the upper part of its tile hot, the rest cold."""
    pts = cloud(2048)
    top = pts[:, 2] > 0.6
    att = np.where(top, 5.0, 1.0)[None].astype(np.float32)  # (1, N)
    img = np.asarray(word_heatmaps(pts, ["top"], att, size=128, view=(0.0, 0.0)), dtype=np.float32) / 255
    tile = img[:128]  # the render, without the label strip
    hot = colormap(np.array([1.0]), "heat")[0]
    # pixels close in hue to the hot end (shading only darkens): high red, red well above blue
    is_hot = (tile[..., 0] > 0.45) & (tile[..., 0] - tile[..., 2] > 0.25) & (tile.sum(-1) < 2.9)
    rows = np.nonzero(is_hot)[0]
    assert hot[0] > hot[2] and len(rows) > 50
    assert np.mean(rows < 64) > 0.95  # all of it in the upper half (z up on screen)


def test_bad_input() -> None:
    pts = cloud(100)
    with pytest.raises(BadInputError, match="attention must have shape"):
        word_heatmaps(pts, ["a", "b"], np.ones((3, 100)))
    with pytest.raises(BadInputError, match="NaN"):
        word_heatmaps(pts, ["a"], np.full((1, 100), np.nan))
    with pytest.raises(BadInputError, match="points"):
        word_heatmaps(np.ones((100, 2)), ["a"], np.ones((1, 100)))
    with pytest.raises(BadInputError, match="size"):
        word_heatmaps(pts, ["a"], np.ones((1, 100)), size=8)
    with pytest.raises(BadInputError, match="k must be"):
        top_points(["a"], np.ones((1, 100)), k=0)


def test_splat_radius_grows_for_sparse_clouds() -> None:
    assert splat_radius(2048, 300) == pytest.approx(2.0)  # the renderer's default at 2,048 points
    assert splat_radius(512, 300) == pytest.approx(4.0)
    assert splat_radius(10, 300) == pytest.approx(6.0)  # capped at 3x
    assert splat_radius(100_000, 60) == pytest.approx(1.0)
