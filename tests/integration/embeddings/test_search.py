"""Vector, keyword and hybrid search against real Postgres+pgvector."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.embeddings.conftest import FakeEmbedder, hash_vector
from tokpulse.embeddings.pipeline import ingest
from tokpulse.embeddings.search import RRF_K, RRF_WEIGHTS, SearchError, SearchRequest, search, search_dict
from workers import db

DOCS = [
    ("deploy.md", "# Deploy\n\nDeploying to production: run the release pipeline, then watch the canary."),
    ("rollback.md", "# Rollback\n\nRolling back a bad release restores the previous build quickly."),
    ("queues.md", "# Queues\n\nCelery workers consume Redis queues; each pool owns one queue."),
    ("budget.md", "# Budget\n\nMonthly AI spend is checked against the configured budget every day."),
    ("zebra.md", "# Zebra\n\nThe zebrafish xylophone quartz keyword appears only here."),
]


@pytest.fixture
def corpus(embedder, namespace):
    ingest(namespace, documents=[{"text": t, "source": s} for s, t in DOCS], embedder=embedder)
    embedder.calls.clear()
    return namespace


def _sources(resp):
    return [r.source for r in resp.results]


def test_vector_search_ranks_by_cosine_and_reports_similarity(corpus, embedder):
    resp = search(SearchRequest("production release pipeline canary deploying", corpus, limit=3, hybrid=False),
                  embedder=embedder)
    assert resp.mode == "vector" and _sources(resp)[0] == "deploy.md"
    sims = [r.similarity for r in resp.results]
    assert sims == sorted(sims, reverse=True) and all(r.match == "vector" for r in resp.results)
    q = hash_vector("production release pipeline canary deploying")
    assert sims[0] == pytest.approx(float(q @ hash_vector(resp.results[0].content)), abs=1e-5)
    assert len(embedder.calls) == 1, "the query is embedded once"


def test_keyword_search_uses_full_text(corpus, embedder):
    resp = search(SearchRequest("xylophone", corpus, limit=5), embedder=embedder, mode="keyword")
    assert _sources(resp) == ["zebra.md"] and resp.results[0].match == "keyword"
    assert embedder.calls == [], "keyword search needs no embedding"
    # any word of a natural-language question matches (OR of the lexemes, stop words dropped)
    resp = search(SearchRequest("how do I restore the previous build?", corpus), embedder=embedder, mode="keyword")
    assert _sources(resp)[0] == "rollback.md"


def test_hybrid_fuses_both_sides_and_labels_where_results_came_from(corpus, embedder):
    resp = search(SearchRequest("zebrafish xylophone quartz keyword", corpus, limit=5), embedder=embedder)
    assert resp.mode == "hybrid"
    top = resp.results[0]
    assert top.source == "zebra.md" and top.match == "both" and top.vector_rank == 1 and top.keyword_rank == 1
    assert all(r.match == "vector" for r in resp.results[1:]), "only zebra.md has the words"
    for r in resp.results:  # weighted RRF
        expected = sum(w / (RRF_K + k) for w, k in zip(RRF_WEIGHTS, (r.vector_rank, r.keyword_rank), strict=True)
                       if k is not None)
        assert r.score == pytest.approx(expected)
    assert [r.score for r in resp.results] == sorted((r.score for r in resp.results), reverse=True)
    d = resp.as_dict()["results"][0]
    assert set(d) >= {"content", "source", "metadata", "similarity", "scores", "ranks", "match"}
    # a keyword-only hit: words no vector neighbour shares strongly enough to rank it first
    resp = search(SearchRequest("previous build restores", corpus, limit=5, threshold=0.99), embedder=embedder)
    assert [r.source for r in resp.results] == ["rollback.md"] and resp.results[0].match == "keyword"


def test_threshold_drops_weak_vector_matches_but_keeps_keyword_matches(corpus, embedder):
    req = {"query": "xylophone", "namespace": corpus, "limit": 5, "threshold": 0.99}
    vec = search_dict({**req, "hybrid": False}, embedder=embedder)
    assert vec["results"] == []
    hyb = search_dict(req, embedder=embedder)
    assert [r["source"] for r in hyb["results"]] == ["zebra.md"] and hyb["results"][0]["match"] == "keyword"


def test_namespaces_are_isolated_and_unknown_ones_are_empty(embedder, namespace):
    other = namespace + "-b"
    ingest(namespace, documents=[{"text": "shared words about kubernetes", "source": "a.md"}], embedder=embedder)
    ingest(other, documents=[{"text": "shared words about kubernetes", "source": "b.md"},
                             {"text": "only in b: kubernetes operators", "source": "c.md"}], embedder=embedder)
    embedder.calls.clear()
    for mode in ("hybrid", "vector", "keyword"):
        resp = search(SearchRequest("kubernetes", namespace, limit=10), embedder=embedder, mode=mode)
        assert _sources(resp) == ["a.md"], mode
    missing = search(SearchRequest("kubernetes", f"nope-{uuid.uuid4().hex}"), embedder=embedder)
    assert missing.results == [] and missing.model is None
    assert len(embedder.calls) == 2, "an unknown namespace costs no embedding"


def test_a_token_scope_outside_the_namespace_is_refused(corpus, embedder):
    with pytest.raises(SearchError) as e:
        search_dict({"query": "x", "namespace": corpus}, embedder=embedder, allowed_namespaces=["other"])
    assert e.value.status == 403
    assert search_dict({"query": "x", "namespace": corpus}, embedder=embedder, allowed_namespaces=["*"])


def test_a_query_embedded_by_another_model_falls_back_to_keywords(corpus):
    other = FakeEmbedder()  # another target than the one the namespace was built with
    resp = search(SearchRequest("xylophone", corpus), embedder=other)
    assert resp.mode == "keyword" and resp.warnings and _sources(resp) == ["zebra.md"]
    with pytest.raises(SearchError) as e:
        search(SearchRequest("xylophone", corpus, hybrid=False), embedder=other)
    assert e.value.status == 409 and other.calls == []


@pytest.mark.parametrize("dims", [384, 1536, 3072])
def test_vector_queries_use_the_namespace_partitions_hnsw_index(dims, namespace):
    """The query must repeat the index's expression, or the index is useless. A loaded
    namespace has its own partition and graph (3,072 dims: a half-precision graph)."""
    from tokpulse.embeddings import store

    emb = FakeEmbedder(dims=dims)
    ingest(namespace, documents=[f"document {i} about topic {i % 3}" for i in range(20)], embedder=emb)
    from tokpulse.embeddings.search import vector_candidates_sql, vector_sql

    q = hash_vector("topic 1", dims)
    params = {"q": q, "ns": namespace, "k": 5, "thr": None, "limit": 5, "query": "topic",
              "part": store.partition_name(namespace)}
    with db.transaction() as cur:
        # on 20 rows the planner rightly prefers a scan + sort; forbid those to see whether the index CAN serve
        cur.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off")
        for sql in (vector_sql(dims), vector_candidates_sql(dims)):
            cur.execute("EXPLAIN " + sql, params)
            plan = "\n".join(r[0] for r in cur.fetchall())
            assert f"Index Scan using {store.partition_name(namespace)}_hnsw" in plan, plan
            assert " on ai_embeddings_default" not in plan, plan  # the other partitions are pruned


@pytest.mark.parametrize("dims", [384, 1536])
def test_a_namespace_in_the_default_partition_uses_its_partial_hnsw_index(dims, namespace):
    """Rows inserted directly (or before migration 0004) live in the DEFAULT partition,
    searched through its partial per-dimension indexes."""
    from tokpulse.embeddings import store
    from tokpulse.embeddings.search import vector_search, vector_sql

    with db.transaction() as cur:
        for i in range(3):
            cur.execute("INSERT INTO ai_embeddings (namespace, content, content_hash, provider, model, dims, "
                        "embedding) VALUES (%s, %s, %s, 'test', 'm', %s, %s)",
                        (namespace, f"row {i}", f"h{i}", dims, hash_vector(f"row {i}", dims)))
    with db.transaction() as cur:
        assert store.partition_of(cur, namespace) is None
        cur.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off")
        cur.execute("EXPLAIN " + vector_sql(dims), {"q": hash_vector("row 1", dims), "ns": namespace, "k": 2})
        plan = "\n".join(r[0] for r in cur.fetchall())
        assert f"ai_embeddings_default_hnsw_{dims}" in plan, plan
    with db.transaction() as cur:
        got = vector_search(cur, namespace, dims, hash_vector("row 1", dims), limit=2)
    assert [r.content for r in got][0] == "row 1"
    # the pipeline keeps writing such a namespace into DEFAULT rather than moving it
    emb = FakeEmbedder(dims=dims)
    res = ingest(namespace, documents=["a new row"], embedder=emb)
    assert res.processed == 1
    with db.transaction() as cur:
        assert store.partition_of(cur, namespace) is None
        cur.execute("SELECT count(*) FROM ONLY ai_embeddings_default WHERE namespace = %s", (namespace,))
        assert cur.fetchone()[0] == 4


def test_keyword_search_survives_a_misspelt_word(embedder, namespace):
    """A word no document has is the query's 'rarest'; the keyword side then falls back to
    rows with any query word instead of returning nothing."""
    ingest(namespace, documents=[{"text": f"Streaming replication setup, part {i}.", "source": f"r{i}.md"}
                                 for i in range(3)] + [{"text": "Backups and restores.", "source": "b.md"}],
           embedder=embedder)
    resp = search(SearchRequest("postgress replication", namespace, limit=5), embedder=embedder, mode="keyword")
    assert sorted(_sources(resp)) == ["r0.md", "r1.md", "r2.md"]


def test_hybrid_keyword_candidates_include_rows_at_exactly_the_coverage_bar(embedder, namespace):
    """Two query words of equal weight: a row with either one holds half the query's IDF,
    which passes the hybrid bar (>= 50%), so it must be a candidate too."""
    from tokpulse.embeddings import store
    from tokpulse.embeddings.search import KEYWORD_MIN_COVERAGE, _keyword_candidates_sql

    docs = [{"text": "pgbouncer pooling modes explained", "source": "a.md"},
            {"text": "statement timeout settings explained", "source": "b.md"},
            {"text": "unrelated text about gardens", "source": "c.md"}]
    ingest(namespace, documents=docs, embedder=embedder)
    with db.transaction() as cur:
        cur.execute(f"SELECT e.source FROM ({_keyword_candidates_sql(KEYWORD_MIN_COVERAGE, 1 - KEYWORD_MIN_COVERAGE)}"
                    ") k JOIN ai_embeddings e ON e.namespace = %(ns)s AND e.id = k.id",
                    {"query": "pgbouncer timeout", "ns": namespace, "k": 10, "part": store.partition_name(namespace)})
        assert sorted(r[0] for r in cur.fetchall()) == ["a.md", "b.md"]


def test_keyword_search_matches_lexemes_the_parser_would_split(embedder, namespace):
    """A URL's lexemes ('/a?b=c&d=e#frag') must be matched as stored, not parsed again into
    a phrase of their parts."""
    ingest(namespace, documents=[{"text": "Open https://example.com/a?b=c&d=e#frag to page.", "source": "url.md"},
                                 {"text": "Other page.", "source": "other.md"}], embedder=embedder)
    from tokpulse.embeddings import store
    from tokpulse.embeddings.search import _keyword_candidates_sql

    with db.transaction() as cur:  # every query word must count as matched: full coverage
        cur.execute(f"SELECT k.kr FROM ({_keyword_candidates_sql(1.0, 0.0)}) k",
                    {"query": "https://example.com/a?b=c&d=e#frag", "ns": namespace, "k": 10,
                     "part": store.partition_name(namespace)})
        assert len(cur.fetchall()) == 1
    resp = search(SearchRequest("https://example.com/a?b=c&d=e#frag", namespace), embedder=embedder, mode="keyword")
    assert _sources(resp) == ["url.md"]

