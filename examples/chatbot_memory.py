"""A chatbot with memory: the conversation is kept in SQLite per session id and survives restarts.

Run: .venv/bin/python examples/chatbot_memory.py [--model openai:MODEL]
(run it twice: the second run continues the same conversation)

The memory is the history store: every turn is saved and sent back with the next question. Whether
the model *uses* it is the model's part: the bundled 135M model often does not (asked "What is my
name?" it may invent one); the example says so when that happens.
"""

from __future__ import annotations

from typing import Any

from plait.chains.history import SQLiteChatHistory, WithHistory

try:
    from examples._model import bigger_model_note, example_model, is_bundled
except ImportError:
    from _model import bigger_model_note, example_model, is_bundled  # type: ignore[no-redef]


def main(model: Any = None, session: str = "example-session") -> list[str]:
    history = SQLiteChatHistory()  # <data dir>/history.sqlite3
    model = example_model(model, max_tokens=40)
    bot = WithHistory(model, history,
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
    stored = history.messages(session)
    print(f"(session {session!r} now holds {len(stored)} messages in {history.path}; the model was sent "
          f"{len(stored) - 1} of them with the last question)")
    if is_bundled(model) and "ada" not in replies[-1].lower():
        print(bigger_model_note("the model was sent the earlier turns (the name is in them) but did not use them."))
    return replies


if __name__ == "__main__":
    main()
