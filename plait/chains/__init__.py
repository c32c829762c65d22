"""plait.chains."""
