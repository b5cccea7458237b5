"""Ingest, dedup, refresh, the cross-job batcher and bad input, against real Postgres."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.integration.embeddings.conftest import FakeEmbedder, rows
from tokpulse.embeddings import store
from tokpulse.embeddings.pipeline import (
    IngestError,
    IngestOptions,
    drain_once,
    ingest,
    refresh,
    stage_and_wait,
)
from workers import db


def _docs(tmp_path, n_sections: int = 3):
    d = tmp_path / "docs"
    d.mkdir()
    tag = uuid.uuid4().hex[:8]
    (d / "guide.md").write_text(
        f"# Guide {tag}\n\nIntro paragraph about the fleet {tag}.\n\n"
        + "".join(f"## Section {i}\n\nSection {i} explains topic {i} of {tag} in plain words.\n\n"
                  for i in range(n_sections)))
    (d / "tool.py").write_text(f'"""Tool {tag}."""\n\n\ndef helper_{tag}(x):\n    return x + 1\n\n\n'
                               f'class Runner{tag}:\n    def run(self):\n        return "{tag}"\n')
    (d / "notes.txt").write_text(f"Plain notes {tag}.\n\nSecond paragraph {tag}.\n")
    return d, tag


def test_ingest_then_rerun_skips_everything_without_a_provider_call(tmp_path, embedder, namespace):
    d, tag = _docs(tmp_path)
    first = ingest(namespace, paths=[str(d)], embedder=embedder)
    assert first.failed == 0 and first.skipped == 0
    assert first.total == first.processed > 0
    assert first.cost_usd == pytest.approx(embedder.price * sum(len(t.split()) for c in embedder.calls for t in c))
    stored = rows(namespace)
    assert len(stored) == first.total
    assert {r["source"] for r in stored} == {"docs/guide.md", "docs/tool.py", "docs/notes.txt"}
    md = [r for r in stored if r["source"] == "docs/guide.md" and "Section 1 explains" in r["content"]][0]
    assert md["metadata"]["headings"] == [f"Guide {tag}", "Section 1"]
    assert md["metadata"]["start_line"] >= 1 and md["metadata"]["end_line"] >= md["metadata"]["start_line"]
    code = [r for r in stored if r["source"] == "docs/tool.py" and f"helper_{tag}" in r["content"]][0]
    assert code["metadata"]["symbol"] == f"helper_{tag}" or f"helper_{tag}" in code["metadata"]["symbol"]
    calls = len(embedder.calls)

    again = ingest(namespace, paths=[str(d)], embedder=embedder)
    assert (again.total, again.processed, again.skipped, again.failed) == (first.total, 0, first.total, 0)
    assert again.cost_usd == 0 and len(embedder.calls) == calls, "unchanged chunks reached the embedder"
    assert [r["id"] for r in rows(namespace)] == [r["id"] for r in stored]
    assert again.lines() == [f"Total: {first.total}", "Processed: 0", f"Skipped: {first.total}", "Failed: 0",
                             "Cost: $0.0000"]


def test_refresh_embeds_only_changes_and_deletes_what_is_gone(tmp_path, embedder, namespace):
    d, tag = _docs(tmp_path, n_sections=4)
    first = ingest(namespace, paths=[str(d)], embedder=embedder)
    before = {r["content_hash"]: r for r in rows(namespace)}
    guide = (d / "guide.md").read_text()
    (d / "guide.md").write_text(guide.replace("Section 2 explains topic 2", "Section 2 now describes item 2"))
    (d / "notes.txt").unlink()
    embedder.calls.clear()

    res = refresh(namespace, embedder=embedder)
    assert res.failed == 0
    assert res.processed == 1, "only the edited section is embedded again"
    assert len(embedder.calls) == 1 and len(embedder.calls[0]) == 1
    assert "now describes item 2" in embedder.calls[0][0]
    after = {r["content_hash"]: r for r in rows(namespace)}
    assert not any(r["source"] == "docs/notes.txt" for r in after.values())
    assert not any("Section 2 explains topic 2" in r["content"] for r in after.values())
    assert res.deleted == (first.total - len(after)) + 1
    unchanged = set(before) & set(after)
    assert all(before[h]["id"] == after[h]["id"] for h in unchanged), "unchanged chunks were rewritten"
    assert res.total == len(after)

    dry = refresh(namespace, embedder=embedder, dry_run=True)
    assert (dry.processed, dry.deleted, dry.skipped) == (0, 0, dry.total)


def test_refresh_keeps_chunks_of_a_source_it_cannot_read(tmp_path, embedder, namespace):
    d, _ = _docs(tmp_path)
    ingest(namespace, paths=[str(d)], embedder=embedder)
    n = len(rows(namespace))
    (d / "notes.txt").write_bytes(b"caf\xe9 not utf-8 \xc3\x28")  # undecodable now
    res = refresh(namespace, embedder=embedder)
    assert any(i["reason"] == "undecodable" and i["source"] == "docs/notes.txt" for i in res.issues)
    assert res.deleted == 0 and len(rows(namespace)) == n


def test_refresh_of_a_namespace_without_sources_is_a_clear_error(embedder, namespace):
    with pytest.raises(IngestError, match="no recorded sources"):
        refresh(namespace, embedder=embedder)


def test_bad_files_are_counted_with_reasons_and_the_rest_goes_on(tmp_path, embedder, namespace):
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "good.md").write_text("# Good\n\nA perfectly fine document about queues.\n")
    (d / "empty.md").write_text("   \n\n")
    (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    (d / "blob.txt").write_bytes(b"text\x00with\x00nuls")
    (d / "latin1.md").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (d / "huge.md").write_text("word " * 5000)
    (d / "archive.xyz").write_text("unknown type")
    (d / "dangling.md").symlink_to(d / "missing-target.md")
    (d / ".git").mkdir()
    (d / ".git" / "config").write_text("[core]")
    res = ingest(namespace, paths=[str(d)], embedder=embedder, options=IngestOptions(max_file_bytes=10_000))
    by_source = {i["source"]: i for i in res.issues}
    assert by_source["mixed/empty.md"]["reason"] == "empty"
    assert by_source["mixed/image.png"]["reason"] == "binary"
    assert by_source["mixed/blob.txt"]["reason"] == "binary"
    assert by_source["mixed/latin1.md"]["reason"] == "undecodable" and \
        by_source["mixed/latin1.md"]["status"] == "failed" and "0xe9" in by_source["mixed/latin1.md"]["message"]
    assert by_source["mixed/huge.md"]["reason"] == "too_large" and "--max-file-bytes" in \
        by_source["mixed/huge.md"]["message"]
    assert by_source["mixed/archive.xyz"]["reason"] == "unsupported"
    assert by_source["mixed/dangling.md"]["status"] == "failed"
    assert res.files["read"] == 1 and res.files["ignored_dirs"] == 1
    assert res.processed == res.total == 1 and res.failed == 0
    assert [r["source"] for r in rows(namespace)] == ["mixed/good.md"]


def test_inline_documents_and_bad_ones(embedder, namespace):
    docs = [
        {"text": "# Inline\n\nInline document about deploys.", "source": "inline/deploy.md", "metadata": {"team": "x"}},
        "A bare string document about rollbacks.",
        {"text": 42},
        {"text": ""},
        7,
    ]
    res = ingest(namespace, documents=docs, embedder=embedder)
    assert res.processed == res.total == 2
    reasons = sorted((i["source"], i["reason"]) for i in res.issues)
    assert reasons == [("documents[4]", "invalid"), ("inline:2", "invalid"), ("inline:3", "empty")]
    got = {r["source"]: r for r in rows(namespace)}
    assert got["inline/deploy.md"]["metadata"]["team"] == "x"
    assert "inline:1" in got


def test_per_chunk_failures_are_reported_and_others_stored(tmp_path, embedder, namespace):
    embedder.fail["POISON"] = "input has 9999 tokens, over the model's limit; split it"
    res = ingest(namespace, documents=[{"text": "# A\n\nfine text one", "source": "a.md"},
                                       {"text": "# B\n\nPOISON text", "source": "b.md"}], embedder=embedder)
    assert (res.total, res.processed, res.failed) == (2, 1, 1)
    assert res.errors == ["b.md: input has 9999 tokens, over the model's limit; split it"]
    assert [r["source"] for r in rows(namespace)] == ["a.md"]


def test_dry_run_estimates_without_embedding_or_storing(tmp_path, embedder, namespace):
    d, _ = _docs(tmp_path)
    res = ingest(namespace, paths=[str(d)], embedder=embedder, dry_run=True)
    assert embedder.calls == [] and rows(namespace) == []
    assert res.dry_run and res.total > 0 and res.processed == 0
    assert res.estimated_tokens > 0 and res.cost_usd == pytest.approx(res.estimated_tokens * embedder.price)
    assert res.lines()[-1].endswith("(estimated)")
    with db.transaction() as cur:
        assert store.roots(cur, namespace) == [], "a dry run records nothing"


def test_chunks_of_concurrent_jobs_share_one_embedding_call(embedder, namespace):
    """Two jobs stage their chunks; the first drain takes both jobs' chunks in one call."""
    from tokpulse.embeddings.chunking import Chunk

    def chunks(tag, n):
        out = []
        for i in range(n):
            c = Chunk(f"{tag} chunk {i} about coalescing", f"{tag}.md", i, 5, {"chunk": i})
            out.append((c, c.content_hash, c.content))
        return out

    a, b = f"job-a-{uuid.uuid4().hex[:6]}", f"job-b-{uuid.uuid4().hex[:6]}"
    with db.transaction() as cur:
        store.enqueue(cur, a, embedder.target, namespace, chunks("alpha", 3))
        store.enqueue(cur, b, embedder.target, namespace + "-other", chunks("beta", 4))
    batch = drain_once(embedder, batch_size=100)
    assert batch is not None and batch.jobs == 2 and batch.embedded == 7
    assert len(embedder.calls) == 1 and len(embedder.calls[0]) == 7
    with db.transaction() as cur:
        sa, sb = store.job_stats(cur, a), store.job_stats(cur, b)
    assert (sa.pending, sa.done, sb.pending, sb.done) == (0, 3, 0, 4)
    assert sa.cost_usd + sb.cost_usd == pytest.approx(batch.cost_usd)
    assert len(rows(namespace)) == 3 and len(rows(namespace + "-other")) == 4
    assert drain_once(embedder) is None


def test_a_crash_mid_batch_leaves_the_chunks_pending_and_a_retry_has_no_duplicates(embedder, namespace):
    docs = [{"text": f"# Doc {i}\n\ncontent {i} {uuid.uuid4().hex}", "source": f"d{i}.md"} for i in range(5)]
    embedder.explode = RuntimeError("worker killed")
    job = f"job-{uuid.uuid4().hex[:8]}"
    with pytest.raises(RuntimeError):
        ingest(namespace, documents=docs, embedder=embedder, job_id=job)
    with db.transaction() as cur:
        st = store.job_stats(cur, job)
    assert st.pending == 5 and st.done == 0 and rows(namespace) == []
    res = ingest(namespace, documents=docs, embedder=embedder, job_id=job)  # the redelivery
    assert (res.total, res.processed, res.failed) == (5, 5, 0)
    assert len(rows(namespace)) == 5
    res2 = ingest(namespace, documents=docs, embedder=embedder, job_id=job)  # and once more
    assert res2.skipped == 5 and len(rows(namespace)) == 5


def test_a_setup_error_fails_the_job_but_leaves_every_jobs_chunks_pending(embedder, namespace):
    """Bad credentials (or a missing model) say nothing about the chunks: the job fails with
    the error, its chunks and another job's chunks in the same batch stay pending, and a run
    after the fix embeds them all."""
    from tokpulse.ai import ProviderError
    from tokpulse.embeddings.chunking import Chunk

    other_job = f"job-{uuid.uuid4().hex[:8]}"
    with db.transaction() as cur:
        store.enqueue(cur, other_job, embedder.target, namespace + "-b",
                      [(Chunk(f"other {i} {uuid.uuid4().hex}", "o.md", i, 3, {}), f"o{i}", f"other {i}")
                       for i in range(3)])
    embedder.explode = ProviderError("Incorrect API key provided (401)", status=401)
    job = f"job-{uuid.uuid4().hex[:8]}"
    docs = [f"setup error doc {i} {uuid.uuid4().hex}" for i in range(4)]
    with pytest.raises(ProviderError, match="401"):
        ingest(namespace, documents=docs, embedder=embedder, job_id=job)
    with db.transaction() as cur:
        mine, theirs = store.job_stats(cur, job), store.job_stats(cur, other_job)
    assert (mine.pending, mine.failed, theirs.pending, theirs.failed) == (4, 0, 3, 0)
    res = ingest(namespace, documents=docs, embedder=embedder, job_id=job)  # after the fix / redelivery
    assert (res.processed, res.failed) == (4, 0)
    with db.transaction() as cur:
        assert store.job_stats(cur, other_job).done == 3  # drained along the way


def test_a_refused_request_fails_its_chunks_and_the_job_goes_on(embedder, namespace):
    from tokpulse.ai import ProviderError

    embedder.explode = ProviderError("This model's maximum context length is 8192 tokens (400)", status=400)
    res = ingest(namespace, documents=[f"refused doc {i} {uuid.uuid4().hex}" for i in range(3)], embedder=embedder)
    assert (res.total, res.processed, res.failed) == (3, 0, 3)
    assert all("maximum context length" in e for e in res.errors)


def test_a_namespace_keeps_one_dimension(namespace):
    small, big = FakeEmbedder(dims=384), FakeEmbedder(dims=256)
    ingest(namespace, documents=["first document about dimensions"], embedder=small)
    res = ingest(namespace, documents=["second document about dimensions"], embedder=big)
    assert res.failed == 1 and "384-dim" in res.errors[0]
    assert {r["dims"] for r in rows(namespace)} == {384}


def test_job_waits_for_its_chunks_held_by_another_drainer(embedder, namespace):
    """A job whose chunks are in another drainer's batch waits for that batch to commit."""
    import threading

    from tokpulse.embeddings.chunking import Chunk

    c = Chunk(f"held chunk {uuid.uuid4().hex}", "held.md", 0, 3, {})
    job = f"job-{uuid.uuid4().hex[:8]}"
    gate, entered = threading.Event(), threading.Event()
    other = FakeEmbedder()
    other.target = embedder.target
    real = other.embed

    def slow(texts):
        entered.set()  # called after the claim: the row is locked by this drainer now
        gate.wait(10)
        return real(texts)

    with db.transaction() as cur:
        store.enqueue(cur, job, embedder.target, namespace, [(c, c.content_hash, c.content)])
    other.embed = slow  # type: ignore[method-assign]
    t = threading.Thread(target=drain_once, args=(other,))
    t.start()
    try:
        assert entered.wait(10)
        done = threading.Event()
        result = {}

        def run():
            result["stats"] = stage_and_wait(embedder, job, namespace, [], options=IngestOptions(), poll_seconds=0.05)
            done.set()

        w = threading.Thread(target=run)
        w.start()
        assert not done.wait(0.5), "the job finished while its chunk was still being embedded elsewhere"
        gate.set()
        assert done.wait(10)
    finally:
        gate.set()
        t.join(10)
    assert result["stats"].done == 1 and embedder.calls == []
    assert len(rows(namespace)) == 1


def test_bad_characters_in_one_document_do_not_fail_the_batch(tmp_path, embedder, namespace):
    """A lone surrogate or NUL in text, source or metadata, and an undecodable file name,
    are cleaned (U+FFFD / dropped) instead of failing every document in the job."""
    d = tmp_path / "odd"
    d.mkdir()
    (d / "good.md").write_text("# Good\n\nA perfectly ordinary document about deployments.\n")
    with open(os.fsencode(d) + b"/bad\xff.md", "w") as fh:
        fh.write("# Odd name\n\nThe file name is not valid UTF-8.\n")
    docs = [
        {"text": "lone \udcff surrogate in the text", "source": "inline-a"},
        {"text": "a NUL in the source name", "source": "inline\x00b"},
        {"text": "bad metadata values", "source": "inline-c", "metadata": {"k\x00": "v\udcff", "n": [1, "\x00"]}},
    ]
    from_paths = ingest(namespace, paths=[str(d)], embedder=embedder)
    inline = ingest(namespace, documents=docs, embedder=embedder)
    assert from_paths.failed == 0 and inline.failed == 0
    stored = rows(namespace)
    sources = {r["source"] for r in stored}
    assert "odd/good.md" in sources and "odd/bad\ufffd.md" in sources
    assert "inlineb" in sources
    assert any("\ufffd" in r["content"] for r in stored)
    meta = [r["metadata"] for r in stored if r["source"] == "inline-c"][0]
    assert meta.get("k") == "v\ufffd"
