"""Markdown splitting: cut at headers (outside code fences), keep headings with their text, skip front matter.

:class:`MarkdownHeaderSplitter` cuts a Markdown text into sections at its headers (up to
``max_level``) and splits long sections with an inner splitter (a
:class:`~plait.retrievers.splitters.TokenSplitter` in ingestion). Chunks get ``section``, the
header path ("Guide > Install > Linux"). Two things keep a bare heading out of the results, where
it would take a source slot with no content (issue 20): a section with nothing but its heading
joins the next section, and a long section's heading is kept in its first chunk (the inner
splitter cuts the text after it finer rather than leave the heading alone). YAML front matter
(``---`` on the first line, up to the next ``---`` or ``...``) is not indexed.

Sections are read line by line from a stream of text, so a big Markdown file is split as it is
read; each section is held whole while it is split.

Example::

    from plait.retrievers.markdown import MarkdownHeaderSplitter
    chunks = MarkdownHeaderSplitter().invoke("---\ntitle: x\n---\n# Guide\n## Install\npip install plait\n")
    chunks[0].content, chunks[0].metadata["section"]   # ('# Guide\n## Install\npip install plait', 'Guide > Install')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from plait.retrievers.splitters import Piece, RecursiveCharacterSplitter, Span, TextSplitter, _windows

_HEADER = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_FRONT_MATTER_LINES = 200


def _lines(blocks: Iterable[str], start: int = 0) -> Iterator[tuple[int, str]]:
    """``(offset, line)`` of a text given in blocks, each line with its ``\n``."""
    pos, rest = start, ""
    for block in blocks:
        parts = (rest + block).split("\n")
        rest = parts.pop()
        for part in parts:
            yield pos, part + "\n"
            pos += len(part) + 1
    if rest:
        yield pos, rest


def _skip_front_matter(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """The lines after YAML front matter (``---`` on the first line, up to the next ``---`` or ``...``)."""
    first = next(lines, None)
    if first is None:
        return
    held = [first]
    if first[1].rstrip() == "---":
        for item in lines:
            held.append(item)
            if item[1].rstrip() in ("---", "..."):
                held = []  # closed: front matter, dropped
                break
            if len(held) > _FRONT_MATTER_LINES:
                break
    yield from held
    yield from lines


class _Section(NamedTuple):
    start: int
    end: int
    headers: list[str]
    head: int  # length of the heading lines at the section's start
    body: bool  # has text besides headings
    lines: list[str]


def _sections(lines: Iterable[tuple[int, str]], max_level: int) -> Iterator[_Section]:
    """Sections of Markdown lines, cut at headers outside code fences.

    A section with nothing but its heading joins the next one (``# Guide`` right before
    ``## Install`` is one section, "Guide > Install"), so a heading never stands alone.
    """
    path: list[tuple[int, str]] = []
    current: list[str] = []
    buf: list[str] = []
    start: int | None = None
    head, body, pos, fence = 0, False, 0, None
    for pos, line in lines:
        header = None
        m_fence = _FENCE.match(line)
        if m_fence:
            mark = m_fence.group(1)
            if fence is None:
                fence = mark[0] * 3
            elif mark.startswith(fence):
                fence = None
        elif fence is None:
            m = _HEADER.match(line.rstrip("\r\n"))
            if m and len(m.group(1)) <= max_level:
                header = m
        if header is not None:
            if body and start is not None:
                yield _Section(start, pos, current, head, True, buf)
                buf, start, head, body = [], None, 0, False
            level = len(header.group(1))
            path = [(lv, t) for lv, t in path if lv < level] + [(level, header.group(2).strip())]
            current = [t for _, t in path]
        if start is None:
            start = pos
        buf.append(line)
        if header is not None and not body:
            head = pos + len(line.rstrip()) - start
        elif line.strip():
            body = True
    if start is not None:
        yield _Section(start, pos + len(buf[-1]), current, head, body, buf)


def markdown_sections(text: str, max_level: int = 6) -> list[tuple[Span, list[str]]]:
    """Sections of a Markdown text: ``((start, end), [h1, h2, ...])`` for each, headers outside code fences.

    YAML front matter at the start is left out; a heading with no text before the next heading
    belongs to that next section (see :func:`_sections`).
    """
    return [((s.start, s.end), s.headers) for s in _sections(_skip_front_matter(_lines([text])), max_level)]


class MarkdownHeaderSplitter(TextSplitter):
    """Cut at Markdown headers (up to ``max_level``), then split long sections with ``inner``.

    Chunks get ``section``: the header path, e.g. ``"Guide > Install > Linux"``. A heading is
    never a chunk on its own: it stays with the text that follows it (sections with nothing but
    a heading join the next one; a long section's heading goes into its first chunk). YAML front
    matter (``---`` ... ``---`` at the start) is skipped. A trailing heading with no text after
    it is dropped, unless it is all the document has.
    """

    def __init__(self, inner: TextSplitter | None = None, *, max_level: int = 3) -> None:
        self.inner = inner or RecursiveCharacterSplitter()
        self.max_level = max_level

    def __repr__(self) -> str:
        return f"MarkdownHeaderSplitter(inner={self.inner!r}, max_level={self.max_level})"

    def _stream(self, blocks: Iterable[str], start: int, metadata: dict[str, Any]) -> Iterator[Piece]:
        emitted = False
        for sec in _sections(_skip_front_matter(_lines(blocks, start)), self.max_level):
            if not sec.body and emitted:
                continue
            text = "".join(sec.lines)
            extra = {"section": " > ".join(sec.headers)} if sec.headers else {}
            for a, b, chunk, _ in _windows(self.inner._split, [text], 0, self.window, sec.head):
                emitted = True
                yield Piece(sec.start + a, sec.start + b, chunk, extra, None)

    def spans(self, text: str) -> list[Span]:
        return [(p.start, p.end) for p in self._stream([text], 0, {})]
