"""Loaders on real files: text, Markdown, HTML, PDF (pypdf), JSON Lines, folders with globs, bad files."""

from __future__ import annotations

import os

import pytest

from plait.retrievers.loaders import (
    JSONLLoader,
    LoadError,
    LoadWarning,
    find_files,
    html_to_text,
    iter_files,
    load_file,
    stream_file,
    text_blocks,
)
from plait.retrievers.splitters import TextStream
from tests.retrievers.pdfgen import write_pdf


def test_text_and_markdown(tmp_path):
    (tmp_path / "a.txt").write_text("hello\nworld\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Title\n\nBody", encoding="utf-8")
    (tmp_path / "bom.txt").write_bytes("\ufeffwith a BOM".encode())
    (tmp_path / "u16.txt").write_bytes("utf sixteen".encode("utf-16"))
    [a] = load_file(tmp_path / "a.txt")
    assert a.content == "hello\nworld\n"
    assert a.metadata == {"source": str((tmp_path / "a.txt").resolve()), "format": "text"}
    assert load_file(tmp_path / "b.md")[0].metadata["format"] == "markdown"
    assert load_file(tmp_path / "bom.txt")[0].content == "with a BOM"
    assert load_file(tmp_path / "u16.txt")[0].content == "utf sixteen"


def test_html_visible_text_only(tmp_path):
    html = ("<html><head><title>My page</title><style>p{color:red}</style></head><body>"
            "<h1>Heading</h1><p>First &amp; <b>bold</b> para.</p><script>var x = 1;</script>"
            "<ul><li>one</li><li>two</li></ul></body></html>")
    (tmp_path / "p.html").write_text(html, encoding="utf-8")
    [doc] = load_file(tmp_path / "p.html")
    assert doc.metadata["title"] == "My page"
    assert "var x" not in doc.content and "color" not in doc.content
    assert doc.content.split("\n") == ["Heading", "", "First & bold para.", "", "one", "two"]
    assert html_to_text("<p>a</p><p>b</p>")[0] == "a\n\nb"


def test_pdf_pages_numbered(tmp_path):
    write_pdf(tmp_path / "r.pdf", ["Page one about cats.", "", "Page three about dogs."])
    docs = load_file(tmp_path / "r.pdf")
    assert [d.metadata["page"] for d in docs] == [1, 3]  # the empty page is left out
    assert "cats" in docs[0].content and "dogs" in docs[1].content
    assert docs[0].metadata["pages"] == 3 and docs[0].metadata["format"] == "pdf"


def test_jsonl(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"_id": "7", "title": "T", "text": "Body text", "year": 2020, "tags": ["x"]}\n\n'
                 '{"_id": "8", "title": "", "text": "Only body"}\n', encoding="utf-8")
    docs = JSONLLoader(("title", "text"), id_key="_id")(p)
    assert [d.content for d in docs] == ["T\n\nBody text", "Only body"]
    assert docs[0].metadata["record_id"] == "7" and docs[0].metadata["year"] == 2020
    assert "tags" not in docs[0].metadata and docs[1].metadata["line"] == 3
    assert load_file(p)[0].content == "Body text"  # default: the "text" field
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n[1]\n{"text": "fine"}\n', encoding="utf-8")
    with pytest.warns(LoadWarning) as caught:  # a bad line is skipped and named; the rest loads
        assert [d.content for d in load_file(bad)] == ["ok", "fine"]
    assert [str(w.message).split(": ", 1)[0] for w in caught] == [f"{bad.resolve()}:2", f"{bad.resolve()}:3"]
    assert "not valid JSON" in str(caught[0].message) and "expected an object" in str(caught[1].message)
    streamed = list(JSONLLoader().stream(bad))
    assert [type(x).__name__ for x in streamed] == ["Document", "Problem", "Problem", "Document"]
    (tmp_path / "allbad.jsonl").write_text("{nope\n", encoding="utf-8")
    with pytest.raises(LoadError, match="no text records"), pytest.warns(LoadWarning):
        load_file(tmp_path / "allbad.jsonl")
    with pytest.raises(LoadError, match="content_keys"), pytest.warns(LoadWarning):
        JSONLLoader("body")(p)


def test_directory_globs_and_bad_files(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.md").write_text("# A\ntext", encoding="utf-8")
    (tmp_path / "docs" / "sub" / "b.txt").write_text("bee", encoding="utf-8")
    (tmp_path / "docs" / "sub" / "skip.log").write_text("log", encoding="utf-8")
    (tmp_path / "docs" / ".hidden.md").write_text("secret", encoding="utf-8")
    (tmp_path / "docs" / "empty.txt").write_text("  \n", encoding="utf-8")
    (tmp_path / "docs" / "bin.dat").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "docs" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "docs" / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    write_pdf(tmp_path / "docs" / "scan.pdf", [""])

    names = [f.name for f in find_files(tmp_path / "docs", glob=["**/*.md", "**/*.txt"])]
    assert names == ["a.md", "empty.txt", "latin1.txt", "b.txt"]
    assert [f.name for f in find_files(tmp_path / "docs", glob="**/*.txt", exclude=["*/sub/*"])] == [
        "empty.txt", "latin1.txt"]

    results = {p.name: r for p, r in iter_files(tmp_path / "docs")}
    assert ".hidden.md" not in results
    assert [d.content for d in results["b.txt"]] == ["bee"]  # type: ignore[union-attr]
    reasons = {name: r.reason for name, r in results.items() if isinstance(r, LoadError)}
    assert set(reasons) == {"empty.txt", "bin.dat", "latin1.txt", "broken.pdf", "scan.pdf"}
    assert "empty" in reasons["empty.txt"]
    assert "binary" in reasons["bin.dat"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "PDF" in reasons["broken.pdf"]
    assert "OCR" in reasons["scan.pdf"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path):
    p = tmp_path / "locked.txt"
    p.write_text("x", encoding="utf-8")
    p.chmod(0)
    with pytest.raises(LoadError, match="cannot read"):
        load_file(p)


def test_missing_and_directory(tmp_path):
    with pytest.raises(LoadError, match="no such file"):
        load_file(tmp_path / "nope.txt")
    with pytest.raises(LoadError, match="directory"):
        load_file(tmp_path)


def test_text_streams_in_blocks_and_checks_as_a_whole_read(tmp_path, monkeypatch):
    import plait.retrievers.loaders as loaders

    monkeypatch.setattr(loaders, "BLOCK", 7)  # many blocks, cut inside multi-byte characters
    text = "naïve café — 日本語 text, line one\nline two ü\n" * 20
    p = tmp_path / "u.txt"
    p.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert "".join(text_blocks(p)) == text
    assert "".join(text_blocks(p, 100)) == text[100:]
    [stream] = list(stream_file(p))
    assert isinstance(stream, TextStream) and stream.metadata["format"] == "text"
    assert "".join(stream.open(5)) == text[5:]
    late = tmp_path / "late.txt"
    late.write_bytes(b"a" * 100 + b"\xff" + b"b" * 10)
    with pytest.raises(LoadError, match="offset 100"):
        "".join(text_blocks(late))
    (tmp_path / "blank.txt").write_text(" \n\t ", encoding="utf-8")
    with pytest.raises(LoadError, match="empty"):
        "".join(text_blocks(tmp_path / "blank.txt"))


def test_a_fifo_is_refused_without_being_waited_on(tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(LoadError, match="named pipe"):
        load_file(fifo)  # opened non-blocking and checked: no writer needed to get here
