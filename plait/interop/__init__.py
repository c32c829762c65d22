"""Interop with other frameworks: :mod:`plait.interop.langchain` (needs ``plait[langchain]``)."""
