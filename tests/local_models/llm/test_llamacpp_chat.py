"""The llama.cpp backend: the chat-model contract, and plait's grammar on llama.cpp's logits.

llama-cpp-python compiles on install, so it is not a test dependency: these tests run where it is
importable, including from the folder ``make bench-llamacpp`` builds (``.bench/llamacpp``), and
are skipped elsewhere. What runs everywhere: the spec and the errors, which need no llama.cpp.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from plait.defaults import MissingExtraError
from plait.local_models.llm.llamacpp_chat import LlamaCppChatModel
from plait.models import chat_model_from_spec
from plait.tools import tool
from tests.chat_model_contract import ChatModelContract

_BUILT = Path(__file__).resolve().parents[3] / ".bench" / "llamacpp"
if _BUILT.is_dir() and str(_BUILT) not in sys.path:
    sys.path.append(str(_BUILT))


def _have_llama_cpp() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


needs_llama_cpp = pytest.mark.skipif(not _have_llama_cpp(), reason="llama-cpp-python is not installed "
                                     "(make bench-llamacpp builds it into .bench/llamacpp)")


def test_spec_builds_the_backend_without_loading_it() -> None:
    model = chat_model_from_spec("llamacpp", temperature=0)
    assert isinstance(model, LlamaCppChatModel) and model.spec.endswith(".gguf")
    assert "LlamaCppChatModel(" in repr(model)


def test_bad_specs_and_paths_say_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a .gguf path"):
        chat_model_from_spec("llamacpp:")
    with pytest.raises(ValueError, match="not one"):
        LlamaCppChatModel(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No GGUF file"):
        LlamaCppChatModel(str(tmp_path / "missing.gguf"))


@pytest.mark.skipif(_have_llama_cpp(), reason="llama-cpp-python is installed here")
def test_missing_llama_cpp_names_the_extra() -> None:
    with pytest.raises(MissingExtraError, match=r"plait\[llamacpp\]"):
        LlamaCppChatModel().invoke("hi")


@pytest.fixture(scope="module")
def llamacpp() -> LlamaCppChatModel:
    return LlamaCppChatModel().load()


@needs_llama_cpp
class TestContract(ChatModelContract):
    tools_reliable = True  # enforced by the grammar on llama.cpp's logits, as for plait's decoder
    json_reliable = True

    @pytest.fixture
    def model(self, llamacpp: LlamaCppChatModel) -> LlamaCppChatModel:
        return llamacpp


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]


@needs_llama_cpp
def test_json_schema_answer_always_validates(llamacpp: LlamaCppChatModel) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": Person.model_json_schema()}}
    for prompt in ("Describe Ada Lovelace.", "Invent a person who likes chess.", "Who are you?"):
        msg = llamacpp.invoke(prompt, response_format=fmt, max_tokens=80)
        Person.model_validate(json.loads(msg.content))


@needs_llama_cpp
def test_required_tool_choice_gives_a_valid_call(llamacpp: LlamaCppChatModel) -> None:
    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    msg: Any = llamacpp.bind_tools([multiply], tool_choice="required").invoke("What is 12 times 7?")
    assert len(msg.tool_calls) >= 1 and msg.tool_calls[0].name == "multiply"
    assert isinstance(multiply.invoke(msg.tool_calls[0].arguments), int)


@needs_llama_cpp
def test_greedy_is_repeatable_and_close_to_plaits_decoder(llamacpp: LlamaCppChatModel, smollm2: Any) -> None:
    # Promised: the same greedy request gives the same text twice on one engine. Across engines the
    # kernels differ (llama.cpp's Q4_1 dot products vs torch's int4 matmul), so greedy texts may part
    # after a near-tie; the first words agree for this prompt.
    q = "What is the capital of France? Answer in one word."
    a = llamacpp.invoke(q, max_tokens=12).content
    assert a == llamacpp.invoke(q, max_tokens=12).content
    assert "Paris" in a and "Paris" in smollm2.invoke(q, max_tokens=12).content


@pytest.mark.parametrize("argv, says", [
    (["ask", "--model", "llamacpp:/nonexistent/model.gguf", "hi"], "needs an existing .gguf file"),
    (["serve", "--model", "llamacpp:/nonexistent/model.gguf"], "needs an existing .gguf file"),
])
def test_cli_refuses_a_bad_llamacpp_spec_in_one_line(argv: list[str], says: str, tmp_path: Path) -> None:
    import os
    import subprocess

    env = {**os.environ, "PLAIT_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "plait.cli", *argv], capture_output=True, text=True, env=env,
                         stdin=subprocess.DEVNULL)
    assert out.returncode != 0 and "Traceback" not in out.stderr + out.stdout
    assert says in out.stderr
