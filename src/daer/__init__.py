"""daer: word- and part-level text-3D alignment (HAF, DAP) and fast hierarchical shape retrieval (ERS)."""

from __future__ import annotations

import os
from typing import Any

# Sleeping, not spinning, OpenMP threads: set before torch starts its pool (see daer.utils.threads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Transparent huge pages for torch's CPU tensors of 2 MB and more (torch's own switch, read at its first
# large allocation, so it holds wherever daer is imported before one is made). A training step allocates
# and frees tensors of up to 67 MB (the patch network's activations at batch 64); glibc unmaps each on
# free, so every step faults them in again a page at a time: 16,384 pages of 4 KB per 64 MB, or 32 of 2 MB.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import daer` does not pull in torch and transformers.
    if name == "load":
        from daer.api import load

        return load
    raise AttributeError(f"module 'daer' has no attribute {name!r}")
