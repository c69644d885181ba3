"""Contact sheets: a grid of point-cloud renders with the category and first caption under each."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from daer.data.record import ShapeRecord
from daer.errors import BadInputError
from daer.utils.atomic import atomic_path
from daer.viz.render import render_points

_TEXT_LINES = 4  # category + up to 3 caption lines


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; the last kept line ends in an ellipsis when text is cut."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and font.getlength(trial) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and font.getlength(last + "...") > width:
            last = last[:-1]
        lines = lines[: max_lines - 1] + [last.rstrip() + "..."]
    return lines


def select_diverse(records: Iterable[ShapeRecord], n: int, scan: int = 5000) -> list[ShapeRecord]:
    """Up to ``n`` records from the first ``scan``, taking one per category first, then filling in order."""
    firsts: list[ShapeRecord] = []
    rest: list[ShapeRecord] = []
    seen: set[str] = set()
    for i, rec in enumerate(records):
        if rec.category not in seen:
            seen.add(rec.category)
            firsts.append(rec)
        elif len(rest) < n:
            rest.append(rec)
        if len(firsts) >= n or i + 1 >= scan:
            break
    return (firsts + rest)[:n]


def contact_sheet(
    records: Iterable[ShapeRecord],
    out_path: str | os.PathLike[str],
    n: int = 16,
    cols: int = 4,
    cell: int = 256,
) -> Path:
    """Render up to ``n`` records into a grid and write it (PNG, JPEG... by extension) atomically.

    Args:
        records: shapes to show, in order (only the first ``n`` are used).
        out_path: image file to write.
        n: number of cells.
        cols: cells per row.
        cell: render size in pixels.

    Returns:
        the written path.
    """
    if n < 1 or cols < 1:
        raise BadInputError(f"n and cols must be >= 1, got n={n}, cols={cols}")
    chosen = []
    for rec in records:
        chosen.append(rec)
        if len(chosen) >= n:
            break
    if not chosen:
        raise BadInputError("no shapes to show on the contact sheet")
    out_path = Path(out_path)
    fmt = Image.registered_extensions().get(out_path.suffix.lower())
    if fmt is None:
        raise BadInputError(f"{out_path}: unknown image extension (use .png or .jpg)")

    font = _font(max(10, cell // 20))
    bold = _font(max(11, cell // 17))
    line_h = int(max(10, cell // 20) * 1.35)
    text_h = line_h * _TEXT_LINES + 10
    cols = min(cols, len(chosen))
    rows = -(-len(chosen) // cols)
    sheet = Image.new("RGB", (cols * cell, rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, rec in enumerate(chosen):
        x0, y0 = (i % cols) * cell, (i // cols) * (cell + text_h)
        if len(rec.points):
            sheet.paste(render_points(rec.points, size=cell), (x0, y0))
        draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell + text_h - 1], outline=(225, 225, 225))
        draw.text((x0 + 6, y0 + cell), rec.category or "(no category)", fill=(20, 20, 20), font=bold)
        caption = rec.captions[0] if rec.captions else ""
        for j, line in enumerate(_wrap(caption, font, cell - 12, _TEXT_LINES - 1)):
            draw.text((x0 + 6, y0 + cell + line_h * (j + 1) + 2), line, fill=(70, 70, 70), font=font)
    with atomic_path(out_path) as tmp:
        sheet.save(tmp, format=fmt)
    return out_path
