"""Loaders: files in, :class:`Document` out (one per file, one per PDF page, one per JSONL line).

Every document's metadata has ``source`` (the file's absolute path) and ``format``; PDF pages
also ``page`` (1-based), JSON Lines records ``line`` (1-based) and their scalar fields.

A file that cannot be loaded raises :class:`LoadError` with the path and the reason (unreadable,
binary, empty, not UTF-8, corrupt PDF, not a regular file...). :func:`iter_files` and the indexer
catch it per file, so one bad file never stops a batch; they report it at the end. A bad part of
a file that loads otherwise (one bad JSON line) is a :class:`Problem`: the rest is loaded.

Streaming: :func:`stream_file` gives a file's documents one at a time, plain text and Markdown as
:class:`~plait.retrievers.splitters.TextStream` (read and decoded in 1 MB blocks, never whole),
JSON Lines record by record; the indexer splits and embeds them as they come. Files are opened
without blocking and checked to be regular files first, so a FIFO is reported, never waited on.

Formats by suffix (:data:`LOADERS`): ``.txt .text .rst .log .csv`` (text), ``.md .markdown``,
``.html .htm``, ``.pdf``, ``.jsonl .ndjson``. Other suffixes are read as text when they are
valid UTF-8 and not binary.

Example::

    from plait.retrievers.loaders import load_file, iter_files
    pages = load_file("report.pdf")                      # one Document per page
    for path, docs_or_error in iter_files("notes/", glob="**/*.md"):
        ...
"""

from __future__ import annotations

import codecs
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any

from plait.messages import Document
from plait.retrievers.discovery import discover, not_regular
from plait.retrievers.splitters import TextStream

BLOCK = 1 << 20  # bytes read at a time


class LoadError(Exception):
    """A file could not be loaded; ``path`` and ``reason`` say which and why.

    ``unreadable`` is True when the file could not be read at all (permissions, I/O), so nothing
    is known of its content; False when it was read and found unusable (binary, empty...).
    """

    def __init__(self, path: str | Path, reason: str, *, unreadable: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.unreadable = unreadable


@dataclass
class Problem:
    """A part of a file left out (the rest of the file loads): e.g. ``line 7: not valid JSON``."""

    path: str
    reason: str


class LoadWarning(UserWarning):
    """Warned by :func:`load_file` for each :class:`Problem` (the indexer reports them instead)."""


def open_regular(path: str | Path) -> IO[bytes]:
    """Open a file for reading, without ever blocking: LoadError if it is not a regular file.

    Opened with O_NONBLOCK (opening a FIFO with no writer returns at once instead of waiting),
    then checked with fstat, so a file swapped for a FIFO after the walk is refused too.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as e:  # gone since it was found: whatever was indexed from it is stale
        raise LoadError(path, "no such file (removed while the ingest ran)") from e
    except OSError as e:
        raise LoadError(path, f"cannot read the file ({e.strerror or e})", unreadable=True) from e
    why = not_regular(os.fstat(fd).st_mode)
    if why:
        os.close(fd)
        raise LoadError(path, why)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _decoder(path: str | Path, head: bytes) -> tuple[str, int]:
    """The codec of a file from its first bytes, and how many bytes of byte-order mark to skip."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return ("utf-16-le" if head.startswith(b"\xff\xfe") else "utf-16-be"), 2
    if b"\x00" in head[:8192]:
        raise LoadError(path, "binary file (contains NUL bytes); only text, Markdown, HTML, PDF and JSONL load")
    return "utf-8", 3 if head.startswith(codecs.BOM_UTF8) else 0


def text_blocks(path: str | Path, start: int = 0) -> Iterator[str]:
    """A file's text in blocks of about 1 MB, from character ``start`` on; checked as :func:`read_text`.

    The file is read and decoded from its beginning (decoding is cheap; characters have no fixed
    width in bytes); blocks before ``start`` are dropped. LoadError when it is binary, not valid
    UTF-8 (or UTF-16 after a BOM), or has no text at all (raised when the end is reached).
    """
    with open_regular(path) as f:
        try:
            head = f.read(BLOCK)
        except OSError as e:
            raise LoadError(path, f"cannot read the file ({e.strerror or e})", unreadable=True) from e
        codec, bom = _decoder(path, head)
        decoder = codecs.getincrementaldecoder(codec)()
        data, offset, pos, seen_text = head[bom:], bom, 0, False
        while True:
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                what = "UTF-16 text despite its byte-order mark" if codec != "utf-8" else "UTF-8 text"
                raise LoadError(path, f"not valid {what} (bad byte at offset {offset + e.start}); "
                                      "convert it to UTF-8 first") from e
            seen_text = seen_text or not text.isspace() and bool(text)
            if pos + len(text) > start and text:
                yield text[max(0, start - pos):]
            pos += len(text)
            if not data:
                break
            offset += len(data)
            try:
                data = f.read(BLOCK)
            except OSError as e:
                raise LoadError(path, f"cannot read the file ({e.strerror or e})", unreadable=True) from e
        if not seen_text:
            raise LoadError(path, "empty file (no text)")


def read_text(path: str | Path) -> str:
    """A file's text: UTF-8 (a BOM is fine, UTF-16 with a BOM too); LoadError if binary, empty or undecodable."""
    return "".join(text_blocks(path))


def _source(path: str | Path) -> str:
    """A file's name as a source: absolute, its folder resolved, a link keeping its own name."""
    p = Path(os.path.abspath(path))
    return str(p.parent.resolve() / p.name)


def load_text(path: str | Path) -> list[Document]:
    """A plain-text file as one document."""
    return [Document(content=read_text(path), metadata={"source": _source(path), "format": "text"})]


def load_markdown(path: str | Path) -> list[Document]:
    """A Markdown file as one document (split it with :class:`MarkdownHeaderSplitter` to keep sections)."""
    return [Document(content=read_text(path), metadata={"source": _source(path), "format": "markdown"})]


def _text_stream(fmt: str) -> Callable[[str | Path], Iterator[Document | TextStream | Problem]]:
    def stream(path: str | Path) -> Iterator[Document | TextStream | Problem]:
        with open_regular(path) as f:  # fail early (unreadable, not a regular file, binary), before splitting
            _decoder(path, f.read(8192))
        yield TextStream({"source": _source(path), "format": fmt}, lambda start: text_blocks(path, start))

    return stream


_BLOCK_TAGS = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer",
               "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "hr", "dd", "dt", "figcaption", "main"}
_PARAGRAPH_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table"}
_ITEM_TAGS = {"li", "dt", "dd", "tr"}
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head"}


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag in _PARAGRAPH_TAGS else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag in _PARAGRAPH_TAGS else "" if tag in _ITEM_TAGS else "\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """Visible text of an HTML page (scripts, styles and the head dropped) and its title."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parser.parts).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, parser.title.strip()


def load_html(path: str | Path) -> list[Document]:
    """An HTML page's visible text as one document (``title`` in metadata when the page has one)."""
    text, title = html_to_text(read_text(path))
    if not text:
        raise LoadError(path, "HTML page with no visible text")
    meta: dict[str, Any] = {"source": _source(path), "format": "html"}
    if title:
        meta["title"] = title
    return [Document(content=text, metadata=meta)]


def load_pdf(path: str | Path) -> list[Document]:
    """A PDF's text, one document per page with text (``page`` is 1-based), via pypdf."""
    from plait.defaults import require

    require("pypdf", "chroma")
    import pypdf

    f = open_regular(path)
    try:
        reader = pypdf.PdfReader(f)
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as e:
                raise LoadError(path, "encrypted PDF; decrypt it first") from e
        pages = [page.extract_text() or "" for page in reader.pages]
    except LoadError:
        raise
    except OSError as e:
        raise LoadError(path, f"cannot read the file ({e.strerror or e})", unreadable=True) from e
    except Exception as e:  # pypdf raises many kinds of errors on damaged files
        raise LoadError(path, f"corrupt or unreadable PDF ({type(e).__name__}: {e})") from e
    finally:
        f.close()
    source = _source(path)
    docs = [Document(content=text, metadata={"source": source, "format": "pdf", "page": i, "pages": len(pages)})
            for i, text in enumerate(pages, start=1) if text.strip()]
    if not docs:
        raise LoadError(path, "PDF with no extractable text (a scan? run OCR on it first)")
    return docs


class JSONLLoader:
    """JSON Lines: one document per line.

    Args:
        content_keys: the field(s) holding the text; several are joined by a blank line
            (e.g. ``("title", "text")``).
        id_key: a field to use as the record's ``record_id`` in metadata (optional).
        metadata_keys: fields to copy into metadata (default: every other scalar field).
    """

    MAX_PROBLEMS = 20  # bad lines listed one by one per file; the rest are counted

    def __init__(self, content_keys: str | Sequence[str] = ("text",), *, id_key: str | None = None,
                 metadata_keys: Sequence[str] | None = None) -> None:
        self.content_keys = [content_keys] if isinstance(content_keys, str) else list(content_keys)
        self.id_key = id_key
        self.metadata_keys = metadata_keys

    def __call__(self, path: str | Path) -> list[Document]:
        return _collect(self.stream(path))

    def stream(self, path: str | Path) -> Iterator[Document | Problem]:
        """Documents line by line; a bad line is a :class:`Problem` (``line N: ...``) and the rest loads."""
        source = _source(path)
        docs, bad = 0, 0
        first_problem: str | None = None
        for n, line in _numbered_lines(text_blocks(path)):
            if not line.strip():
                continue
            reason, doc = self._record(line, n, source)
            if reason is not None:
                first_problem = first_problem or f"{n} {reason}"
                bad += 1
                if bad <= self.MAX_PROBLEMS:
                    yield Problem(f"{source}:{n}", f"line {n} {reason}; skipped, the other lines are indexed")
            elif doc is not None:
                docs += 1
                yield doc
        if bad > self.MAX_PROBLEMS and docs:
            yield Problem(source, f"{bad - self.MAX_PROBLEMS} more bad lines skipped (only the first "
                                  f"{self.MAX_PROBLEMS} are listed)")
        if not docs:
            raise LoadError(path, "JSON Lines file with no text records"
                                  + (f" (line {first_problem})" if first_problem else ""))

    def _record(self, line: str, n: int, source: str) -> tuple[str | None, Document | None]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            return f"is not valid JSON ({e.msg})", None
        if not isinstance(record, dict):
            return f"is a JSON {type(record).__name__}, expected an object", None
        missing = [k for k in self.content_keys if k not in record]
        if len(missing) == len(self.content_keys):
            return (f"has none of the text fields {self.content_keys}; "
                    "pass content_keys= naming the field that holds the text"), None
        content = "\n\n".join(str(record[k]).strip() for k in self.content_keys
                               if record.get(k) not in (None, ""))
        if not content.strip():
            return None, None
        keys = self.metadata_keys if self.metadata_keys is not None else [
            k for k in record if k not in self.content_keys]
        meta: dict[str, Any] = {k: record[k] for k in keys
                                if k in record and isinstance(record[k], (str, int, float, bool))}
        if self.id_key is not None and self.id_key in record:
            meta["record_id"] = str(record[self.id_key])
        meta.update(source=source, format="jsonl", line=n)
        return None, Document(content=content, metadata=meta)


def _numbered_lines(blocks: Iterator[str]) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` from text blocks, split at ``\n`` (a ``\r`` before it dropped)."""
    n, rest = 0, ""
    for block in blocks:
        parts = (rest + block).split("\n")
        rest = parts.pop()
        for part in parts:
            n += 1
            yield n, part.rstrip("\r")
    if rest:
        yield n + 1, rest.rstrip("\r")


def _collect(items: Iterator[Document | TextStream | Problem]) -> list[Document]:
    """Documents of a stream, whole; each Problem becomes a :class:`LoadWarning`."""
    docs = []
    for item in items:
        if isinstance(item, Problem):
            warnings.warn(f"{item.path}: {item.reason}", LoadWarning, stacklevel=3)
        elif isinstance(item, TextStream):
            docs.append(Document(content="".join(item.open(0)), metadata=item.metadata))
        else:
            docs.append(item)
    return docs


Loader = Callable[[str | Path], list[Document]]

LOADERS: dict[str, Loader] = {
    ".txt": load_text, ".text": load_text, ".rst": load_text, ".log": load_text, ".csv": load_text,
    ".md": load_markdown, ".markdown": load_markdown,
    ".html": load_html, ".htm": load_html,
    ".pdf": load_pdf,
    ".jsonl": JSONLLoader(), ".ndjson": JSONLLoader(),
}


_STREAMS: dict[Loader, Callable[[str | Path], Iterator[Document | TextStream | Problem]]] = {
    load_text: _text_stream("text"), load_markdown: _text_stream("markdown"),
}


def stream_file(path: str | Path, loaders: dict[str, Loader] | None = None
                ) -> Iterator[Document | TextStream | Problem]:
    """One file's documents as they are read: text and Markdown as a TextStream, JSON Lines line by line.

    Raises LoadError (possibly part way, e.g. a bad byte deep in a big file). Loaders without a
    streaming form (HTML, PDF, your own) are called once and their documents yielded.
    """
    p = Path(path)
    if not p.exists():
        raise LoadError(path, "no such file")
    if p.is_dir():
        raise LoadError(path, "is a directory; use iter_files() for folders")
    table = {**LOADERS, **(loaders or {})}
    loader = table.get(p.suffix.lower(), load_text)
    streaming = _STREAMS.get(loader) or getattr(loader, "stream", None)
    if streaming is not None:
        yield from streaming(p)
    else:
        yield from loader(p)


def load_file(path: str | Path, loaders: dict[str, Loader] | None = None) -> list[Document]:
    """Load one file with the loader for its suffix (text for unknown suffixes). Raises LoadError.

    Bad parts of a file that otherwise loads (a bad JSON line) are skipped with a :class:`LoadWarning`.
    """
    return _collect(stream_file(path, loaders))


def find_files(paths: str | Path | Sequence[str | Path], *, glob: str | Sequence[str] = "**/*",
               exclude: Sequence[str] = (), follow_links: bool = False) -> list[Path]:
    """Files named directly plus files matching ``glob`` under named folders, sorted, hidden ones skipped.

    ``exclude`` patterns are matched (``Path.match``) against each found file. What the walk
    leaves out (unreadable folders, broken links...) is in :func:`plait.retrievers.discovery.discover`;
    a named file that does not exist is returned, for :func:`load_file` to report.
    """
    found = discover(paths, glob=glob, exclude=exclude, follow_links=follow_links)
    missing = [Path(p) for p, reason in found.problems if reason == "no such file"]
    return sorted(found.files + missing)


def iter_files(paths: str | Path | Sequence[str | Path], *, glob: str | Sequence[str] = "**/*",
               exclude: Sequence[str] = (), loaders: dict[str, Loader] | None = None
               ) -> Iterator[tuple[Path, list[Document] | LoadError]]:
    """The directory loader: ``(path, documents)`` per file, or ``(path, LoadError)`` for a bad one."""
    for f in find_files(paths, glob=glob, exclude=exclude):
        try:
            yield f, load_file(f, loaders)
        except LoadError as e:
            yield f, e
