"""A static HTML gallery: for each query, the top results as renders with per-word attention heat maps."""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from daer.utils.atomic import atomic_open, atomic_path
from daer.viz.heatmap import word_heatmaps
from daer.viz.render import render_points

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px} h2{font-size:17px;margin-top:32px} .q{color:#555}
.row{display:flex;gap:12px;flex-wrap:wrap} .card{background:#fff;border:1px solid #ddd;border-radius:6px;
padding:8px;width:200px;font-size:12px} .card img{width:200px;height:200px}
.ok{color:#1b7f3b;font-weight:600} .no{color:#b3261e;font-weight:600}
details img{max-width:100%} summary{cursor:pointer;color:#345}
"""


def _save(image: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def write_gallery(
    results: list[dict[str, Any]],
    points_of: Callable[[str], np.ndarray],
    explain: Callable[[str, np.ndarray], Any] | None,
    out_dir: str | os.PathLike[str],
    k: int = 5,
    title: str = "daer search gallery",
) -> Path:
    """Write ``out_dir/index.html`` and its images.

    Args:
        results: search outputs ``{"query", "latency_ms", "results": [{"id","score","category","caption"}]}``.
        points_of: the (N, 3) points of a shape id.
        explain: ``model.explain`` (None for a global-mode model: no heat maps).
        out_dir: gallery folder.
        k: results shown per query.
        title: page title.
    """
    out = Path(out_dir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style>"]
    parts.append(f"<h1>{html.escape(title)}</h1><p>Each card is a search result; open “why” to see which points")
    parts.append(" each word of the query attends to (HAF attention, bright = more attention).</p>")
    for qi, res in enumerate(results):
        parts.append(f"<h2>{qi + 1}. <span class='q'>“{html.escape(res['query'])}”</span>")
        parts.append(f" <small>({res['latency_ms']:.1f} ms)</small></h2><div class='row'>")
        for ri, hit in enumerate(res["results"][:k]):
            pts = points_of(hit["id"])
            thumb = f"img/q{qi}_r{ri}.png"
            _save(render_points(pts, size=200), out / thumb)
            card = [
                f"<div class='card'><img src='{thumb}' alt='{html.escape(hit['id'])}'>",
                f"<div><b>{ri + 1}. {html.escape(hit.get('category', ''))}</b> · score {hit['score']:.3f}</div>",
                f"<div>{html.escape(hit.get('caption', ''))}</div>",
            ]
            if explain is not None:
                exp = explain(res["query"], pts)
                heat = f"img/q{qi}_r{ri}_words.png"
                _save(word_heatmaps(exp.points, exp.words, exp.point_attention, size=120, cols=4), out / heat)
                card.append(f"<details><summary>why</summary><img src='{heat}' alt='word attention'></details>")
            card.append("</div>")
            parts.append("".join(card))
        parts.append("</div>")
    page = out / "index.html"
    with atomic_open(page, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return page
