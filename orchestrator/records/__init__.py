"""Records, front and presets: what a search keeps (search.json, the study, trial folders, seed runs) read back, no Ray."""
