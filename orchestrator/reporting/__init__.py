"""The report and plots: a search's closing outputs (front CSV, plots, presets, parent run), messages and report."""
