"""One shape with its text: the row type every data source produces and every shard stores."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class ShapeRecord:
    """A shape and its captions.

    Attributes:
        id: unique within a data set.
        category: category name ("" when unknown).
        attributes: attribute name -> value, all strings.
        captions: one or more non-empty captions.
        split: one of ``SPLITS``.
        points: (N, 3) float32 (float16 allowed), centred and scaled to the unit sphere.
        normals: optional (N, 3) unit normals.
        source: where it came from ("synth", a file path relative to the import root, a data set name).
        extra: more string fields, stored as JSON.
        point_attrs: optional (N,) uint16 part labels, one per point: bit i is set when the point lies on a
            part that expresses the i-th attribute of its category (Align3D-Synth; SYNTH_SPEC.md "Part
            labels"). None where the source has no labels.
    """

    id: str
    category: str
    attributes: dict[str, str]
    captions: list[str]
    split: str
    points: np.ndarray
    normals: np.ndarray | None = None
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    point_attrs: np.ndarray | None = None
