"""Loaders: files in, :class:`Document` out (one per file, one per PDF page, one per JSONL line).

Every document's metadata has ``source`` (the file's absolute path) and ``format``; PDF pages
also ``page`` (1-based), JSON Lines records ``line`` (1-based) and their scalar fields.

A file that cannot be loaded raises :class:`LoadError` with the path and the reason (unreadable,
binary, empty, not UTF-8, corrupt PDF, bad JSON line...). :func:`iter_files` and the indexer
catch it per file, so one bad file never stops a batch; they report it at the end.

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

import json
import re
from collections.abc import Callable, Iterator, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from plait.messages import Document


class LoadError(Exception):
    """A file could not be loaded; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def read_text(path: str | Path) -> str:
    """A file's text: UTF-8 (a BOM is fine, UTF-16 with a BOM too); LoadError if binary, empty or undecodable."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise LoadError(path, f"cannot read the file ({e.strerror or e})") from e
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise LoadError(path, f"not valid UTF-16 text despite its byte-order mark ({e.reason})") from e
    else:
        if b"\x00" in data[:8192]:
            raise LoadError(path, "binary file (contains NUL bytes); only text, Markdown, HTML, PDF and JSONL load")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise LoadError(path, f"not valid UTF-8 text (bad byte at offset {e.start}); "
                                  "convert it to UTF-8 first") from e
    if not text.strip():
        raise LoadError(path, "empty file (no text)")
    return text


def _source(path: str | Path) -> str:
    return str(Path(path).resolve())


def load_text(path: str | Path) -> list[Document]:
    """A plain-text file as one document."""
    return [Document(content=read_text(path), metadata={"source": _source(path), "format": "text"})]


def load_markdown(path: str | Path) -> list[Document]:
    """A Markdown file as one document (split it with :class:`MarkdownHeaderSplitter` to keep sections)."""
    return [Document(content=read_text(path), metadata={"source": _source(path), "format": "markdown"})]


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

    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as e:
                raise LoadError(path, "encrypted PDF; decrypt it first") from e
        pages = [page.extract_text() or "" for page in reader.pages]
    except LoadError:
        raise
    except OSError as e:
        raise LoadError(path, f"cannot read the file ({e.strerror or e})") from e
    except Exception as e:  # pypdf raises many kinds of errors on damaged files
        raise LoadError(path, f"corrupt or unreadable PDF ({type(e).__name__}: {e})") from e
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

    def __init__(self, content_keys: str | Sequence[str] = ("text",), *, id_key: str | None = None,
                 metadata_keys: Sequence[str] | None = None) -> None:
        self.content_keys = [content_keys] if isinstance(content_keys, str) else list(content_keys)
        self.id_key = id_key
        self.metadata_keys = metadata_keys

    def __call__(self, path: str | Path) -> list[Document]:
        source = _source(path)
        docs = []
        for n, line in enumerate(read_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise LoadError(path, f"line {n} is not valid JSON ({e.msg})") from e
            if not isinstance(record, dict):
                raise LoadError(path, f"line {n} is a JSON {type(record).__name__}, expected an object")
            missing = [k for k in self.content_keys if k not in record]
            if len(missing) == len(self.content_keys):
                raise LoadError(path, f"line {n} has none of the text fields {self.content_keys}; "
                                      "pass content_keys= naming the field that holds the text")
            content = "\n\n".join(str(record[k]).strip() for k in self.content_keys
                                  if record.get(k) not in (None, ""))
            if not content.strip():
                continue
            keys = self.metadata_keys if self.metadata_keys is not None else [
                k for k in record if k not in self.content_keys]
            meta: dict[str, Any] = {k: record[k] for k in keys
                                    if k in record and isinstance(record[k], (str, int, float, bool))}
            if self.id_key is not None and self.id_key in record:
                meta["record_id"] = str(record[self.id_key])
            meta.update(source=source, format="jsonl", line=n)
            docs.append(Document(content=content, metadata=meta))
        if not docs:
            raise LoadError(path, "JSON Lines file with no text records")
        return docs


Loader = Callable[[str | Path], list[Document]]

LOADERS: dict[str, Loader] = {
    ".txt": load_text, ".text": load_text, ".rst": load_text, ".log": load_text, ".csv": load_text,
    ".md": load_markdown, ".markdown": load_markdown,
    ".html": load_html, ".htm": load_html,
    ".pdf": load_pdf,
    ".jsonl": JSONLLoader(), ".ndjson": JSONLLoader(),
}


def load_file(path: str | Path, loaders: dict[str, Loader] | None = None) -> list[Document]:
    """Load one file with the loader for its suffix (text for unknown suffixes). Raises LoadError."""
    p = Path(path)
    if not p.exists():
        raise LoadError(path, "no such file")
    if p.is_dir():
        raise LoadError(path, "is a directory; use iter_files() for folders")
    table = {**LOADERS, **(loaders or {})}
    loader = table.get(p.suffix.lower(), load_text)
    return loader(p)


def find_files(paths: str | Path | Sequence[str | Path], *, glob: str | Sequence[str] = "**/*",
               exclude: Sequence[str] = ()) -> list[Path]:
    """Files named directly plus files matching ``glob`` under named folders, sorted, hidden ones skipped.

    ``exclude`` patterns are matched (``Path.match``) against each found file.
    """
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    globs = [glob] if isinstance(glob, str) else list(glob)
    found: set[Path] = set()
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            for pattern in globs:
                for f in p.glob(pattern):
                    rel = f.relative_to(p)
                    if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                        found.add(f.resolve())
        else:  # a file, or a missing path that load_file will report
            found.add(p.resolve())
    return sorted(f for f in found if not any(f.match(x) for x in exclude))


def iter_files(paths: str | Path | Sequence[str | Path], *, glob: str | Sequence[str] = "**/*",
               exclude: Sequence[str] = (), loaders: dict[str, Loader] | None = None
               ) -> Iterator[tuple[Path, list[Document] | LoadError]]:
    """The directory loader: ``(path, documents)`` per file, or ``(path, LoadError)`` for a bad one."""
    for f in find_files(paths, glob=glob, exclude=exclude):
        try:
            yield f, load_file(f, loaders)
        except LoadError as e:
            yield f, e
