"""Models: hierarchical point encoder, text encoder, Hierarchical Attention Fusion, the two-tower model."""
