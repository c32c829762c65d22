"""Remote fine-tuning through the official openai SDK, against a fake fine-tuning server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openai")

from plait.remote._openai import RemoteModelError  # noqa: E402
from plait.tune.remote import run_job  # noqa: E402
from tests.tune.conftest import conversation, write_jsonl  # noqa: E402


class FakeFineTuning(BaseHTTPRequestHandler):
    """files.create, fine_tuning.jobs.create / retrieve / list_events; each retrieve moves a job one state on."""

    state: dict[str, Any]

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _event(self, job: dict[str, Any], message: str, level: str = "info") -> None:
        events = self.state["events"].setdefault(job["id"], [])
        events.append({"id": f"ftevent-{len(events)}", "object": "fine_tuning.job.event", "created_at": 1700000000 +
                       len(events), "level": level, "message": message, "type": "message"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.state["auth"].append(self.headers.get("Authorization"))
        if self.path == "/v1/files":
            self.state["uploads"].append(body)
            self._send(200, {"id": f"file-{len(self.state['uploads'])}", "object": "file", "bytes": len(body),
                             "created_at": 1700000000, "filename": "train.jsonl", "purpose": "fine-tune",
                             "status": "processed"})
        elif self.path == "/v1/fine_tuning/jobs":
            request = json.loads(body)
            self.state["creates"].append(request)
            if request["model"] == "no-such-model":
                self._send(400, {"error": {"message": "Model no-such-model is not available for fine-tuning",
                                           "type": "invalid_request_error", "param": "model", "code": None}})
                return
            job = {"id": f"ftjob-{len(self.state['jobs'])}", "object": "fine_tuning.job", "model": request["model"],
                   "created_at": 1700000000, "status": "queued", "training_file": request["training_file"],
                   "validation_file": request.get("validation_file"), "fine_tuned_model": None, "finished_at": None,
                   "hyperparameters": {"n_epochs": "auto"}, "organization_id": "org-test", "result_files": [],
                   "seed": request.get("seed", 0), "trained_tokens": None, "error": None,
                   "user_provided_suffix": request.get("suffix")}
            self.state["jobs"][job["id"]] = job
            self._event(job, f"Created fine-tuning job: {job['id']}")
            self._send(200, job)

    def do_GET(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")  # v1 fine_tuning jobs ID [events]
        job = self.state["jobs"][parts[3]]
        if len(parts) == 5:
            events = list(reversed(self.state["events"][job["id"]]))  # newest first, as OpenAI lists them
            self._send(200, {"object": "list", "data": events, "has_more": False})
            return
        failing = job["model"] == "fails"
        step = {"queued": "running", "running": "failed" if failing else "succeeded"}.get(job["status"])
        if step:
            job["status"] = step
            if step == "running":
                self._event(job, "Step 1/2: training loss=1.23")
            elif step == "succeeded":
                name = f"ft:{job['model']}:org-test:{job['user_provided_suffix'] or ''}:abc123"
                job.update(fine_tuned_model=name, trained_tokens=321)
                self._event(job, "The job has successfully completed")
            else:
                job["error"] = {"code": "invalid_training_file", "message": "Line 3 has no assistant message",
                                "param": "training_file"}
                self._event(job, "Training file failed validation", "error")
        self._send(200, job)


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"uploads": [], "creates": [], "jobs": {}, "events": {}, "auth": []}
    handler = type("Handler", (FakeFineTuning,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_uploads_starts_and_follows_a_job(server: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    url, state = server
    data = write_jsonl(tmp_path / "train.jsonl", [conversation(i) for i in range(3)])
    lines: list[str] = []
    job = run_job(data, "gpt-4o-mini", base_url=url, api_key="sk-test", suffix="cite", seed=7,
                  poll_seconds=0, log=lines.append)
    assert job["status"] == "succeeded" and job["fine_tuned_model"] == "ft:gpt-4o-mini:org-test:cite:abc123"
    assert data.read_bytes() in state["uploads"][0]  # the file went up as it is (multipart)
    assert state["creates"] == [{"model": "gpt-4o-mini", "training_file": "file-1", "suffix": "cite", "seed": 7}]
    assert set(state["auth"]) == {"Bearer sk-test"}
    events = [line for line in lines if line.startswith("[")]
    assert events == ["[info] Created fine-tuning job: ftjob-0", "[info] Step 1/2: training loss=1.23",
                      "[info] The job has successfully completed"]  # each once, oldest first
    assert "use it as --model openai:ft:gpt-4o-mini" in lines[-1]


def test_a_failed_job_and_a_refused_request(server: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    url, _ = server
    data = write_jsonl(tmp_path / "train.jsonl", [conversation(0)])
    lines: list[str] = []
    job = run_job(data, "fails", base_url=url, api_key="k", poll_seconds=0, log=lines.append)
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_training_file"
    assert lines[-1] == f"job {job['id']} failed: Line 3 has no assistant message"
    with pytest.raises(RemoteModelError, match="not available for fine-tuning"):
        run_job(data, "no-such-model", base_url=url, api_key="k", poll_seconds=0, log=None)


def test_cli_runs_a_remote_job(server: tuple[str, dict[str, Any]], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from plait.cli import main

    url, state = server
    data = write_jsonl(tmp_path / "train.jsonl", [conversation(0), conversation(1)])
    code = main(["tune", str(data), "--model", "openai:gpt-4o-mini", "--base-url", url, "--api-key", "k",
                 "--poll", "0"])
    out, err = capsys.readouterr()
    assert code == 0 and out.strip() == "ft:gpt-4o-mini:org-test::abc123"
    assert "2 conversations, 0 bad lines" in err and "succeeded" in err
    bad = write_jsonl(tmp_path / "bad.jsonl", [conversation(0), "{x"])
    assert main(["tune", str(bad), "--model", "openai:gpt-4o-mini", "--base-url", url, "--api-key", "k"]) == 1
    assert len(state["uploads"]) == 1  # a bad file is never uploaded
