"""Built-in experiment trackers (msabench.tracking)."""
