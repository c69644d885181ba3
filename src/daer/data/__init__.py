"""Data: the Align3D-Synth generator, mesh import, public formats and Parquet shards."""
