from __future__ import annotations

import subprocess
import sys

import pytest

from plait.chains.history import SQLiteChatHistory, WithHistory, approx_token_count, trim_messages
from plait.fake import FakeChatModel
from plait.messages import AssistantMessage, SystemMessage, UserMessage


def test_history_survives_a_new_process(tmp_path):
    db = tmp_path / "h.sqlite3"
    SQLiteChatHistory(db).add("s1", [UserMessage(content="my name is Ada"), ("assistant", "hello Ada")])
    code = ("import sys; from plait.chains.history import SQLiteChatHistory; "
            "print([m.content for m in SQLiteChatHistory(sys.argv[1]).messages('s1')])")
    out = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['my name is Ada', 'hello Ada']"
    h = SQLiteChatHistory(db)
    assert h.messages("other") == []
    h.add("s2", [("user", "x")])
    assert h.sessions() == ["s2", "s1"]
    h.clear("s1")
    assert h.messages("s1") == [] and h.sessions() == ["s2"]


def test_tool_calls_round_trip(tmp_path):
    from plait.fake import tool_call

    h = SQLiteChatHistory(tmp_path / "h.db")
    msg = tool_call("add", {"a": 1})
    h.add("s", [msg])
    assert h.messages("s")[0] == msg


def test_trim_keeps_system_and_latest_whole_turns():
    msgs = [SystemMessage(content="sys")]
    for i in range(10):
        msgs += [UserMessage(content=f"question {i} " * 5), AssistantMessage(content=f"answer {i} " * 5)]
    msgs.append(UserMessage(content="latest"))
    count = approx_token_count
    trimmed = trim_messages(msgs, 80, count)
    assert trimmed[0].content == "sys" and trimmed[-1].content == "latest"
    assert count(trimmed) <= 80
    assert trimmed[1].role == "user"  # never starts with an orphan reply
    assert "answer 9" in trimmed[-2].content
    assert len(trimmed) < len(msgs)
    assert trim_messages(msgs, 10_000, count) == msgs
    with pytest.raises(ValueError, match="system message"):
        trim_messages([SystemMessage(content="x" * 400)], 20, count)
    with pytest.raises(ValueError, match="latest turn"):
        trim_messages([UserMessage(content="x" * 400)], 20, count)


def test_with_history_remembers_and_trims(tmp_path):
    def reply(messages):
        return f"I see {len(messages)} messages"

    store = SQLiteChatHistory(tmp_path / "h.db")
    bot = WithHistory(FakeChatModel(reply), store, system="Be brief.", max_tokens=60)
    assert bot.invoke({"session_id": "a", "input": "hi"}).content == "I see 2 messages"
    assert bot.invoke({"session_id": "a", "input": "again"}).content == "I see 4 messages"
    chunks = list(bot.stream({"session_id": "a", "input": "more"}))
    assert "".join(c.content for c in chunks) == "I see 6 messages"
    assert [m.content for m in store.messages("a")][-2:] == ["more", "I see 6 messages"]
    for i in range(10):
        bot.invoke({"session_id": "a", "input": f"message number {i} with some words"})
    seen = FakeChatModel(reply)
    WithHistory(seen, store, system="Be brief.", max_tokens=60).invoke({"session_id": "a", "input": "last"})
    sent = seen.calls[0]
    assert sent[0].content == "Be brief." and sent[-1].content == "last"
    assert approx_token_count(sent) <= 60 and len(sent) < len(store.messages("a"))
    assert bot.invoke({"session_id": "b", "input": "new"}).content == "I see 2 messages"
