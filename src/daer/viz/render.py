"""Fast point-cloud renders in numpy: perspective projection, z-buffered round splats, Pillow output.

No OpenGL, no matplotlib: one render of 2,048 points at 256x256 takes a few milliseconds, so
contact sheets of hundreds of shapes and attention heat maps are cheap.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from daer.errors import BadInputError

# Piecewise-linear colour maps: (position in 0..1, RGB in 0..1).
_CMAPS: dict[str, list[tuple[float, tuple[float, float, float]]]] = {
    # Perceptually ordered, readable on white (viridis control points).
    "viridis": [
        (0.0, (0.267, 0.005, 0.329)),
        (0.25, (0.229, 0.322, 0.546)),
        (0.5, (0.128, 0.567, 0.551)),
        (0.75, (0.369, 0.789, 0.383)),
        (1.0, (0.993, 0.906, 0.144)),
    ],
    # Attention heat: cold dark blue -> red -> bright yellow.
    "heat": [
        (0.0, (0.16, 0.20, 0.45)),
        (0.35, (0.45, 0.25, 0.60)),
        (0.65, (0.90, 0.25, 0.20)),
        (1.0, (1.00, 0.88, 0.25)),
    ],
    # Default shape colouring by height: slate blue at the bottom to warm sand at the top.
    "height": [
        (0.0, (0.22, 0.36, 0.62)),
        (0.5, (0.38, 0.62, 0.72)),
        (1.0, (0.90, 0.72, 0.45)),
    ],
}
CMAPS: tuple[str, ...] = tuple(_CMAPS)
_LUTS: dict[str, np.ndarray] = {}


def colormap(values: np.ndarray, name: str = "viridis") -> np.ndarray:
    """Map values in 0..1 (clipped) to RGB in 0..1 through a named colour map; returns (N, 3) float32."""
    if name not in _CMAPS:
        raise BadInputError(f"unknown colour map {name!r}; choose one of {', '.join(CMAPS)}")
    lut = _LUTS.get(name)
    if lut is None:
        stops = _CMAPS[name]
        xs = np.linspace(0.0, 1.0, 256)
        pos = [s[0] for s in stops]
        lut = np.stack([np.interp(xs, pos, [s[1][c] for s in stops]) for c in range(3)], axis=1).astype(np.float32)
        _LUTS[name] = lut
    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    return lut[np.clip((v * 255.0).round(), 0, 255).astype(np.intp)]


def _camera(azim: float, elev: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (right, up, toward-camera) for a camera at azimuth/elevation in degrees.

    Azimuth 0 looks at the front (the camera sits on -y), positive azimuth moves it toward +x;
    elevation lifts it above the horizon. +z is up.
    """
    a, e = np.radians(azim), np.radians(elev)
    back = np.array([np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)])
    right = np.array([np.cos(a), np.sin(a), 0.0])
    up = np.cross(back, right)
    return right, up, back


def _footprint(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel offsets of a round splat and a shading factor per offset (a lit ball, brighter in the middle)."""
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d2 = (dx**2 + dy**2).astype(np.float32)
    keep = d2 <= radius**2 + 0.25
    shade = 1.0 - 0.35 * d2[keep] / max(radius**2, 1.0)
    return dx[keep], dy[keep], shade.astype(np.float32)


def splat(
    px: np.ndarray,
    py: np.ndarray,
    depth: np.ndarray,
    rgb: np.ndarray,
    width: int,
    radius: float,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Draw round splats with a z-buffer: at every pixel the point with the smallest depth wins.

    Args:
        px, py: (N,) pixel coordinates (x right, y down).
        depth: (N,) distance from the camera (smaller is nearer).
        rgb: (N, 3) colours in 0..1.
        width: image width and height.
        radius: splat radius in pixels.
        background: RGB 0..255.

    Returns:
        (width, width, 3) float32 image in 0..1.
    """
    n = len(px)
    dx, dy, shade = _footprint(radius)
    k = len(dx)
    ix = (np.round(px).astype(np.int64)[:, None] + dx[None, :]).reshape(-1)  # (N*K,)
    iy = (np.round(py).astype(np.int64)[:, None] + dy[None, :]).reshape(-1)
    inside = (ix >= 0) & (ix < width) & (iy >= 0) & (iy < width)
    pix = iy * width + ix
    # Z-buffer by one sort: key = pixel * N + depth rank, so the first sample of each pixel is the nearest.
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(depth, kind="stable")] = np.arange(n)
    key = np.where(inside, pix * n + np.repeat(rank, k), np.iinfo(np.int64).max)
    order = np.argsort(key, kind="stable")[: int(inside.sum())]
    spix = pix[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = spix[1:] != spix[:-1]
    win = order[first]  # (V,) visible samples, one per covered pixel
    img = np.empty((width * width, 3), dtype=np.float32)
    img[:] = np.asarray(background, dtype=np.float32) / 255.0
    img[pix[win]] = rgb[win // k] * shade[win % k][:, None]
    return img.reshape(width, width, 3)


def render_points(
    points: np.ndarray,
    size: int = 256,
    colors: np.ndarray | None = None,
    values: np.ndarray | None = None,
    view: tuple[float, float] = (35.0, 22.0),
    *,
    cmap: str = "viridis",
    point_radius: float | None = None,
    supersample: int = 2,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Render a point cloud to an RGB image.

    Args:
        points: (N, 3) coordinates, +z up, front facing -y; any scale (the cloud is fitted to the frame).
        size: output width and height in pixels.
        colors: optional (N, 3) RGB per point in 0..1.
        values: optional (N,) scalars in 0..1 (e.g. attention), mapped through ``cmap``; ignored when
            ``colors`` is given. Without either, points are coloured by height.
        view: (azimuth, elevation) in degrees; the default is a front-right 3/4 view from above.
        cmap: colour map for ``values``: one of ``CMAPS``.
        point_radius: splat radius in output pixels (default scales with ``size``).
        supersample: render at this factor and downsample, for smooth edges.
        background: RGB 0..255.

    Returns:
        a ``size`` x ``size`` RGB ``PIL.Image.Image``.
    """
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise BadInputError(f"points must have shape (N, 3), got {pts.shape}")
    if not np.isfinite(pts).all():
        raise BadInputError("points contain NaN or infinite values")
    if size < 8 or supersample < 1:
        raise BadInputError(f"size must be >= 8 and supersample >= 1, got {size} and {supersample}")
    n = len(pts)
    if colors is not None:
        rgb = np.asarray(colors, dtype=np.float32)
        if rgb.shape != (n, 3):
            raise BadInputError(f"colors must have shape ({n}, 3), got {rgb.shape}")
        rgb = np.clip(rgb, 0.0, 1.0)
    elif values is not None:
        vals = np.asarray(values, dtype=np.float32).reshape(-1)
        if len(vals) != n:
            raise BadInputError(f"values must have {n} entries, got {len(vals)}")
        rgb = colormap(vals, cmap)
    else:
        z = pts[:, 2]
        rgb = colormap((z - z.min()) / max(float(np.ptp(z)), 1e-9), "height")

    # Centre and scale to the unit sphere, then a mild perspective from 3.5 radii away.
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2.0
    p = pts - centre
    p /= max(float(np.linalg.norm(p, axis=1).max()), 1e-9)
    right, up, back = _camera(*view)
    dist = 3.5
    depth = dist - p @ back  # (N,) distance from the camera plane
    persp = (dist - 0.5) / depth
    x, y = (p @ right) * persp, (p @ up) * persp

    w = size * supersample
    span = max(float(np.ptp(x)), float(np.ptp(y)), 1e-9)
    scale = 0.88 * w / span
    px = (x - (x.min() + x.max()) / 2.0) * scale + w / 2.0
    py = w / 2.0 - (y - (y.min() + y.max()) / 2.0) * scale

    # Depth cue: near points full brightness, far ones darker.
    dn = (depth - depth.min()) / max(float(np.ptp(depth)), 1e-9)
    rgb = rgb * (1.0 - 0.38 * dn)[:, None]

    radius = (point_radius if point_radius is not None else max(1.0, size / 150.0)) * supersample
    img = splat(px, py, depth, rgb, w, radius, background)
    out = Image.fromarray((img * 255.0 + 0.5).astype(np.uint8), "RGB")
    if supersample > 1:
        out = out.resize((size, size), Image.Resampling.BOX)
    return out
