"""TransformersChatModel on the real bundled SmolLM2 (GGUF), and on tiny random models saved to folders."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from plait.messages import AssistantChunk, SystemMessage, UserMessage
from tests.chat_model_contract import ChatModelContract

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from plait.local_models.llm import llama_decoder  # noqa: E402
from plait.local_models.llm.decoding import ChatTokenizer  # noqa: E402
from plait.local_models.llm.transformers_chat import ContextLengthError, TransformersChatModel  # noqa: E402

GREEDY = {"temperature": 0.0}


def add_up(chunks: list[AssistantChunk]) -> Any:
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    return total.to_message()


# --- the bundled model ------------------------------------------------------------------------------
class TestContract(ChatModelContract):
    # grammar-constrained decoding makes even SmolLM2-135M call tools and answer JSON in shape
    tools_reliable = True
    json_reliable = True

    @pytest.fixture
    def model(self, smollm2: TransformersChatModel) -> TransformersChatModel:
        return smollm2


def test_default_model_knows_the_capital_of_france(smollm2: TransformersChatModel) -> None:
    msg = smollm2.invoke("What is the capital of France?")
    assert "Paris" in msg.content
    assert msg.finish_reason == "stop"
    assert msg.usage is not None and msg.usage.prompt_tokens > 10 and msg.usage.completion_tokens > 0
    assert msg.model == "SmolLM2-135M-Instruct.Q4_1"
    assert smollm2._engine.quantized, "the Q4_1 GGUF should run on its 4-bit weights on the CPU"


def test_stream_is_token_by_token_and_adds_up(smollm2: TransformersChatModel) -> None:
    prompt = "Name five animals that live in the sea."
    chunks = list(smollm2.stream(prompt, max_tokens=40))
    assert sum(1 for c in chunks if c.content) >= 10, "expected roughly one chunk per token"
    assert chunks[-1].finish_reason in ("stop", "length") and chunks[-1].usage is not None
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert add_up(chunks).content == smollm2.invoke(prompt, max_tokens=40).content


def test_same_seed_same_text_and_seeds_differ(smollm2: TransformersChatModel) -> None:
    opts = {"temperature": 1.0, "max_tokens": 24}
    prompt = "Write one sentence about a dragon."
    first = smollm2.invoke(prompt, seed=7, **opts).content
    assert smollm2.invoke(prompt, seed=7, **opts).content == first
    assert "".join(c.content for c in smollm2.stream(prompt, seed=7, **opts)) == first
    others = {smollm2.invoke(prompt, seed=s, **opts).content for s in (1, 2, 3)}
    assert len(others | {first}) > 1, "different seeds should (almost always) give different text"


def test_top_k_1_and_tiny_top_p_are_greedy(smollm2: TransformersChatModel) -> None:
    prompt = "Say something about the moon."
    greedy = smollm2.invoke(prompt, max_tokens=16).content
    assert smollm2.invoke(prompt, max_tokens=16, temperature=1.5, top_k=1, seed=3).content == greedy
    assert smollm2.invoke(prompt, max_tokens=16, temperature=1.5, top_p=1e-6, seed=4).content == greedy


def test_stop_sequence_cuts_exactly(smollm2: TransformersChatModel) -> None:
    prompt = "Count from 1 to 10, separated by commas."
    full = smollm2.invoke(prompt, max_tokens=40).content
    assert "5" in full, full
    cut = smollm2.invoke(prompt, max_tokens=40, stop=["5", "never-appears"])
    assert cut.content == full[:full.index("5")] and cut.finish_reason == "stop"
    # a multi-character stop sequence split across tokens, streamed
    stop = full[full.index("3"):full.index("3") + 3]
    streamed = add_up(list(smollm2.stream(prompt, max_tokens=40, stop=[stop])))
    assert streamed.content == full[:full.index(stop)]


def test_concurrent_threads_and_tasks_never_mix(smollm2: TransformersChatModel) -> None:
    prompts = ["What is 2 + 2?", "Name a fruit.", "What colour is the sky?"]
    expected = {p: smollm2.invoke(p, max_tokens=12).content for p in prompts}
    results: dict[str, list[str]] = {p: [] for p in prompts}

    def stream_it(p: str) -> None:
        results[p].append("".join(c.content for c in smollm2.stream(p, max_tokens=12)))

    threads = [threading.Thread(target=stream_it, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {p: r[0] for p, r in results.items()} == expected

    async def both() -> list[Any]:
        return await asyncio.gather(*(smollm2.ainvoke(p, max_tokens=12) for p in prompts))

    assert [m.content for m in asyncio.run(both())] == [expected[p] for p in prompts]


def test_nested_request_on_the_same_thread_is_a_clear_error(smollm2: TransformersChatModel) -> None:
    stream = smollm2.stream("Tell me a story.", max_tokens=8)
    next(stream)
    with pytest.raises(RuntimeError, match="already streaming"):
        smollm2.invoke("hi", max_tokens=2)
    stream.close()  # releases the model
    assert smollm2.invoke("hi", max_tokens=2).content


def test_prompt_longer_than_the_window_names_both_lengths(smollm2: TransformersChatModel) -> None:
    with pytest.raises(ContextLengthError, match=r"The prompt is \d+ tokens but .* context window is 8192"):
        smollm2.invoke("word " * 9000)
    small = copy.copy(smollm2)  # shares the loaded engine
    small.context_window = 64
    with pytest.raises(ContextLengthError, match="window is 64"):
        small.invoke([SystemMessage(content="Be brief."), UserMessage(content="word " * 20),
                      UserMessage(content="word " * 20), UserMessage(content="Say hi.")])
    # max_tokens is shortened to the room left in the window
    msg = small.invoke("Write a long story about a cat.", max_tokens=200)
    assert msg.usage is not None and msg.usage.total_tokens <= 64 and msg.finish_reason == "length"


def test_drop_oldest_truncation_keeps_system_and_last_message(smollm2: TransformersChatModel) -> None:
    small = copy.copy(smollm2)
    small.context_window, small.truncation = 80, "drop_oldest"
    engine = smollm2._engine
    messages = [SystemMessage(content="Answer briefly."), UserMessage(content="apple " * 60),
                UserMessage(content="banana " * 5), UserMessage(content="What is the capital of France?")]
    ids = small._prompt_ids(engine, messages)
    text = engine.tokenizer.decode(ids)
    assert "apple" not in text and "banana" in text and "Answer briefly." in text and "France" in text
    assert len(ids) < 80
    msg = small.invoke(messages, max_tokens=10)
    assert msg.usage is not None and msg.usage.prompt_tokens == len(ids)


def test_errors_for_bad_input() -> None:
    with pytest.raises(FileNotFoundError, match="/no/such/model.gguf"):
        TransformersChatModel("/no/such/model.gguf")
    with pytest.raises(FileNotFoundError, match="missing-model-folder"):
        TransformersChatModel("./missing-model-folder")
    with pytest.raises(ValueError, match="truncation"):
        TransformersChatModel(truncation="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_kk"):
        TransformersChatModel(top_kk=3)


def test_unknown_hub_id_offline_names_the_id(smollm2: TransformersChatModel) -> None:
    model = TransformersChatModel("someorg/no-such-model")  # HF_HUB_OFFLINE=1 in tests
    with pytest.raises(OSError, match="someorg/no-such-model"):
        model.invoke("hi")


def test_bad_sampling_values_are_errors(smollm2: TransformersChatModel) -> None:
    with pytest.raises(ValueError, match="top_p"):
        smollm2.invoke("hi", temperature=1.0, top_p=1.5)
    with pytest.raises(ValueError, match="max_tokens"):
        smollm2.invoke("hi", max_tokens=0)


def test_frequency_penalty_breaks_up_repetition(smollm2: TransformersChatModel) -> None:
    prompt = "List the numbers from 1 to 30, separated by commas."
    plain = smollm2.invoke(prompt, max_tokens=40).content
    penalised = smollm2.invoke(prompt, max_tokens=40, frequency_penalty=1.0).content
    assert plain.count(",") >= 10 and penalised.count(",") < plain.count(","), (plain, penalised)
    with pytest.raises(ValueError, match="frequency_penalty must be between -2 and 2"):
        smollm2.invoke("hi", frequency_penalty=5)


def test_constructor_is_cheap(tmp_path: Path) -> None:
    """The constructor reads nothing: an empty folder builds fine (loading it would raise)."""
    assert not TransformersChatModel()._engine.loaded
    assert not TransformersChatModel(tmp_path)._engine.loaded


def test_gguf_cache_makes_the_second_load_fast(smollm2: TransformersChatModel) -> None:
    from plait.defaults import data_dir, smollm2_gguf_path
    from plait.local_models.llm.gguf_cache import cached_folder_for, file_sha256, is_cached

    gguf = smollm2_gguf_path()
    folder = cached_folder_for(gguf)
    assert is_cached(gguf) and folder.parent == data_dir() / "models" / "gguf"
    assert file_sha256(gguf)[:16] in folder.name
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    prepared = list(folder.glob("plait-decoder-int4-v2-torch*.safetensors"))
    assert len(prepared) == 1, "the first load should cache the prepared int4 decoder next to the weights"
    fresh = TransformersChatModel().load()  # a new engine: reads the prepared decoder
    assert fresh._engine.quantized and isinstance(fresh._engine.tokenizer, ChatTokenizer)
    assert fresh.invoke("What is the capital of France?").content == smollm2.invoke(
        "What is the capital of France?").content
    # a second load in a fresh process needs neither transformers nor the float32 weights
    code = ("import sys; from plait.local_models.llm.transformers_chat import TransformersChatModel as M; "
            "m = M().load(); assert 'transformers' not in sys.modules, 'transformers was imported'; "
            "print(m.invoke('What is the capital of France?', max_tokens=12).content)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == smollm2.invoke("What is the capital of France?", max_tokens=12).content


def test_chat_tokenizer_matches_transformers(smollm2: TransformersChatModel, smollm2_tokenizer: Any) -> None:
    from plait.local_models.llm.gguf_cache import cached_gguf_folder

    fast = ChatTokenizer.from_folder(cached_gguf_folder(smollm2.spec))
    assert fast is not None and fast.eos_token_id == smollm2_tokenizer.eos_token_id
    conversations = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Héllo — ça va? 日本語 🙂"},
         {"role": "assistant", "content": "  spaced   out\n\ttabs"}, {"role": "user", "content": "<|im_end|> x"}],
    ]
    for turns in conversations:
        expected = smollm2_tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True)
        expected = expected["input_ids"] if hasattr(expected, "keys") else expected
        assert fast.apply_chat_template(turns, add_generation_prompt=True) == list(expected)
        assert fast.decode(expected) == smollm2_tokenizer.decode(expected)
        assert fast.decode(expected, skip_special_tokens=True) == smollm2_tokenizer.decode(
            expected, skip_special_tokens=True)
    text = "Plain text, with  two spaces and ünïcödé."
    assert fast(text)["input_ids"] == smollm2_tokenizer(text)["input_ids"]


def test_count_tokens_and_context_window(smollm2: TransformersChatModel) -> None:
    messages = [SystemMessage(content="Be brief."), UserMessage(content="What is the capital of France?")]
    assert smollm2.count_tokens(messages) == len(smollm2._engine.render(messages))
    assert smollm2.count_tokens("hi") == smollm2.count_tokens([UserMessage(content="hi")])
    assert smollm2.context_window == 8192
    small = copy.copy(smollm2)
    small.context_window = 64
    assert small.context_window == 64 and smollm2.context_window == 8192


def _at_odd_address(t: Any) -> Any:
    """A copy of ``t`` that starts 8 bytes past a 64-byte boundary, as transformers' memory-mapped weights often do."""
    buffer = torch.empty(t.numel() * t.element_size() + 128, dtype=torch.uint8)
    start = (8 - buffer.data_ptr()) % 64
    return buffer[start:start + t.numel() * t.element_size()].view(t.dtype).view(t.shape).copy_(t)


def test_prepared_decoder_saves_and_loads_exactly(tmp_path: Path) -> None:
    """The file holds the prepared tensors bit for bit, and the loaded decoder's logits equal the saved one's.

    The model's weights are moved to odd addresses first: MKL's matrix-vector product rounds by the
    weight's address (2-3 ulps here), so this fails unless the decoder keeps its float weights aligned.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    for p in model.parameters():
        p.data = _at_odd_address(p.data)
    ids = torch.tensor([1, 520, 931, 198, 1780])
    modes = [None, "int4"] if llama_decoder.int4_available() else [None]
    for quantize in modes:
        decoder = llama_decoder.LlamaDecoder(model, quantize=quantize)
        decoder.save(tmp_path / "prepared.safetensors")
        loaded = llama_decoder.LlamaDecoder.load(tmp_path / "prepared.safetensors")
        assert loaded.spec == decoder.spec and loaded.tensors.keys() == decoder.tensors.keys()
        for name, tensor in decoder.tensors.items():
            assert loaded.tensors[name].dtype == tensor.dtype and torch.equal(loaded.tensors[name], tensor), name
        with torch.inference_mode():
            decoder.start(8)
            loaded.start(8)
            expected = [decoder.step(ids[:4]), decoder.step(ids[4:])]
            got = [loaded.step(ids[:4]), loaded.step(ids[4:])]
        for g, e in zip(got, expected, strict=True):
            assert torch.equal(g, e), (quantize, (g - e).abs().max())


def test_is_4bit_reads_types_missing_from_an_old_cache_folder(smollm2: TransformersChatModel, tmp_path: Path) -> None:
    import json

    from plait.local_models.llm.gguf_cache import is_4bit

    (tmp_path / "plait-gguf-complete.json").write_text(json.dumps({"gguf_file": smollm2.spec}))
    assert is_4bit(tmp_path)
    assert json.loads((tmp_path / "plait-gguf-complete.json").read_text())["matrix_types"]["Q4_1"] > 0


# --- tiny random models in folders --------------------------------------------------------------------
def _tiny(kind: str, folder: Path, tokenizer: Any, **extra: Any) -> Any:
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[kind]
    config = cls(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                 bos_token_id=1, eos_token_id=2, pad_token_id=2, **extra)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, smollm2_tokenizer: Any) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    _tiny("llama", folder, smollm2_tokenizer)
    return folder


def test_loads_a_model_folder_and_streams(tiny_llama: Path) -> None:
    model = TransformersChatModel(tiny_llama)
    assert model.model_name == tiny_llama.name
    msg = model.invoke("Hello", max_tokens=8)
    assert msg.finish_reason in ("stop", "length") and msg.usage is not None
    assert not model._engine.quantized  # float32 folder: quantize="auto" keeps its dtype
    assert isinstance(model._engine.decoder, llama_decoder.LlamaDecoder)
    chunks = list(model.stream("Hello", max_tokens=8))
    assert add_up(chunks).content == msg.content


@pytest.mark.parametrize("kind,extra", [("llama", {}), ("qwen2", {}), ("mistral", {"sliding_window": None}),
                                        ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}})])
def test_lean_decoder_matches_transformers(kind: str, extra: dict[str, Any], tmp_path: Path,
                                           smollm2_tokenizer: Any) -> None:
    model = _tiny(kind, tmp_path, smollm2_tokenizer, **extra)
    assert llama_decoder.supports(model.config)
    decoder = llama_decoder.LlamaDecoder(model)
    ids = torch.tensor([1, 520, 9531, 198, 1780, 314, 260, 3575])
    with torch.inference_mode():
        decoder.start(16)
        got = [decoder.step(ids[:5])] + [decoder.step(ids[i:i + 1]) for i in range(5, 8)]
        expected = [model(ids[None, :n]).logits[0, -1] for n in (5, 6, 7, 8)]
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=2e-4, rtol=1e-4)


def test_hf_decoder_fallback_matches_generate(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    decoder = llama_decoder.HFDecoder(model)
    ids = torch.tensor([1, 520, 9531, 198])
    with torch.inference_mode():
        expected = model.generate(ids[None], max_new_tokens=6, min_new_tokens=6, do_sample=False)[0, 4:].tolist()
        decoder.start(16)
        logits, got = decoder.step(ids), []
        for _ in range(6):
            got.append(int(logits.argmax()))
            logits = decoder.step(torch.tensor([got[-1]]))
    assert got == expected


def test_int4_packing_reproduces_q4_1_and_q8_0_weights() -> None:
    if not llama_decoder.int4_available():
        pytest.skip("this torch has no int4 CPU kernel")
    torch.manual_seed(0)
    n, k, g = 96, 128, llama_decoder.GROUP
    # Q4_1-style weights: per group of 32, scale d and minimum m, integers 0..15 with both ends present
    q = torch.randint(0, 16, (n, k // g, g)).float()
    q[..., 0], q[..., 1] = 0, 15
    d, m = torch.rand(n, k // g, 1) * 0.02 + 1e-3, -torch.rand(n, k // g, 1) * 0.1
    w4 = (d * q + m).reshape(n, k)
    # Q8_0-style weights: integers -127..127 with one scale per group
    q8 = torch.randint(-127, 128, (n, k // g, g)).float()
    q8[..., 0] = 127
    w8 = (q8 * (torch.rand(n, k // g, 1) * 0.01 + 1e-3)).reshape(n, k)
    x = torch.randn(3, k).to(torch.bfloat16)
    for layer, w in ((llama_decoder.Int4Linear(w4), w4), (llama_decoder.Int8Linear(w8), w8)):
        exact = x.float() @ w.to(torch.bfloat16).float().T  # bfloat16 weights are the best it can do
        got = layer(x).float()
        assert ((got - exact).norm() / exact.norm()) < 0.01
    # lossy on arbitrary weights, but still close
    w = torch.randn(n, k)
    rel = (llama_decoder.Int4Linear(w)(x).float() - x.float() @ w.T).norm() / (x.float() @ w.T).norm()
    assert rel < 0.15


def test_int4_on_a_tiny_model_and_refusals(tiny_llama: Path, tmp_path: Path, smollm2_tokenizer: Any) -> None:
    if not llama_decoder.int4_available():
        pytest.skip("this torch has no int4 CPU kernel")
    model = TransformersChatModel(tiny_llama, quantize="int4")
    assert model.invoke("Hello", max_tokens=4).usage is not None and model._engine.quantized
    with pytest.raises(ValueError, match="quantize"):
        TransformersChatModel(tiny_llama, quantize="int3")  # type: ignore[arg-type]
    gpt2_like = tmp_path / "gpt2"
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=len(smollm2_tokenizer), n_embd=32, n_layer=1, n_head=2,
                               n_positions=64)).save_pretrained(gpt2_like)
    smollm2_tokenizer.save_pretrained(gpt2_like)
    with pytest.raises(ValueError, match="quantize='int4' is not available"):
        TransformersChatModel(gpt2_like, quantize="int4").load()
    other = TransformersChatModel(gpt2_like)  # any causal LM runs through the generic decoder
    assert isinstance(other.load()._engine.decoder, llama_decoder.HFDecoder)
    assert other.invoke("Hello", max_tokens=3).usage.completion_tokens <= 3  # type: ignore[union-attr]


@pytest.mark.gpu
def test_runs_on_cuda(smollm2: TransformersChatModel) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = TransformersChatModel(device="cuda").load()
    assert model._engine.device.type == "cuda" and not model._engine.quantized
    assert "Paris" in model.invoke("What is the capital of France?").content
