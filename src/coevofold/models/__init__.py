"""Models: the registry of fold classifiers (one file per branch), the ensemble, the classical baselines."""
