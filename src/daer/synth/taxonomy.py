"""The fixed Align3D-Synth taxonomy: 19 categories, their attributes and values.

These names are a contract: captions, metrics, results and tests use them verbatim.
Values are strings so every attribute compares the same way.
"""

from __future__ import annotations

import itertools

TAXONOMY: dict[str, dict[str, tuple[str, ...]]] = {
    "chair": {
        "legs": ("3", "4"),
        "back": ("short", "tall"),
        "armrests": ("yes", "no"),
        "leg_shape": ("round", "square"),
    },
    "stool": {"legs": ("3", "4"), "seat": ("round", "square"), "height": ("low", "tall")},
    "table": {"legs": ("1", "3", "4"), "top": ("round", "square", "rectangular"), "height": ("low", "tall")},
    "bench": {"legs": ("4", "6"), "backrest": ("yes", "no"), "length": ("short", "long")},
    "bed": {"headboard": ("yes", "no"), "footboard": ("yes", "no"), "width": ("single", "double")},
    "sofa": {"seats": ("2", "3"), "armrests": ("yes", "no"), "back": ("low", "high")},
    "bookshelf": {"shelves": ("2", "3", "4", "5"), "back_panel": ("yes", "no"), "width": ("narrow", "wide")},
    "cabinet": {"drawers": ("2", "3", "4"), "legs": ("yes", "no")},
    "lamp": {"shade": ("cone", "cylinder", "sphere"), "base": ("round", "square"), "height": ("desk", "floor")},
    "mug": {"handle": ("yes", "no"), "shape": ("straight", "tapered"), "height": ("short", "tall")},
    "bowl": {"depth": ("shallow", "deep"), "foot": ("yes", "no")},
    "vase": {"body": ("round", "cylindrical"), "neck": ("narrow", "wide"), "handles": ("0", "2")},
    "bottle": {"body": ("round", "square"), "neck": ("short", "long"), "cap": ("yes", "no")},
    "airplane": {"engines": ("2", "4"), "wings": ("straight", "swept"), "tail": ("conventional", "t_tail")},
    "car": {"body": ("sedan", "pickup", "van"), "wheels": ("4", "6")},
    "rocket": {"fins": ("3", "4"), "boosters": ("0", "2"), "nose": ("pointed", "round")},
    "tree": {"crown": ("cone", "sphere"), "trunk": ("short", "tall")},
    "house": {"floors": ("1", "2", "3"), "roof": ("flat", "gabled"), "chimney": ("yes", "no")},
    "ladder": {"rungs": ("4", "5", "6", "7", "8"), "rails": ("parallel", "tapered")},
}

CATEGORIES: tuple[str, ...] = tuple(TAXONOMY)


def combinations(category: str) -> list[dict[str, str]]:
    """All full attribute assignments of a category, in a fixed order."""
    attrs = TAXONOMY[category]
    names = list(attrs)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(attrs[n] for n in names))]


def combo_key(category: str, attributes: dict[str, str]) -> str:
    """A canonical string for a (category, full attribute assignment) pair."""
    return category + "|" + ",".join(f"{k}={attributes[k]}" for k in TAXONOMY[category])
