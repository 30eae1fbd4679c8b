"""Training: the fit loop (trainer), ensembles (mixture), the default recipe, model folders (checkpoint), scoring."""
