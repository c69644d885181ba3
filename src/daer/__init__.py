"""daer: word- and part-level text-3D alignment (HAF, DAP) and fast hierarchical shape retrieval (ERS)."""

from __future__ import annotations

import os
from typing import Any

# Sleeping, not spinning, OpenMP threads: set before torch starts its pool (see daer.utils.threads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import daer` does not pull in torch and transformers.
    if name == "load":
        from daer.api import load

        return load
    raise AttributeError(f"module 'daer' has no attribute {name!r}")
