"""Part drop: a training view of a part-labelled shape with one part removed, captioned with what is left.

Where two attributes always change together in the training combinations (a conical crown only
ever on a short trunk), the caption "a tree with a conical crown" can be matched by looking at the
trunk, and an unseen combination then fails. Removing one labelled part breaks that: the view
without the trunk is captioned by the crown alone, so the crown words have to be read from the
crown. The removed points are replaced by repeats of the remaining ones (the jitter of
:class:`~daer.data.dataset.Augment` separates them), so the cloud keeps its size.

An attribute whose part was removed is left out of the caption; with ``absent``, an attribute whose
every point was removed and that has an "absent" value ("no" armrests, "0" handles) is captioned with
that value instead, which is what the view then shows (and may be a combination the training split
holds out).

Removing a part that makes the object what it is (a chair's back or legs) leaves something that is no
longer that object: trained on such views, the packaged-size model read "a chair with armrests" as a
bench (benchmarks/RESULTS.md, "part drop"). With ``optional_only`` only optional parts are removed (every
attribute they express has an absent value: armrests, a chimney, a bowl's foot) and the view is captioned
with those values absent, so every view is a real shape of the category. A view that lost a part the
category needs is marked ``defining``: training can then contrast it with its own category's shapes only
(``part_drop_within``), so that the crown words still have to be read from the crown while "a chair" is
never taught on a chair without its back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daer.errors import BadInputError
from daer.synth.captions import random_caption
from daer.synth.phrases import PHRASES
from daer.synth.taxonomy import TAXONOMY

ABSENT_VALUES: tuple[str, ...] = ("no", "0")


@dataclass(frozen=True)
class DroppedView:
    """A shape with one part removed: points (N, 3), labels (N,), the attribute values it still shows, a caption,
    and whether the removed part was one the category needs (``defining``: not every attribute it expresses
    can be absent)."""

    points: np.ndarray
    labels: np.ndarray
    attributes: dict[str, str]
    caption: str
    defining: bool = False


@dataclass(frozen=True)
class PartDrop:
    """Training augmentation over Align3D-Synth part labels (see the module docstring).

    Attributes:
        p: chance that a shape is served with one part removed.
        max_cover: only parts covering at most this share of the points are removed (a tree keeps its crown).
        absent: caption a wholly removed part with its attribute's absent value, where it has one.
        optional_only: remove only optional parts, captioned absent (implies ``absent``).
        generic: a view that lost a part its category needs is captioned without the category's name, by
            what it still shows ("an object with three legs and armrests"), so the name is never taught on it.
    """

    p: float = 0.25
    max_cover: float = 0.75
    absent: bool = False
    optional_only: bool = False
    generic: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise BadInputError(f"part drop chance must be in [0, 1], got {self.p}")
        if not 0.0 < self.max_cover < 1.0:
            raise BadInputError(f"part drop max_cover must be in (0, 1), got {self.max_cover}")

    def apply(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        category: str,
        attributes: dict[str, str],
        rng: np.random.Generator,
    ) -> DroppedView | None:
        """The view with one part removed, or None (not drawn, not a synth category, or no part to remove)."""
        names = list(TAXONOMY.get(category, ()))
        if not names or rng.random() >= self.p:
            return None
        labels = np.asarray(labels).astype(np.int64, copy=False)
        cover = [float(((labels >> b) & 1).mean()) for b in range(len(names))]
        candidates = [b for b, c in enumerate(cover) if 0.0 < c <= self.max_cover]
        if self.optional_only:
            candidates = [b for b in candidates if _optional(*_remove(labels, b)[1:], category)]
        if not candidates:
            return None
        bit = candidates[int(rng.integers(len(candidates)))]
        drop, gone, left = _remove(labels, bit)
        shown: dict[str, str] = {}
        for b, name in enumerate(names):
            if name not in attributes:
                continue
            if not (gone >> b) & 1:
                shown[name] = attributes[name]
            elif (self.absent or self.optional_only) and not (left >> b) & 1:
                absent = _absent_value(category, name)
                if absent is not None:
                    shown[name] = absent
        keep = np.flatnonzero(~drop)
        rows = np.concatenate([keep, rng.choice(keep, size=len(labels) - len(keep), replace=True)])
        defining = not _optional(gone, left, category)
        if defining and self.generic:
            if not shown:
                return None
            caption = generic_caption(category, shown, rng)
        else:
            caption = random_caption(category, shown, "train", rng)
        return DroppedView(points[rows], labels[rows].astype(np.int32), shown, caption, defining)


def generic_caption(category: str, attributes: dict[str, str], rng: np.random.Generator) -> str:
    """The attributes' noun phrases without the category's name: "an object with <phrase>, <phrase> and <phrase>"."""
    phrases = [str(rng.choice(PHRASES[category].attrs[name].np[value])) for name, value in attributes.items()]
    phrases = [phrases[i] for i in rng.permutation(len(phrases))]
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"an object with {listed}"


def _remove(labels: np.ndarray, bit: int) -> tuple[np.ndarray, int, int]:
    """(which points carry ``bit``, the union of their labels, the union of the other points' labels)."""
    drop = ((labels >> bit) & 1).astype(bool)
    return drop, label_union(labels[drop]), label_union(labels[~drop])


def _optional(gone: int, left: int, category: str) -> bool:
    """Whether a removal (``gone``: the removed points' labels, ``left``: the others', from :func:`_remove`)
    removes whole parts whose every attribute can be absent."""
    return all(
        not (left >> b) & 1 and _absent_value(category, name) is not None
        for b, name in enumerate(TAXONOMY[category])
        if (gone >> b) & 1
    )


def _absent_value(category: str, attribute: str) -> str | None:
    """The attribute's value that says its part is not there ("no", "0"), or None where it has none."""
    return next((v for v in TAXONOMY[category][attribute] if v in ABSENT_VALUES), None)


def label_union(labels: np.ndarray) -> int:
    """The union of a set of point labels (0 for none)."""
    return int(np.bitwise_or.reduce(labels)) if len(labels) else 0
