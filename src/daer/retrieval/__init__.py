"""Retrieval: the ERS hierarchical index, exact/IVF/HNSW baselines and the on-disk index store."""
