"""plait.retrievers."""
