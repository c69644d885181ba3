"""Per-word attention pictures of one shape per category, optionally before and after DAP calibration."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from daer.data.record import ShapeRecord
from daer.utils.atomic import atomic_path
from daer.viz.heatmap import word_heatmaps


def one_per_category(records: list[ShapeRecord] | object) -> list[ShapeRecord]:
    """The first shape of each category, in category order."""
    chosen: dict[str, ShapeRecord] = {}
    for record in records:  # type: ignore[attr-defined]
        chosen.setdefault(record.category, record)
    return [chosen[c] for c in sorted(chosen)]


def explain_picture(model, record: ShapeRecord, title: str, size: int = 150) -> Image.Image:
    """Word heat maps of the record's first caption on its points, under the model's current policy."""
    caption = record.captions[0]
    exp = model.explain(caption, record.points)
    return word_heatmaps(exp.points, exp.words, exp.point_attention, size=size, title=f"{title}: {caption}")


def stack(images: list[Image.Image]) -> Image.Image:
    """Images one above the other on white."""
    width = max(im.width for im in images)
    out = Image.new("RGB", (width, sum(im.height for im in images)), "white")
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height
    return out


def write_attention_pictures(
    model,
    records: list[ShapeRecord],
    out_dir: str | os.PathLike[str],
    change_policy: Callable[[], str] | None = None,
) -> list[Path]:
    """One PNG per record: heat maps now, and again after ``change_policy()`` when given.

    Args:
        model: a HAF-mode model with ``explain``.
        records: the shapes to draw (e.g. one per category).
        out_dir: folder for ``<category>.png``.
        change_policy: called once between the two rows (e.g. a DAP calibration); returns a label.
    """
    before = {r.id: explain_picture(model, r, "before" if change_policy else "attention") for r in records}
    after: dict[str, Image.Image] = {}
    if change_policy is not None:
        label = change_policy()
        after = {r.id: explain_picture(model, r, f"after ({label})") for r in records}
    paths = []
    for r in records:
        image = stack([before[r.id], after[r.id]]) if after else before[r.id]
        path = Path(out_dir) / f"{r.category or 'shape'}-{r.id}.png"
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
        paths.append(path)
    return paths
