"""LangChain's own integration suite (``langchain-tests``) for PlaitChatModel on plait's OpenAI backend,
talking to a real ``plait serve --model local`` process on 127.0.0.1 (started by a fixture).

The whole suite is ``slow``; ``TestPlaitChatModelServedQuick`` runs a few of its tests in the default
run. The served model is the same 135M model, so the same tests are xfail for the same causes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langchain_tests")
pytest.importorskip("openai")
pytest.importorskip("uvicorn")

import httpx  # noqa: E402
from langchain_tests.integration_tests import ChatModelIntegrationTests  # noqa: E402

from plait.interop.langchain import PlaitChatModel  # noqa: E402
from tests.interop.lc_suites import SMOLLM2_LIMITS, ModelLimits, quick  # noqa: E402

pytestmark = [pytest.mark.integration]

SERVED_NAME = "plait-local"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def plait_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``plait serve --model local`` in its own process; yields its base URL once it is ready."""
    port = _free_port()
    log = Path(tmp_path_factory.mktemp("serve")) / "serve.log"
    cmd = [sys.executable, "-c", "import sys; from plait.cli import main; sys.exit(main())", "serve",
           "--model", "local", "--host", "127.0.0.1", "--port", str(port), "--name", SERVED_NAME]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        # Loading the model (and converting it in a fresh PLAIT_HOME) takes a while on a busy machine;
        # the bound is only there so a server that never comes up fails the tests instead of hanging them.
        deadline = time.monotonic() + 900
        while True:
            if proc.poll() is not None:
                pytest.fail(f"plait serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"plait serve did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _ServedSuite(ModelLimits, ChatModelIntegrationTests):
    model_limits = SMOLLM2_LIMITS
    base_url = ""

    @pytest.fixture(autouse=True)
    def _server(self, plait_server: str) -> None:
        type(self).base_url = plait_server

    @property
    def chat_model_class(self) -> type[PlaitChatModel]:
        return PlaitChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"model": f"openai:{SERVED_NAME}", "base_url": self.base_url, "api_key": "unused",
                "temperature": 0, "max_tokens": 160}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False


@pytest.mark.slow
class TestPlaitChatModelServed(_ServedSuite):
    pass


@quick("test_invoke", "test_stream[model0]", "test_tool_calling[model0]", "test_structured_output[pydantic]")
class TestPlaitChatModelServedQuick(_ServedSuite):
    pass
