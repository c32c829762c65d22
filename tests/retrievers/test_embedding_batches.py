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


def test_queries_run_on_one_thread_without_changing_any_other_threads_count(embeddings):
    """Queries run on the embeddings' own one-thread worker; no other thread's torch thread count
    changes meanwhile, nor the count a thread takes on its first torch call (a server's chat decode
    in another thread keeps all its threads)."""
    import threading

    import pytest
    import torch

    before = torch.get_num_threads()
    if before < 2:
        pytest.skip("one CPU thread only: nothing to keep")
    embeddings.embed_query("set up the worker")
    assert embeddings._on_one_thread(torch.get_num_threads) == 1
    done = threading.Event()

    def queries() -> None:
        while not done.is_set():
            embeddings.embed_query("a question about vitamin D and bone density")

    worker = threading.Thread(target=queries)
    worker.start()
    seen = []
    try:
        for _ in range(100):  # fresh threads take the process default on their first torch call
            t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
            t.start()
            t.join()
            seen.append(torch.get_num_threads())  # and this thread's own count
    finally:
        done.set()
        worker.join()
    assert set(seen) == {before}
