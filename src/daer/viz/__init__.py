"""Visualisation: point-cloud renders, contact sheets and attention heat maps."""
