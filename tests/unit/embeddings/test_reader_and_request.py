"""Reading and request validation (no database)."""

from __future__ import annotations

import pytest

from tokpulse.embeddings.pipeline import IngestError, IngestOptions, IngestResult
from tokpulse.embeddings.reader import classify, read_file, read_inline, read_paths
from tokpulse.embeddings.search import MAX_QUERY_CHARS, SearchError, SearchRequest


@pytest.mark.parametrize("name,kind", [("a.md", "markdown"), ("a.rst", "rst"), ("a.html", "html"),
                                       ("a.py", "code"), ("a.ts", "code"), ("a.txt", "text"),
                                       ("README", "markdown"), ("Makefile", "text"), ("a.toml", "text")])
def test_classify(name, kind, tmp_path):
    assert classify(tmp_path / name)[0] == kind


def test_read_file_reasons(tmp_path):
    (tmp_path / "u16.md").write_bytes("\ufeff# Hi".encode("utf-16"))
    doc = read_file(tmp_path / "u16.md", "u16.md")
    assert doc.text == "# Hi"
    (tmp_path / "crlf.md").write_bytes(b"a\r\nb\r\n")
    assert read_file(tmp_path / "crlf.md", "crlf.md").text == "a\nb\n"
    (tmp_path / "big.txt").write_text("x" * 100)
    issue = read_file(tmp_path / "big.txt", "big.txt", max_bytes=10)
    assert (issue.status, issue.reason) == ("skipped", "too_large")
    (tmp_path / "bad.py").write_bytes(b"x = '\xff'")
    issue = read_file(tmp_path / "bad.py", "bad.py")
    assert (issue.status, issue.reason) == ("failed", "undecodable") and "offset 5" in issue.message


def test_read_paths_skips_caches_and_names_sources_from_the_root(tmp_path):
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("x = 1\n")
    (root / "node_modules").mkdir()
    (root / "node_modules" / "b.js").write_text("y")
    (root / "venv").mkdir()
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr")
    r = read_paths([root, tmp_path / "missing"])
    assert [d.source for d in r.documents] == ["proj/src/a.py"]
    assert r.ignored_dirs == 2
    assert [(i.status, i.reason) for i in r.issues] == [("failed", "missing")]


def test_read_inline_validates_each_document():
    r = read_inline(["ok", {"text": "x", "kind": "python", "source": "s.py"}, {"text": "y", "metadata": []}])
    assert [(d.kind, d.language) for d in r.documents] == [("markdown", None), ("code", "python")]
    assert [i.reason for i in r.issues] == ["invalid"]


def test_search_request_validation():
    ok = SearchRequest.parse({"query": "q", "namespace": "docs", "limit": 5, "threshold": 0.7, "hybrid": False})
    assert (ok.limit, ok.threshold, ok.hybrid) == (5, 0.7, False)
    assert SearchRequest.parse({"query": "q", "namespace": "docs"}).hybrid is True
    with pytest.raises(SearchError) as e:
        SearchRequest.parse({"query": "q" * (MAX_QUERY_CHARS + 1), "namespace": "d"})
    assert e.value.code == "query_too_long" and e.value.status == 422
    for bad in ([], {"query": "", "namespace": "d"}, {"query": "q"}, {"query": "q", "namespace": "d", "limit": 101},
                {"query": "q", "namespace": "d", "limit": True}, {"query": "q", "namespace": "d", "threshold": "x"}):
        with pytest.raises(SearchError):
            SearchRequest.parse(bad)


def test_options_and_result_lines():
    with pytest.raises(IngestError, match="unknown option"):
        IngestOptions.from_dict({"chunk_size": 3})
    with pytest.raises(IngestError, match="chunk_tokens"):
        IngestOptions.from_dict({"chunk_tokens": 10})
    r = IngestResult("docs", total=150, processed=120, skipped=30, failed=0, cost_usd=0.0024)
    assert r.lines() == ["Total: 150", "Processed: 120", "Skipped: 30", "Failed: 0", "Cost: $0.0024"]
    d = r.as_dict()
    assert [k for k in d][:6] == ["namespace", "Total", "Processed", "Skipped", "Failed", "Cost"]
    assert IngestResult("d", cost_usd=0.0000031).lines()[-1] == "Cost: $0.00000310"


def test_cli_parses_the_new_commands():
    from tokpulse.cli import build_parser

    p = build_parser()
    a = p.parse_args(["embed", "./docs", "docs", "--dry-run"])
    assert (a.path, a.namespace, a.dry_run) == ("./docs", "docs", True)
    a = p.parse_args(["embed", "refresh", "docs"])
    assert a.path == "refresh"
    a = p.parse_args(["search", "deploy", "--namespace", "docs", "--limit", "3", "--threshold", "0.5",
                      "--no-hybrid", "--json"])
    assert (a.query, a.namespace, a.limit, a.threshold, a.no_hybrid, a.json) == ("deploy", "docs", 3, 0.5, True,
                                                                                  True)
    a = p.parse_args(["token", "create", "--namespace", "a", "--namespace", "b"])
    assert a.namespace == ["a", "b"]
    assert p.parse_args(["up", "--no-api"]).no_api is True
