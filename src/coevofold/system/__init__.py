"""The system predict answers with: homology search and its threshold, template search, combiner, calibration, preparation, evaluation."""
