"""Local image models: diffusers pipelines and plait-shapes (pipeline, data, checker, trainer)."""
