"""Align3D-Synth: the procedural fine-grained text-3D benchmark (see SYNTH_SPEC.md)."""
