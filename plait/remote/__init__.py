"""plait.remote."""
