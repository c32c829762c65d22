"""plait.local_models."""
