"""Everyday mistakes through the real ``plait`` command: one ``error:`` line that says what to do, exit != 0,
no traceback, and nothing loaded or created first."""

from __future__ import annotations

import json
import socket

import pytest

from plait.cli import main
from tests.cli.conftest import assert_clean_error, plait


def test_unknown_model_spec(tmp_path):
    r = plait(tmp_path, "ask", "What is plait?", "--model", "nosuch")
    assert_clean_error(r, "unknown model 'nosuch'", "local, local:PATH_OR_ID, openai:MODEL", "plait models", code=2)
    assert_clean_error(plait(tmp_path, "chat", "--model", "nosuch"), "unknown model 'nosuch'", code=2)


def test_local_model_that_is_not_there(tmp_path):
    r = plait(tmp_path, "ask", "What is plait?", "--model", "local:nosuch")
    assert_clean_error(r, "'nosuch'", "not in the Hugging Face cache", "plait models", code=1)
    r = plait(tmp_path, "ask", "What is plait?", "--model", f"local:{tmp_path}/missing.gguf")
    assert_clean_error(r, "no such file or folder", "--model", code=1)
    # downloads allowed, but the hub (here: a port nothing listens on) cannot be asked
    r = plait(tmp_path, "ask", "What is plait?", "--model", "local:nosuch",
              env={"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{_free_port()}"})
    assert_clean_error(r, "'nosuch'", "hub cannot be reached", "--model", code=1)


def test_chat_checks_the_model_as_ask_does(tmp_path):
    r = plait(tmp_path, "chat", "--model", "local:nosuch", input="hello\n")
    assert_clean_error(r, "'nosuch'", "not in the Hugging Face cache", code=1)
    assert "plait chat: session" not in r.out  # nothing started
    r = plait(tmp_path, "chat", "--model", "openai:gpt-4o-mini", input="hello\n")
    assert_clean_error(r, "--api-key", "plait keys set openai", code=1)


@pytest.mark.parametrize("flags, needles, code", [
    (["--model", "local:nosuch"], ["'nosuch'", "not in the Hugging Face cache"], 1),
    (["--model", "nosuch"], ["unknown chat model 'nosuch'", "local, local:PATH_OR_ID, openai:MODEL", "--model"], 2),
    (["--model", "openai:gpt-4o-mini"], ["no API key for api.openai.com", "$OPENAI_API_KEY",
                                          "plait keys set openai", "$OPENAI_BASE_URL"], 1),
    (["--embeddings", "local:nosuch"], ["'nosuch'", "not in the Hugging Face cache"], 1),
    (["--image-model", "diffusion:/nonexistent/pipe"], ["no image model at /nonexistent/pipe", "--image-model"], 1),
    (["--image-model", "local:x"], ["takes nothing after it"], 2),
    (["--rag", "nosuch"], ["no collection 'nosuch'", "plait ingest PATH --collection nosuch"], 1),
])
def test_serve_checks_models_and_collection_before_serving(tmp_path, flags, needles, code):
    r = plait(tmp_path, "serve", *flags, "--port", str(_free_port()))
    assert_clean_error(r, *needles, code=code)
    assert "serving" not in r.text and "Uvicorn" not in r.text


def test_serve_reaches_the_openai_server_first(tmp_path):
    port = _free_port()
    r = plait(tmp_path, "serve", "--model", "openai:m", "--port", str(_free_port()),
              env={"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": "k"})
    assert_clean_error(r, f"cannot reach http://127.0.0.1:{port}/v1", "$OPENAI_BASE_URL", code=1)


def test_openai_model_without_a_key(tmp_path):
    r = plait(tmp_path, "ask", "What is plait?", "--model", "openai:gpt-4o-mini")
    assert_clean_error(r, "--api-key", "OPENAI_API_KEY", "plait keys set openai", "--base-url", code=1)


def _free_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_base_url(tmp_path):
    port = _free_port()
    r = plait(tmp_path, "ask", "What is plait?", "--model", "openai:some-model", "--base-url",
              f"http://127.0.0.1:{port}/v1")
    assert_clean_error(r, f"cannot reach http://127.0.0.1:{port}/v1", "--base-url", code=1)
    r = plait(tmp_path, "ask", "What is plait?", "--model", "openai:m", "--base-url", "localhost:8000")
    assert_clean_error(r, "not an http(s) URL", code=2)
    r = plait(tmp_path, "ask", "What is plait?", "--model", "local", "--base-url", f"http://127.0.0.1:{port}/v1")
    assert_clean_error(r, "--base-url only applies to --model openai:MODEL", code=2)


def test_empty_question(tmp_path):
    assert_clean_error(plait(tmp_path, "ask", " "), "question is empty", 'plait ask "', code=2)


def test_invalid_collection_name(tmp_path):
    r = plait(tmp_path, "ask", "What is plait?", "--collection", "cc")
    assert_clean_error(r, "'cc'", "3-512 characters", "Chroma's rules", code=2)
    assert_clean_error(plait(tmp_path, "ingest", str(tmp_path), "--collection", "cc"), "'cc'", code=2)


def test_typo_in_collection_suggests_and_creates_nothing(notes):
    for command in (["ask", "What do bees do?"], ["search", "bees"], ["index", "show"]):
        args = [*command, "--collection", "note"] if command[0] != "index" else [*command, "note"]
        r = plait(notes.home, *args)
        assert_clean_error(r, "no collection 'note'", "did you mean 'notes'?", "plait ingest PATH --collection note",
                           code=1)
    listed = json.loads(plait(notes.home, "collections", "--json").out)
    assert [c["name"] for c in listed] == ["notes"]


def test_imagine_checks_the_output_before_drawing(tmp_path):
    r = plait(tmp_path, "imagine", "a small red circle on the left", "-o", "/nonexistent/x.png")
    assert_clean_error(r, "/nonexistent", "does not exist", "-o", code=1)
    assert "step" not in r.err  # nothing was drawn
    assert_clean_error(plait(tmp_path, "imagine", "a red circle", "-o", str(tmp_path / "x.xyz")), ".png", code=2)
    assert_clean_error(plait(tmp_path, "imagine", "a red circle", "--steps", "0"), "--steps must be 1 or more", code=2)
    assert_clean_error(plait(tmp_path, "imagine", "a red circle", "--scheduler", "fast"), "ddim", code=2)
    assert_clean_error(plait(tmp_path, "imagine", ""), "prompt is empty", code=2)


def test_serve_on_a_busy_port_fails_before_serving(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = plait(tmp_path, "serve", "--model", "local", "--port", str(port))
    assert_clean_error(r, f"port {port}", "already in use", "--port", code=1)
    assert "serving" not in r.text and "Errno" not in r.text


def test_ingest_where_every_file_is_skipped_fails(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "broken.pdf").write_bytes(b"not a pdf")
    (folder / "empty.txt").write_text("")
    r = plait(tmp_path / "home", "ingest", str(folder), "--collection", "bad-files")
    assert_clean_error(r, "every file was skipped", code=1)
    assert "broken.pdf" in r.out and "empty.txt" in r.out  # the reasons are listed
    assert "invalid pdf header" not in r.err
    r = plait(tmp_path / "home", "ingest", str(folder / "nowhere"))
    assert_clean_error(r, "no such file or folder", code=2)


def test_config_rejects_unknown_keys_and_values(tmp_path):
    assert_clean_error(plait(tmp_path, "config", "set", "colour", "red"), "unknown config key 'colour'",
                       "aliases.NAME", code=2)
    assert_clean_error(plait(tmp_path, "config", "set", "model", "nosuch"), "model spec", code=2)
    assert_clean_error(plait(tmp_path, "config", "set", "options.local.temp", "1"), "temperature", code=2)
    assert not (tmp_path / "config.json").exists()


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only the user's mistakes become one line: anything else propagates."""
    from plait.commands import logs

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(logs, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["logs"])


def test_server_errors_name_the_cli_flags():
    from plait.commands._checks import friendly_error
    from plait.remote._openai import RemoteModelError

    message = friendly_error(RemoteModelError("http://x/v1 rejected the API key (401: bad key).", status=401))
    assert message is not None and "--api-key" in message and "plait keys set openai" in message
    assert friendly_error(ValueError("some bug")) is None
