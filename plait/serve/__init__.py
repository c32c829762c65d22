"""plait.serve."""
