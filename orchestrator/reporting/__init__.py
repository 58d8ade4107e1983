"""The report and plots: the end of a search (front CSV, plots, presets, the parent run), its messages and its report page."""
