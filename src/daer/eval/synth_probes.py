"""Align3D-Synth probes of the evaluation: whether a data set is Align3D-Synth, and attribute accuracy.

Attribute accuracy needs what only the generator knows (each shape's caption template and variant, the
taxonomy's other values), so it lives here, apart from the metrics every data set has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from daer.errors import BadInputError
from daer.synth.captions import n_templates, render_caption
from daer.synth.generator import SYNTH_GENERATOR, caption_draws, parse_shape_id
from daer.synth.taxonomy import TAXONOMY

Shape = tuple[str, str, dict[str, str], str]  # (id, category, attributes, first caption)


def is_synth(manifest: dict[str, Any], categories: Sequence[str]) -> bool:
    """Whether shapes of these categories are Align3D-Synth shapes (synth probes and prompts apply)."""
    return manifest.get("generator") == SYNTH_GENERATOR and all(c in TAXONOMY for c in categories)


def attribute_texts(sid: str, cat: str, attrs: dict[str, str], caption: str, dseed: int, pos: int) -> list[list[str]]:
    """[[true caption], [same caption with attribute a at each other value] for each attribute a].

    The template and variant are those of the stored first caption (``caption_draws``); a shape whose id or
    caption does not reproduce gets a held-out template and variant drawn from its position.
    """
    parsed = parse_shape_id(sid)
    draw = caption_draws(parsed[1], parsed[0], 1)[0] if parsed else None
    if draw is not None and draw.text == caption and draw.attributes == attrs:
        template, group, variant = draw.template, draw.group, draw.variant
    else:
        rng = np.random.default_rng([dseed, pos, 0xA77])
        template, group, variant = int(rng.integers(n_templates("heldout"))), "heldout", int(rng.integers(1 << 16))
    try:
        out = [[render_caption(cat, attrs, template, group, variant)]]
        for name, values in TAXONOMY[cat].items():
            swaps = [v for v in values if v != attrs[name]]
            out.append([render_caption(cat, {**attrs, name: v}, template, group, variant) for v in swaps])
    except (BadInputError, KeyError) as e:
        raise BadInputError(f"shape {sid!r}: cannot render attribute captions ({e})") from e
    return out


def attribute_scores(
    model: Any, feats: Any, shapes: Sequence[Shape], dseed: int, start: int, true: list[float], other: list[list[float]]
) -> None:
    """Score each shape of a batch (``feats``, one row per entry of ``shapes``, the first at data set position
    ``start``) against its true caption and every one-value swap of it; append per (shape, attribute) the true
    caption's score to ``true`` and the swaps' scores to ``other``."""
    groups = [attribute_texts(sid, cat, attrs, cap, dseed, start + j) for j, (sid, cat, attrs, cap) in
              enumerate(shapes)]  # fmt: skip
    flat = [t for g in groups for part in g for t in part]
    tf = model.encode_text(flat)
    at = 0
    for b, g in enumerate(groups):
        size = sum(len(part) for part in g)
        s = model.score(tf.select(slice(at, at + size)), feats.select(slice(b, b + 1))).float().cpu().numpy()[:, 0]
        at += size
        pos = 1
        for part in g[1:]:
            true.append(float(s[0]))
            other.append([float(v) for v in s[pos : pos + len(part)]])
            pos += len(part)
