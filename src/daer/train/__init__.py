"""Training: contrastive losses, the trainer, and DAP (MCTS calibration of the HAF policy)."""
