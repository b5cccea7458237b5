"""One partition and one HNSW graph per namespace (migration 0004): a new namespace is
loaded first and indexed afterwards; its dimension is then fixed by the database."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg2
import pytest

from tests.integration.embeddings.conftest import FakeEmbedder, rows
from tokpulse.embeddings import store
from tokpulse.embeddings.pipeline import IngestOptions, build_missing_indexes, ingest
from workers import db


def _indexes(partition: str) -> set[str]:
    with db.transaction() as cur:
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (partition,))
        return {r[0] for r in cur.fetchall()}


def test_a_new_namespace_gets_its_own_partition_indexed_after_the_load(embedder, namespace):
    docs = [f"partition doc {i} {uuid.uuid4().hex}" for i in range(30)]
    built_during: list[set[str]] = []

    def progress(done, total, phase):
        if phase == "embedding" and done < total:  # mid-load: rows arrive without a vector index
            with db.transaction() as cur:
                part = store.partition_of(cur, namespace)
            built_during.append(_indexes(part) if part else set())

    res = ingest(namespace, documents=docs, embedder=embedder, options=IngestOptions(batch_size=8),
                 progress=progress)
    assert (res.processed, res.failed) == (30, 0)
    part = store.partition_name(namespace)
    assert built_during and all(f"{part}_hnsw" not in ix for ix in built_during)
    assert f"{part}_hnsw" in _indexes(part)
    with db.transaction() as cur:
        cur.execute(f"SELECT count(*) FROM {part}")
        assert cur.fetchone()[0] == 30
        cur.execute("SELECT count(*) FROM ONLY ai_embeddings_default WHERE namespace = %s", (namespace,))
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT n_live_tup > 0 OR last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = %s",
                    (part,))
        assert cur.fetchone()[0]
    # later writes go into the built graph, and the dimension is now the database's rule
    more = ingest(namespace, documents=["one more document"], embedder=embedder)
    assert more.processed == 1 and len(rows(namespace)) == 31
    with pytest.raises(psycopg2.errors.DataException, match="expected 384 dimensions"):
        with db.transaction() as cur:
            cur.execute("INSERT INTO ai_embeddings (namespace, content, content_hash, provider, model, dims, "
                        "embedding) VALUES (%s, 'x', 'wrong-dims', 'p', 'm', 8, %s)",
                        (namespace, np.ones(8, dtype=np.float32)))


def test_namespaces_are_isolated_and_an_unknown_one_is_empty(embedder):
    a, b = f"iso-a-{uuid.uuid4().hex[:8]}", f"iso-b-{uuid.uuid4().hex[:8]}"
    ingest(a, documents=["shared words in namespace a"], embedder=embedder)
    ingest(b, documents=["shared words in namespace b"], embedder=embedder)
    assert [r["content"] for r in rows(a)] == ["shared words in namespace a"]
    assert [r["content"] for r in rows(b)] == ["shared words in namespace b"]
    assert rows(f"never-{uuid.uuid4().hex[:8]}") == []
    assert store.partition_name(a) != store.partition_name(b)


def test_concurrent_first_jobs_of_one_namespace_share_one_partition(namespace):
    import threading

    embs = [FakeEmbedder() for _ in range(3)]
    for e in embs[1:]:
        e.target = embs[0].target
    results, errors = [], []

    def run(k):
        try:
            results.append(ingest(namespace, documents=[f"job {k} doc {i} {uuid.uuid4().hex}" for i in range(20)],
                                  embedder=embs[k], options=IngestOptions(batch_size=8)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and sum(r.processed for r in results) == 60
    with db.transaction() as cur:
        cur.execute("SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'ai_embeddings'::regclass AND c.relname = %s",
                    (store.partition_name(namespace),))
        assert cur.fetchone()[0] == 1
        assert store.unbuilt_namespaces(cur).count(namespace) == 0
    assert len(rows(namespace)) == 60


def test_housekeeping_builds_the_index_a_dead_job_left_unbuilt(embedder, namespace, monkeypatch):
    with db.transaction() as cur:
        part = store.ensure_partition(cur, namespace)
    assert part == store.partition_name(namespace)
    # a load whose job died after its last batch: rows, no index
    with db.transaction() as cur:
        store.upsert_embeddings(cur, [(namespace, f"orphan {i}", f"h{i}", None, {}, "test", "m", 384,
                                       np.eye(384, dtype=np.float32)[i]) for i in range(5)])
    with db.transaction() as cur:
        assert namespace in store.unbuilt_namespaces(cur)
    # housekeeping (on the default pool) sends the build to the embeddings queue
    import tasks.maintenance as maintenance

    sent = []
    monkeypatch.setattr(maintenance.app, "send_task", lambda name, args: sent.append((name, args)))
    out = maintenance.nightly_housekeeping()
    assert ("tokpulse.build_vector_index", [namespace]) in sent and namespace in out["vector_index_builds_sent"]
    # ... where the task builds it
    from tasks.embeddings import build_vector_index

    res = build_vector_index(namespace)
    assert res["built"] and (res["rows"], res["dims"]) == (5, 384)
    assert f"{part}_hnsw" in _indexes(part)
    with db.transaction() as cur:
        assert namespace not in store.unbuilt_namespaces(cur)
    assert build_vector_index(namespace) == {"namespace": namespace, "built": False, "reason": "nothing to build"}
    built, failed = build_missing_indexes()
    assert namespace not in [b.namespace for b in built] and namespace not in failed


def test_a_failed_build_does_not_fail_the_ingest_and_is_retried_later(embedder, namespace, monkeypatch):
    real = store.ensure_vector_index

    def broken(cur, ns):
        raise psycopg2.errors.DiskFull("could not resize shared memory segment: No space left on device")

    monkeypatch.setattr(store, "ensure_vector_index", broken)
    res = ingest(namespace, documents=[f"doc {i} {uuid.uuid4().hex}" for i in range(4)], embedder=embedder)
    assert (res.processed, res.failed) == (4, 0)  # stored, searchable exactly
    with db.transaction() as cur:
        assert namespace in store.unbuilt_namespaces(cur)
    built, failed = build_missing_indexes(idle_seconds=0)
    assert namespace in failed and "DiskFull" in failed[namespace]
    monkeypatch.setattr(store, "ensure_vector_index", real)
    built, failed = build_missing_indexes(idle_seconds=0)
    assert namespace in [b.namespace for b in built] and not failed.get(namespace)


def test_a_namespace_that_lives_in_default_is_not_moved(namespace):
    with db.transaction() as cur:
        cur.execute("INSERT INTO ai_embeddings (namespace, content, content_hash, provider, model, dims, embedding) "
                    "VALUES (%s, 'legacy', 'h', 'test', 'm', 384, %s)", (namespace, np.eye(384, dtype=np.float32)[0]))
    with db.transaction() as cur:
        assert store.ensure_partition(cur, namespace) is None
        assert store.partition_of(cur, namespace) is None


def test_a_drainer_holds_no_lock_on_default_while_it_embeds(namespace):
    """While a batch is at the provider, the drainer must not hold DEFAULT: a new
    namespace's partition could not be attached meanwhile (and would end up in DEFAULT)."""
    with db.transaction() as cur:  # a namespace living in DEFAULT
        cur.execute("INSERT INTO ai_embeddings (namespace, content, content_hash, provider, model, dims, embedding) "
                    "VALUES (%s, 'legacy', 'legacy', 'test', 'm', 384, %s)",
                    (namespace, np.eye(384, dtype=np.float32)[0]))
    emb = FakeEmbedder()
    seen: list[int] = []
    real = emb.embed

    def embed(texts):
        with psycopg2.connect(db.database_url()) as other, other.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_locks WHERE relation = 'ai_embeddings_default'::regclass "
                        "AND pid <> pg_backend_pid()")
            seen.append(cur.fetchone()[0])
        return real(texts)

    emb.embed = embed
    res = ingest(namespace, documents=[f"new doc {i} {uuid.uuid4().hex}" for i in range(3)], embedder=emb)
    assert res.processed == 3 and seen == [0]
