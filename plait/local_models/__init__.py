"""Local models, by kind: ``llm/`` (chat), ``embeddings/``, ``diffusion/`` (images)."""
