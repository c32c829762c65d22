"""plait.interop."""
