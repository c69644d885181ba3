"""Point-cloud renders: z-buffer against a painter's-algorithm loop, output size, colours, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from daer.errors import BadInputError
from daer.viz.render import _footprint, colormap, render_points, splat


def cloud(n: int = 2048, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n, 3)).astype(np.float32)
    return p / np.linalg.norm(p, axis=1, keepdims=True)  # points on the unit sphere


def painter_reference(px, py, depth, rgb, width, radius, background):
    """The obvious way: draw splats one by one from far to near, nearer ones overwrite."""
    img = np.empty((width, width, 3), np.float32)
    img[:] = np.asarray(background, np.float32) / 255.0
    dx, dy, shade = _footprint(radius)
    for i in np.argsort(-depth, kind="stable"):
        cx, cy = int(np.round(px[i])), int(np.round(py[i]))
        for ox, oy, s in zip(dx, dy, shade, strict=True):
            x, y = cx + ox, cy + oy
            if 0 <= x < width and 0 <= y < width:
                img[y, x] = rgb[i] * s
    return img


@pytest.mark.parametrize("radius", [1.0, 2.5])
def test_splat_matches_painter(radius: float) -> None:
    rng = np.random.default_rng(1)
    n, w = 300, 40
    px, py = rng.uniform(-3, w + 3, n), rng.uniform(-3, w + 3, n)  # some splats fall partly outside
    depth = rng.permutation(n).astype(np.float64)  # distinct depths: a unique answer per pixel
    rgb = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    got = splat(px, py, depth, rgb, w, radius, (255, 255, 255))
    np.testing.assert_array_equal(got, painter_reference(px, py, depth, rgb, w, radius, (255, 255, 255)))


def test_render_size_and_background() -> None:
    img = render_points(cloud(), size=200)
    assert isinstance(img, Image.Image) and img.size == (200, 200) and img.mode == "RGB"
    a = np.asarray(img)
    assert (a[0, 0] == 255).all() and (a[-1, -1] == 255).all()  # white corners
    assert (a.min(axis=2) < 200).mean() > 0.2  # the shape covers a good part of the frame


def test_render_colours() -> None:
    p = cloud(500)
    hot = np.asarray(render_points(p, size=64, values=np.ones(500), supersample=1)).reshape(-1, 3)
    cold = np.asarray(render_points(p, size=64, values=np.zeros(500), supersample=1)).reshape(-1, 3)
    assert not np.array_equal(hot, cold)
    red = np.asarray(render_points(p, size=64, colors=np.tile([1.0, 0.0, 0.0], (500, 1)), supersample=1))
    drawn = red.reshape(-1, 3)[red.reshape(-1, 3).min(axis=1) < 255]
    assert (drawn[:, 1] == 0).all() and (drawn[:, 2] == 0).all() and (drawn[:, 0] > 0).all()
    np.testing.assert_allclose(colormap(np.array([0.0, 1.0]), "viridis")[1], (0.993, 0.906, 0.144), atol=1e-3)


def test_views_differ() -> None:
    p = cloud() * np.array([1.0, 0.3, 0.6], np.float32)
    assert not np.array_equal(np.asarray(render_points(p, view=(0, 0))), np.asarray(render_points(p, view=(90, 0))))


def test_bad_input() -> None:
    with pytest.raises(BadInputError, match="shape"):
        render_points(np.zeros((10, 2)))
    with pytest.raises(BadInputError, match="NaN"):
        render_points(np.full((10, 3), np.nan))
    with pytest.raises(BadInputError, match="colors"):
        render_points(cloud(10), colors=np.zeros((9, 3)))
    with pytest.raises(BadInputError, match="colour map"):
        render_points(cloud(10), values=np.zeros(10), cmap="rainbow")


def test_render_speed() -> None:
    p = cloud()
    render_points(p)
    best = min(_timed(p) for _ in range(3))
    assert best < 1 / 20, f"one 256x256 render of 2,048 points took {best * 1000:.1f} ms (goal: >= 20/s)"


def _timed(p: np.ndarray) -> float:
    t = time.perf_counter()
    render_points(p, size=256)
    return time.perf_counter() - t


def test_contact_sheet(tmp_path) -> None:
    from daer.data.record import ShapeRecord
    from daer.viz.sheet import contact_sheet, select_diverse

    long = "a tall four-legged chair with armrests and round legs " * 4
    recs = [
        ShapeRecord(id=str(i), category=c, attributes={}, captions=[long], split="train", points=cloud(256, i))
        for i, c in enumerate(["chair", "chair", "lamp", "chair", "table"])
    ]
    picked = select_diverse(iter(recs), 4)
    assert [r.category for r in picked] == ["chair", "lamp", "table", "chair"]
    out = contact_sheet(picked, tmp_path / "sheet.png", n=4, cols=3, cell=128)
    img = Image.open(out)
    assert img.size[0] == 3 * 128 and img.size[1] > 2 * 128
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]  # written atomically, no temp left
    with pytest.raises(BadInputError, match="extension"):
        contact_sheet(recs, tmp_path / "sheet.xyz")
