"""Embedding in length-sorted, trimmed batches gives sentence-transformers' own vectors (ingestion speed)."""

from __future__ import annotations

import numpy as np


def test_sorted_trimmed_batches_match_sentence_transformers():
    from plait.local_models.embeddings.sentence_transformer import SentenceTransformerEmbeddings

    texts = ["short", "  padded text  ", "a b c " * 200,  # the last one is truncated to max_tokens
             *[f"sentence {i} " + "word " * (i * 7 % 50) for i in range(40)]]
    emb = SentenceTransformerEmbeddings(dtype="float32", batch_size=8)
    emb.tokenize_block = 16  # several blocks, each sorted and batched on its own
    ours = emb.embed_array(texts)
    reference = emb._load().encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=5)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-5
    assert np.abs(emb.embed_array(texts[5:6])[0] - ours[5]).max() < 1e-5
