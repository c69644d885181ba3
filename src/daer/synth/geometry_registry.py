"""Look up the mesh builder of a category: module ``daer.synth.geometry.<category>``, function ``build``."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
import trimesh

Builder = Callable[[dict[str, str], np.random.Generator], trimesh.Trimesh]


def builder_for(category: str) -> Builder:
    """The ``build(attributes, rng) -> Trimesh`` function of a category."""
    module = importlib.import_module(f"daer.synth.geometry.{category}")
    return module.build
