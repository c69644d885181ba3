"""daer: word- and part-level text-3D alignment (HAF, DAP) and fast hierarchical shape retrieval (ERS)."""

__version__ = "0.1.0"
