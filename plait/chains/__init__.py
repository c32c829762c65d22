"""Applications built from plait's components, one idea per module (import the one you need):

- :mod:`plait.chains.rag`: question answering with inline citations mapped to sources
  (``RAGChain``, ``RAGAnswer``), written as composed steps;
- :mod:`plait.chains.conversational`: history + question -> standalone question -> cited answer;
- :mod:`plait.chains.history`: chat history in SQLite per session, trimmed to a token budget;
- :mod:`plait.chains.agent`: the tool-calling loop (native or prompted tool calls), traced and streamed;
- :mod:`plait.chains.extraction`: text -> validated pydantic object;
- :mod:`plait.chains.cache`: exact and semantic caches for any model or chain.

Retrievers that chains use (multi-query, the relevance gate) live in :mod:`plait.retrievers`.
"""
