"""The sentence-transformers embeddings backend on the bundled all-MiniLM-L6-v2 (real model, offline)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from plait.embeddings import Embeddings
from plait.local_models.embeddings.sentence_transformer import (
    SentenceTransformerEmbeddings,
    cpu_has_bf16,
    default_embeddings,
    resolve_dtype,
)

TEXTS = ["The cat sat on the mat.", "Quantum computers use qubits.",
         "A very long sentence " + "about many different things " * 80, "Dogs bark."]


@pytest.fixture(scope="module")
def emb() -> SentenceTransformerEmbeddings:
    return default_embeddings()


def test_is_embeddings_and_runnable(emb):
    assert isinstance(emb, Embeddings)
    vec = emb.invoke("hello")
    assert isinstance(vec, list) and len(vec) == 384 and isinstance(vec[0], float)
    vecs = emb.invoke(["a", "b"])
    assert len(vecs) == 2 and len(vecs[0]) == 384


def test_vectors_normalised_ordered_and_batch_independent(emb):
    docs = np.asarray(emb.embed_documents(TEXTS))
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    # order is the input's, even though batches are sorted by length inside
    one_by_one = np.asarray([emb.embed_query(t) for t in TEXTS])
    assert np.allclose(docs, one_by_one, atol=2e-2)
    assert (np.sum(docs * one_by_one, axis=1) > 0.999).all()
    small = SentenceTransformerEmbeddings(batch_size=1)
    small._model, small.resolved = emb._load(), emb.resolved  # same weights, other batching
    assert (np.sum(np.asarray(small.embed_documents(TEXTS)) * docs, axis=1) > 0.999).all()
    # meaning: the query is nearest its paraphrase
    q = np.asarray(emb.embed_query("Where did the kitten sit?"))
    assert int(np.argmax(docs @ q)) == 0
    assert emb.embed_documents([]) == []


def test_low_precision_matches_float32():
    fp32 = SentenceTransformerEmbeddings(dtype="float32", device="cpu")
    bf16 = SentenceTransformerEmbeddings(dtype="bfloat16", device="cpu")
    a, b = fp32.embed_array(TEXTS), bf16.embed_array(TEXTS)
    assert fp32.resolved["dtype"] == "float32" and bf16.resolved["dtype"] == "bfloat16"
    cos = np.sum(a * b, axis=1)
    assert cos.min() > 0.999, cos


MANY = [f"Passage {i}: " + "retrieval fuses dense and lexical evidence " * (1 + i % 9) for i in range(70)]


@pytest.mark.skipif(not cpu_has_bf16(), reason="the fused encoder is on by default only for bfloat16 on the CPU")
def test_fused_encoder_matches_eager_and_float32(emb):
    assert len(MANY) >= SentenceTransformerEmbeddings.fuse_min_texts
    fused = SentenceTransformerEmbeddings(device="cpu")
    eager = SentenceTransformerEmbeddings(device="cpu", fuse=False)
    fp32 = SentenceTransformerEmbeddings(device="cpu", dtype="float32")
    fused.embed_query("a query stays eager")
    assert fused._fused is None  # nothing traced for small calls
    a, b, c = fused.embed_array(MANY), eager.embed_array(MANY), fp32.embed_array(MANY)
    assert fused.resolved.get("fused") is True and "fused" not in eager.resolved and eager._fused is None
    assert np.sum(a * b, axis=1).min() > 0.9999 and np.sum(a * c, axis=1).min() > 0.9995
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # one text alone (eager) and inside a fused batch: the same vector
    assert float(np.dot(a[5], fused.embed_array([MANY[5]])[0])) > 0.9999


def test_untraceable_model_falls_back_to_eager_with_a_warning(monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    emb = SentenceTransformerEmbeddings(device="cpu", fuse=True)
    with pytest.warns(RuntimeWarning, match="without the fused encoder.*cannot trace this.*fuse=False"):
        vecs = emb.embed_array(MANY)
    assert emb._fused is False and "fused" not in emb.resolved and vecs.shape == (len(MANY), 384)
    eager = SentenceTransformerEmbeddings(device="cpu", dtype=emb.resolved["dtype"], fuse=False).embed_array(MANY)
    assert np.sum(vecs * eager, axis=1).min() > 0.99999
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        emb.embed_array(MANY)
    assert not [w for w in later if "fused encoder" in str(w.message)]  # tried once only


async def test_async_matches_sync(emb):
    assert np.allclose(await emb.aembed_query("hello"), emb.embed_query("hello"), atol=1e-6)
    docs = await emb.aembed_documents(TEXTS[:2])
    assert np.allclose(docs, emb.embed_documents(TEXTS[:2]), atol=1e-6)
    assert len(await emb.ainvoke(["x", "y", "z"])) == 3


def test_tokenizer_and_limits(emb):
    assert emb.max_tokens == 256
    short, long = emb.count_tokens(["a short text", TEXTS[2]])
    assert short == 5 and long > 256  # counted without truncation


def test_options_validated_and_resolved():
    with pytest.raises(ValueError, match="dtype"):
        SentenceTransformerEmbeddings(dtype="int3")
    with pytest.raises(ValueError, match="batch_size"):
        SentenceTransformerEmbeddings(batch_size=0)
    assert resolve_dtype("auto", "cuda") == "float16"
    assert resolve_dtype("auto", "cpu") == ("bfloat16" if cpu_has_bf16() else "float32")
    assert resolve_dtype("float32", "cuda") == "float32"
    with pytest.raises(TypeError, match="not a string"):
        default_embeddings().embed_documents(["ok", 3])  # type: ignore[list-item]


def test_constructor_is_cheap():
    e = SentenceTransformerEmbeddings("/no/such/model")
    assert e._model is None  # nothing loaded until first use
    with pytest.raises(Exception):  # noqa: B017 - whatever sentence-transformers raises for a bad path
        e.embed_query("x")


@pytest.mark.gpu
def test_cuda_auto_device_half_precision():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = SentenceTransformerEmbeddings()
    cpu = SentenceTransformerEmbeddings(device="cpu", dtype="float32")
    a, b = gpu.embed_array(TEXTS), cpu.embed_array(TEXTS)
    assert gpu.resolved["device"] == "cuda" and gpu.resolved["dtype"] == "float16"
    assert np.sum(a * b, axis=1).min() > 0.999
