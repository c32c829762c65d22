"""Moved: multi-query retrieval is a retriever, :mod:`plait.retrievers.multi_query`."""

from plait.retrievers.multi_query import VARIANTS_PROMPT, MultiQueryRetriever, parse_variants

__all__ = ["VARIANTS_PROMPT", "MultiQueryRetriever", "parse_variants"]
