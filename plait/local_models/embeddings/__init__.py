"""Local embeddings: sentence-transformers models (the bundled all-MiniLM-L6-v2 by default)."""
