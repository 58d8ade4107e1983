"""Records, front and presets: what a search keeps (search.json, study, trial folders), read back; no Ray."""
