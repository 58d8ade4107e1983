"""Tracking a search: its MLflow runs (the driver's and each trial's), and the stores and connections under them, probed and locked."""
