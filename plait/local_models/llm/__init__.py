"""Local chat models: transformers (incl. GGUF), the fast int4 decoder, decoding helpers."""
