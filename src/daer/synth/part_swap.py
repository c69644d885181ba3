"""Part swap: a training view that takes one labelled part from another shape of its category.

Where the training combinations tie two attributes together (tree keeps 2 of its 4 combinations for
training: a conical crown only ever on a short trunk), a word can be matched by the other attribute's
part, and an unseen combination then fails (benchmarks/RESULTS.md, "Diagnosis"). Part drop breaks the
tie only where a part can be removed; a swap breaks it for every part: shape A keeps everything but
one labelled part, which comes from a donor B of the same category, and the view is captioned with
A's values except those the swapped part expresses, which are B's. A crown then occurs on both
trunks, so "conical crown" has to be read from the crown.

A part that sets a size and lies between kept parts (a lamp's pole between its shade and base) is
not swapped: its length is the gap the kept parts leave, so the view would show the recipient's size
under the donor's caption. Legs that hang below a seat do set the height, and swap.

The swapped point set is closed over shared labels: a chair leg point sets both ``legs`` and
``leg_shape``, so those two move together (and both take B's values). B's part is placed in A's
frame by the bounding boxes of what the two shapes keep (centre to centre, one scale from the
horizontal extents, since +z is up and vertical proportions carry attributes such as height), the
union is resampled to A's point count and normalised to the unit sphere as every shape is.

A swap can show a full combination the data set's split holds out. ``forbidden`` names those it must
never show (the trainer passes the test combinations of an Align3D-Synth set, so the test split stays
unseen in every form); a draw that would show one is redrawn with another donor or part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from daer.data.sampling import normalize_unit_sphere
from daer.errors import BadInputError
from daer.synth.captions import random_caption
from daer.synth.part_drop import DroppedView, label_union
from daer.synth.taxonomy import TAXONOMY, combo_key

# Attributes that a part's extent sets (a stool's height is its legs' length).
SIZE_ATTRIBUTES: frozenset[str] = frozenset({"height", "width", "length", "depth"})

# A donor: (points (N, 3), labels (N,), attribute values) of another shape of the same category.
Donor = tuple[np.ndarray, np.ndarray, dict[str, str]]


@dataclass(frozen=True)
class PartSwap:
    """Training augmentation over Align3D-Synth part labels (see the module docstring).

    Attributes:
        p: chance that a shape is served with one part swapped in from a donor.
        max_cover: a swapped part covers at most this share of either shape's points, so both keep
            enough to register the part by.
        tries: donors (each with a random part) drawn before the shape is served as it is.
        forbidden: full-combination keys (:func:`~daer.synth.taxonomy.combo_key`) no view may show.
    """

    p: float = 0.5
    max_cover: float = 0.75
    tries: int = 8
    forbidden: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise BadInputError(f"part swap chance must be in [0, 1], got {self.p}")
        if not 0.0 < self.max_cover < 1.0:
            raise BadInputError(f"part swap max_cover must be in (0, 1), got {self.max_cover}")
        if self.tries < 1:
            raise BadInputError(f"part swap tries must be >= 1, got {self.tries}")

    def apply(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        category: str,
        attributes: dict[str, str],
        rng: np.random.Generator,
        donor: Callable[[np.random.Generator], Donor | None],
    ) -> DroppedView | None:
        """The view with one part from a donor, or None (not drawn, not a full synth shape, or no swap
        that changes a value, fits ``max_cover`` and avoids ``forbidden`` in ``tries`` draws)."""
        names = list(TAXONOMY.get(category, ()))
        if not names or set(attributes) != set(names) or rng.random() >= self.p:
            return None
        labels = np.asarray(labels).astype(np.int64, copy=False)
        for _ in range(self.tries):
            drawn = donor(rng)
            if drawn is None:
                return None
            d_points, d_labels, d_attrs = drawn
            d_labels = np.asarray(d_labels).astype(np.int64, copy=False)
            bit = int(rng.integers(len(names)))
            mask = swap_mask(labels, d_labels, bit)
            part, d_part = (labels & mask) != 0, (d_labels & mask) != 0
            if not (part.any() or d_part.any()) or max(part.mean(), d_part.mean()) > self.max_cover:
                continue
            shown = {n: d_attrs[n] if (mask >> b) & 1 else attributes[n] for b, n in enumerate(names)}
            if shown == attributes or combo_key(category, shown) in self.forbidden:
                continue
            sizes = any((mask >> b) & 1 for b, n in enumerate(names) if n in SIZE_ATTRIBUTES)
            if sizes and _between(d_points[~d_part], d_points[d_part]):
                continue
            placed = register(points[~part], d_points[~d_part], d_points[d_part])
            merged = np.concatenate([points[~part], placed])
            merged_labels = np.concatenate([labels[~part], d_labels[d_part]])
            n = len(points)
            rows = rng.choice(len(merged), size=n, replace=len(merged) < n)
            view = normalize_unit_sphere(merged[rows]).astype(np.float32)
            caption = random_caption(category, shown, "train", rng)
            return DroppedView(view, merged_labels[rows].astype(np.int32), shown, caption)
        return None


def swap_mask(labels: np.ndarray, donor_labels: np.ndarray, bit: int) -> int:
    """The attribute bits that move with ``bit``: closed over every label of either shape that shares a bit
    with the set (a leg point carries ``legs`` and ``leg_shape``, so both move)."""
    both = np.concatenate([np.asarray(labels, np.int64), np.asarray(donor_labels, np.int64)])
    mask = 1 << bit
    while True:
        grown = mask | label_union(both[(both & mask) != 0])
        if grown == mask:
            return mask
        mask = grown


def register(kept: np.ndarray, donor_kept: np.ndarray, donor_part: np.ndarray) -> np.ndarray:
    """Place ``donor_part`` in the frame of ``kept`` by the bounding boxes of ``kept`` and ``donor_kept``.

    The part is scaled by one factor (the ratio of the larger horizontal extents, clipped to [0.5, 2]).
    Per axis, a part centre inside the donor's box keeps its relative place in the new box (legs stay
    spread under the seat); one outside it keeps its scaled distance from the nearest face (legs hang
    from the seat's underside, a lamp's base stays at the foot of its pole).
    """
    if not len(donor_part) or not len(kept) or not len(donor_kept):
        return donor_part.reshape(-1, 3)
    lo, hi = kept.min(0), kept.max(0)
    d_lo, d_hi = donor_kept.min(0), donor_kept.max(0)
    extent, d_extent = float((hi - lo)[:2].max()), float((d_hi - d_lo)[:2].max())
    scale = float(np.clip(extent / d_extent, 0.5, 2.0)) if d_extent > 1e-9 else 1.0
    centre = (donor_part.min(0) + donor_part.max(0)) / 2
    place = (centre - d_lo) / np.maximum(d_hi - d_lo, 1e-9)
    inside = lo + place * (hi - lo)
    moved = np.where(place < 0, lo + scale * (centre - d_lo), np.where(place > 1, hi + scale * (centre - d_hi), inside))
    return moved + scale * (donor_part - centre)


def _between(kept: np.ndarray, part: np.ndarray) -> bool:
    """Whether ``part``'s vertical centre lies inside the vertical extent of ``kept`` (neither hangs below
    nor stands on top of it)."""
    if not len(kept) or not len(part):
        return False
    centre = (part[:, 2].min() + part[:, 2].max()) / 2
    return bool(kept[:, 2].min() < centre < kept[:, 2].max())
