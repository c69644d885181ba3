"""daer: word- and part-level text-3D alignment (HAF, DAP) and fast hierarchical shape retrieval (ERS)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import daer` does not pull in torch and transformers.
    if name == "load":
        from daer.api import load

        return load
    raise AttributeError(f"module 'daer' has no attribute {name!r}")
