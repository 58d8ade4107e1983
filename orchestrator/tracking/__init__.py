"""Tracking: a search's MLflow runs (the driver's and each trial's), its stores and connections, probed and locked."""
