"""Data: readers of every SCOP format and the presets (tables), homology-aware splits, fold names, fetch."""
