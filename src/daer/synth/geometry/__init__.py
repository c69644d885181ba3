"""Mesh builders, one module per Align3D-Synth category, each with ``build(attributes, rng) -> trimesh.Trimesh``."""
