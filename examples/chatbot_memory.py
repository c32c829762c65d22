"""A chatbot with memory: the conversation is kept in SQLite per session id and survives restarts.

Run: python examples/chatbot_memory.py   (run it twice: the second run remembers the first)
"""

from __future__ import annotations

from typing import Any

from plait.chains.history import SQLiteChatHistory, WithHistory

try:
    from examples._model import example_model
except ImportError:
    from _model import example_model  # type: ignore[no-redef]


def main(model: Any = None, session: str = "example-session") -> list[str]:
    history = SQLiteChatHistory()  # <data dir>/history.sqlite3
    bot = WithHistory(example_model(model, max_tokens=40), history,
                      system="You are a friendly assistant. Keep answers short.", max_tokens=1024)
    replies = []
    for text in ["Hi! My name is Ada and I like astronomy.", "What is my name?"]:
        print(f"you> {text}\nbot> ", end="")
        reply = ""
        for chunk in bot.stream({"session_id": session, "input": text}):
            print(chunk.content, end="", flush=True)
            reply += chunk.content
        print()
        replies.append(reply)
    print(f"(session {session!r} now holds {len(history.messages(session))} messages in {history.path})")
    return replies


if __name__ == "__main__":
    main()
