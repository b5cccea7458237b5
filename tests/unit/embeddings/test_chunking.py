"""Structure-aware chunking: boundaries, trails, positions, budget and overlap."""

from __future__ import annotations

import pytest

from tokpulse.embeddings.chunking import chunk_document, content_hash, count_tokens, html_to_text
from tokpulse.embeddings.reader import Document


def md(text: str, **kw):
    return chunk_document(Document(text=text, source="doc.md", kind="markdown"), **kw)


def test_markdown_sections_carry_heading_trails_and_lines():
    text = "# Guide\n\nIntro.\n\n## Install\n\nRun pip.\n\n### Extras\n\nOptional bits.\n\n## Use\n\nCall it.\n"
    chunks = md(text)
    assert [c.metadata["headings"] for c in chunks] == [["Guide"], ["Guide", "Install"],
                                                          ["Guide", "Install", "Extras"], ["Guide", "Use"]]
    extras = chunks[2]
    assert extras.metadata["start_line"] == 9 and extras.metadata["end_line"] == 11
    assert extras.content.startswith("Guide > Install\n\n### Extras"), "ancestors give the chunk its context"
    assert [c.metadata["chunk"] for c in chunks] == [0, 1, 2, 3]


def test_a_heading_inside_a_code_fence_is_not_a_section():
    text = "# Real\n\n```bash\n# not a heading\necho hi\n```\n\nAfter the fence.\n"
    chunks = md(text)
    assert len(chunks) == 1 and chunks[0].metadata["headings"] == ["Real"]
    assert "# not a heading" in chunks[0].content


def test_setext_headings_and_front_matter():
    text = "---\ntitle: x\n---\n\nTitle\n=====\n\nBody one.\n\nSub\n---\n\nBody two.\n"
    chunks = md(text)
    assert chunks[0].content.startswith("---\ntitle: x")
    assert [c.metadata["headings"] for c in chunks[1:]] == [["Title"], ["Title", "Sub"]]


def test_every_chunk_fits_the_budget_and_long_sections_overlap():
    sentences = " ".join(f"Sentence {i} is about subject {i} and keeps going for a while." for i in range(120))
    chunks = md("# Long\n\n" + sentences, max_tokens=120, overlap_tokens=25)
    assert len(chunks) > 5
    assert all(c.tokens <= 120 for c in chunks)
    for a, b in zip(chunks, chunks[1:], strict=False):
        body_a = a.content.split("\n\n", 1)[-1]
        body_b = b.content.split("\n\n", 1)[-1]
        first_sentence_b = body_b.split(". ")[0]
        assert first_sentence_b in body_a, "consecutive chunks of one section share their boundary sentence"
    # all text is covered
    joined = " ".join(c.content for c in chunks)
    assert all(f"Sentence {i} " in joined for i in range(120))


def test_no_overlap_across_sections_and_zero_overlap_option():
    text = "# A\n\n" + "alpha words here. " * 80 + "\n\n# B\n\nbeta words only."
    chunks = md(text, max_tokens=100, overlap_tokens=0)
    assert chunks[-1].content == "# B\n\nbeta words only."
    assert all("beta" not in c.content for c in chunks[:-1])


def test_a_huge_single_line_is_cut_by_tokens():
    line = "x" * 20000
    chunks = md(line, max_tokens=100, overlap_tokens=0)
    assert len(chunks) > 10 and all(c.tokens <= 100 for c in chunks)


def test_python_is_cut_at_top_level_definitions():
    body = "\n".join(f"    v{i} = {i} * 2  # some work on line {i}" for i in range(60))
    method = "\n".join("    " + line for line in body.split("\n"))
    src = (f'"""Module doc."""\nimport os\n\n\ndef small():\n    return 1\n\n\n@decorator\ndef big(x):\n{body}\n'
           f"    return x\n\n\nclass Thing:\n    def a(self):\n{method}\n\n    def b(self):\n{method}\n")
    chunks = chunk_document(Document(text=src, source="m.py", kind="code", language="python"), max_tokens=200)
    symbols = [c.metadata.get("symbol") for c in chunks]
    assert "big" in symbols and "Thing.a" in symbols and "Thing.b" in symbols
    big = [c for c in chunks if c.metadata.get("symbol") == "big"][0]
    assert big.content.startswith("@decorator\ndef big(x):") and big.metadata["start_line"] == 9
    assert any(c.metadata.get("symbol") == "Thing.b" and c.metadata["headings"] == ["Thing", "b"] for c in chunks)
    assert all(c.tokens <= 200 for c in chunks)
    # small neighbours share a chunk
    first = chunks[0]
    assert "import os" in first.content and "def small" in first.content


def test_other_languages_by_definition_lines():
    src = ("// util\nimport x from 'y';\n\n/** Adds. */\nexport function add(a, b) {\n  return a + b;\n}\n\n"
           "export class Box {\n  constructor() {}\n}\n\nfunc (s *Server) Serve() error {\n  return nil\n}\n")
    chunks = chunk_document(Document(text=src, source="a.js", kind="code", language="javascript"),
                            max_tokens=60, overlap_tokens=0)
    text = "\n".join(c.content for c in chunks)
    assert "export function add" in text and "Serve" in text
    syms = " ".join(str(c.metadata.get("symbol")) for c in chunks)
    assert "add" in syms and "Box" in syms


def test_rst_titles():
    text = "=====\nTitle\n=====\n\nIntro.\n\nPart\n----\n\nPart text.\n\nSub\n~~~\n\nSub text.\n"
    chunks = chunk_document(Document(text=text, source="a.rst", kind="rst"))
    assert [c.metadata["headings"] for c in chunks] == [["Title"], ["Title", "Part"], ["Title", "Part", "Sub"]]


def test_html_is_read_as_text_with_its_headings():
    html = ("<html><head><title>T</title><style>.x{color:red}</style><script>var secret=1;</script></head>"
            "<body><h1>Guide</h1><p>Hello <b>world</b> &amp; all.</p><h2>Setup</h2><ul><li>one</li><li>two</li>"
            "</ul><pre>code  here\n  indented</pre></body></html>")
    text, title = html_to_text(html)
    assert title == "T" and "secret" not in text and "color" not in text and "<b>" not in text
    chunks = chunk_document(Document(text=html, source="a.html", kind="html"))
    assert [c.metadata["headings"] for c in chunks] == [["Guide"], ["Guide", "Setup"]]
    assert "Hello world & all." in chunks[0].content and "- one" in chunks[1].content
    assert "code  here\n  indented" in chunks[1].content


def test_identity_is_the_content_hash_and_deterministic():
    a = md("# X\n\nsame text\n")
    b = md("# X\n\nsame text\n")
    assert [c.content_hash for c in a] == [c.content_hash for c in b] == [content_hash(a[0].content)]
    assert count_tokens(a[0].content) == a[0].tokens


@pytest.mark.parametrize("kw", [{"max_tokens": 10}, {"max_tokens": 100, "overlap_tokens": 60}])
def test_bad_budgets_are_refused(kw):
    with pytest.raises(ValueError):
        md("# x\n\ny", **kw)
