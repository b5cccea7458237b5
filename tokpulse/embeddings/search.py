"""Search over `ai_embeddings`: vector (cosine, HNSW), keyword (Postgres full text) and
hybrid (reciprocal rank fusion of the two).

Every query filters on the namespace. The vector side uses the partial HNSW index of the
namespace's dimension, which the query hits only with the index's own expression and
predicate: `ORDER BY (embedding::vector(384)) <=> $q ... WHERE dims = 384` (the same for
1536; other dimensions are searched exactly). pgvector's iterative index scan keeps
returning candidates when the namespace filter removes some, so a small namespace in a
large table still gets its `limit` results.

The keyword side matches any of the query's lexemes (English stemming, stop words
dropped: `plainto_tsquery` with its ANDs turned into ORs, so a long natural-language
question is not required to match every word) against the stored `fts` column (GIN) and
ranks by the inverse document frequency of the words matched (see
`_keyword_candidates_sql`), with `ts_rank` as a tie-break.

Hybrid: each side returns its top `candidates` (at least 4 x limit); a result's score is
sum(1 / (60 + rank)) over the sides it appears on (RRF, k = 60, as in Cormack et al.); a
keyword-side hit must carry half of the query's IDF (KEYWORD_MIN_COVERAGE).
`threshold` is a minimum cosine similarity for vector-side matches; keyword matches are
kept whatever their similarity (they matched the words). Each result says which side(s)
it came from: "vector", "keyword" or "both".

An unknown (or empty) namespace returns no results and costs no embedding call."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokpulse.embeddings import store

MAX_QUERY_CHARS = 2000
MAX_LIMIT = 100
RRF_K = 60
RRF_WEIGHTS = (1.0, 1.0)  # (vector, keyword)
INDEXED_DIMS = (384, 1536)  # partial HNSW indexes in 0001_core_schema.sql


class SearchError(ValueError):
    """A request that cannot be served as asked; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 422, code: str = "invalid_request"):
        self.status = status
        self.code = code
        super().__init__(message)


@dataclass
class SearchRequest:
    query: str
    namespace: str
    limit: int = 10
    threshold: float | None = None
    hybrid: bool = True

    @classmethod
    def parse(cls, body: Any) -> SearchRequest:
        """Validate the spec's request body ({query, namespace, limit, threshold, hybrid})."""
        if not isinstance(body, dict):
            raise SearchError("the request body must be a JSON object with 'query' and 'namespace'")
        unknown = sorted(set(body) - {"query", "namespace", "limit", "threshold", "hybrid"})
        if unknown:
            raise SearchError(f"unknown field {unknown[0]!r} (fields: query, namespace, limit, threshold, hybrid)")
        q = body.get("query")
        if not isinstance(q, str) or not q.strip():
            raise SearchError("'query' must be a non-empty string")
        if len(q) > MAX_QUERY_CHARS:
            raise SearchError(f"'query' is {len(q)} characters; the limit is {MAX_QUERY_CHARS}: shorten it",
                              code="query_too_long")
        ns = body.get("namespace")
        if not isinstance(ns, str) or not ns.strip() or len(ns) > 200:
            raise SearchError("'namespace' must be a non-empty string of at most 200 characters")
        limit = body.get("limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise SearchError(f"'limit' must be an integer from 1 to {MAX_LIMIT} (got {limit!r})")
        threshold = body.get("threshold")
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, int | float) or \
                    not math.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
                raise SearchError(f"'threshold' must be a number from -1 to 1, or null (got {threshold!r})")
            threshold = float(threshold)
        hybrid = body.get("hybrid", True)
        if not isinstance(hybrid, bool):
            raise SearchError(f"'hybrid' must be true or false (got {hybrid!r})")
        return cls(q, ns, limit, threshold, hybrid)


@dataclass
class SearchResult:
    id: int
    content: str
    source: str | None
    metadata: dict
    similarity: float | None  # cosine similarity to the query (None: not computed)
    keyword_score: float | None  # ts_rank (None: not a keyword match)
    vector_rank: int | None
    keyword_rank: int | None
    score: float  # what the results are ordered by (rrf in hybrid, else the side's own score)

    @property
    def match(self) -> str:
        if self.vector_rank is not None and self.keyword_rank is not None:
            return "both"
        return "vector" if self.vector_rank is not None else "keyword"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "content": self.content, "source": self.source, "metadata": self.metadata,
            "similarity": self.similarity, "match": self.match, "score": self.score,
            "scores": {"vector": self.similarity if self.vector_rank is not None else None,
                       "keyword": self.keyword_score, "rrf": self.score if self._hybrid else None},
            "ranks": {"vector": self.vector_rank, "keyword": self.keyword_rank},
        }

    _hybrid: bool = False


@dataclass
class SearchResponse:
    query: str
    namespace: str
    mode: str  # hybrid | vector | keyword
    results: list[SearchResult] = field(default_factory=list)
    model: str | None = None
    took_ms: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query, "namespace": self.namespace, "mode": self.mode, "model": self.model,
                "count": len(self.results), "took_ms": round(self.took_ms, 2), "warnings": self.warnings,
                "results": [r.as_dict() for r in self.results]}


def _vec_expr(dims: int) -> tuple[str, str]:
    """(indexed expression, query cast) for a dimension."""
    if dims in INDEXED_DIMS:
        return f"(embedding::vector({dims}))", f"::vector({dims})"
    return "embedding", "::vector"


# all query words (stemmed, stop words dropped), and any of them
_Q_ALL = "plainto_tsquery('english', %(query)s)"
_Q_ANY = f"to_tsquery('simple', replace({_Q_ALL}::text, ' & ', ' | '))"
KEYWORD_CANDIDATES = 300  # rows ranked per side at most: bounded work on common words
# In hybrid search a keyword-side hit must contain words carrying half of the query's IDF:
# RRF counts only ranks, so a weak keyword list (one common word in common) would otherwise
# push good vector hits out of the top results (bench/retrieval_quality.py: 0.70 -> 0.735).
KEYWORD_MIN_COVERAGE = 0.5
EF_SEARCH = 200  # HNSW candidate list (>= 2 x the rows asked for); see bench/search_bench.py


def _candidates(limit: int) -> int:
    return min(400, max(40, 4 * limit))


def _session_settings(cur, k: int) -> None:
    # ef_search >= the number of candidates asked for; iterative scans keep the LIMIT filled
    # when the namespace filter drops index candidates (pgvector >= 0.8). No sequential
    # scans: with a LIMIT the planner likes to scan the table for "enough" full-text matches,
    # which reads all of it when the words are rare; the GIN bitmap is bounded either way.
    cur.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, min(1000, 2 * k))}; "
                "SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL enable_seqscan = off")


def _keyword_candidates_sql(min_coverage: float = 0.0) -> str:
    """Keyword side: candidates are rows matching every query word, then rows matching any
    (at most KEYWORD_CANDIDATES of each: a common word matches most of a namespace, and
    ranking all of it would cost ~2 us a row). They are scored by the inverse document
    frequency of the query words they contain (sum of ln(1/df); Postgres' own ts_rank has no
    IDF, so a frequent word would outweigh a rare, telling one), plus a little ts_rank as a
    tie-break. Document frequencies are the fts column's most-common-element statistics that
    ANALYZE keeps in pg_stats (words not listed are rarer than the rarest listed one): no
    extra table, no scan at query time. With `min_coverage`, a row must contain words
    carrying at least that share of the query's total IDF."""
    return f"""
        WITH mc AS (
            SELECT most_common_elems::text::text[] AS elems, most_common_elem_freqs AS freqs
              FROM pg_stats
             WHERE schemaname = current_schema() AND tablename = 'ai_embeddings' AND attname = 'fts'
        ), terms AS MATERIALIZED (
            SELECT to_tsquery('simple', quote_literal(t.lexeme)) AS tq,
                   ln(1.0 / greatest(coalesce(
                       (SELECT mc.freqs[array_position(mc.elems, t.lexeme)] FROM mc),
                       (SELECT mc.freqs[cardinality(mc.elems) + 1] / 2 FROM mc),
                       0.01), 1e-6)) AS idf
              FROM unnest(tsvector_to_array(to_tsvector('english', %(query)s))) AS t(lexeme)
        ), c AS (
            (SELECT id, fts FROM ai_embeddings WHERE namespace = %(ns)s AND fts @@ {_Q_ALL}
              LIMIT {KEYWORD_CANDIDATES})
            UNION ALL
            (SELECT id, fts FROM ai_embeddings WHERE namespace = %(ns)s AND fts @@ {_Q_ANY}
              LIMIT {KEYWORD_CANDIDATES})
        ), scored AS (
            SELECT DISTINCT ON (c.id) c.id,
                   (SELECT coalesce(sum(t.idf), 0) FROM terms t WHERE c.fts @@ t.tq) AS matched,
                   ts_rank(c.fts, {_Q_ANY}, 1) AS tr
              FROM c
             ORDER BY c.id
        )
        SELECT id, matched + 0.1 * tr AS kr
          FROM scored
         WHERE matched >= {float(min_coverage)} * (SELECT sum(idf) FROM terms)
         ORDER BY kr DESC, id
         LIMIT %(k)s"""


def vector_sql(dims: int) -> str:
    """Nearest chunks by cosine distance; params q (vector), ns, k."""
    expr, cast = _vec_expr(dims)
    return f"""
        SELECT id, content, source, metadata, 1 - dist AS similarity FROM (
            SELECT id, content, source, metadata, {expr} <=> %(q)s{cast} AS dist
              FROM ai_embeddings
             WHERE dims = {int(dims)} AND namespace = %(ns)s
             ORDER BY {expr} <=> %(q)s{cast}
             LIMIT %(k)s) s
         ORDER BY dist, id
        """


def keyword_sql() -> str:
    """Best full-text matches; params query, ns, k."""
    return f"""
        WITH kw AS MATERIALIZED ({_keyword_candidates_sql()})
        SELECT e.id, e.content, e.source, e.metadata, kw.kr
          FROM kw JOIN ai_embeddings e ON e.id = kw.id
         ORDER BY kw.kr DESC, kw.id
        """


def hybrid_sql(dims: int) -> str:
    """Both sides and the fusion in one statement; params q, ns, k, thr, limit, query."""
    expr, cast = _vec_expr(dims)
    return f"""
        WITH v AS MATERIALIZED (
            SELECT id, {expr} <=> %(q)s{cast} AS dist
              FROM ai_embeddings
             WHERE dims = {int(dims)} AND namespace = %(ns)s
             ORDER BY {expr} <=> %(q)s{cast}
             LIMIT %(k)s
        ), vr AS (
            SELECT id, 1 - dist AS sim, row_number() OVER (ORDER BY dist, id) AS r
              FROM v WHERE %(thr)s::float8 IS NULL OR 1 - dist >= %(thr)s::float8
        ), kw AS MATERIALIZED ({_keyword_candidates_sql(KEYWORD_MIN_COVERAGE)}
        ), kr AS (
            SELECT id, kr, row_number() OVER (ORDER BY kr DESC, id) AS r FROM kw
        ), fused AS (
            SELECT coalesce(vr.id, kr.id) AS id, vr.sim, vr.r AS vrank, kr.kr, kr.r AS krank,
                   coalesce({RRF_WEIGHTS[0]} / ({RRF_K} + vr.r), 0)
                   + coalesce({RRF_WEIGHTS[1]} / ({RRF_K} + kr.r), 0) AS rrf
              FROM vr FULL JOIN kr ON vr.id = kr.id
             ORDER BY rrf DESC, id
             LIMIT %(limit)s
        )
        SELECT f.id, e.content, e.source, e.metadata,
               coalesce(f.sim, 1 - ({expr} <=> %(q)s{cast})) AS sim, f.kr, f.vrank, f.krank, f.rrf
          FROM fused f JOIN ai_embeddings e ON e.id = f.id
         ORDER BY f.rrf DESC, f.id
        """


def vector_search(cur, namespace: str, dims: int, qvec: np.ndarray, *, limit: int,
                  threshold: float | None = None) -> list[SearchResult]:
    _session_settings(cur, limit)
    cur.execute(vector_sql(dims), {"q": qvec, "ns": namespace, "k": limit})
    out = []
    for rank, (i, content, source, meta, sim) in enumerate(cur.fetchall(), start=1):
        if threshold is not None and sim < threshold:
            continue
        out.append(SearchResult(i, content, source, meta, float(sim), None, rank, None, float(sim)))
    return out


def keyword_search(cur, namespace: str, query: str, *, limit: int) -> list[SearchResult]:
    _session_settings(cur, limit)
    cur.execute(keyword_sql(), {"query": query, "ns": namespace, "k": limit})
    return [SearchResult(i, content, source, meta, None, float(r), None, rank, float(r))
            for rank, (i, content, source, meta, r) in enumerate(cur.fetchall(), start=1)]


def hybrid_search(cur, namespace: str, dims: int, qvec: np.ndarray, query: str, *, limit: int,
                  threshold: float | None = None, candidates: int | None = None) -> list[SearchResult]:
    """Top `candidates` of each side, fused by RRF, best `limit` returned."""
    k = candidates or _candidates(limit)
    _session_settings(cur, k)
    cur.execute(hybrid_sql(dims), {"q": qvec, "ns": namespace, "k": k, "thr": threshold, "limit": limit,
                                   "query": query})
    out = []
    for i, content, source, meta, sim, kr, vrank, krank, rrf in cur.fetchall():
        r = SearchResult(i, content, source, meta, float(sim), None if kr is None else float(kr),
                         vrank, krank, float(rrf))
        r._hybrid = True
        out.append(r)
    return out


def search(request: SearchRequest, *, embedder, mode: str | None = None) -> SearchResponse:
    """Serve one request: `mode` overrides request.hybrid ("hybrid", "vector", "keyword")."""
    from workers import db

    t0 = time.perf_counter()
    mode = mode or ("hybrid" if request.hybrid else "vector")
    if mode not in ("hybrid", "vector", "keyword"):
        raise SearchError(f"unknown mode {mode!r}")
    resp = SearchResponse(request.query, request.namespace, mode)
    with db.transaction() as cur:
        info = store.namespace_info(cur, request.namespace)
    if info is None:
        resp.took_ms = (time.perf_counter() - t0) * 1000
        return resp
    resp.model = f"{info.provider}/{info.model}"
    qvec = None
    if mode != "keyword":
        target = getattr(embedder, "target", None)
        if target is not None and target != resp.model:
            msg = (f"namespace {request.namespace!r} was embedded with {resp.model} but this service embeds "
                   f"queries with {target}")
            if mode == "vector":
                raise SearchError(msg + "; search it where that model is configured, or re-embed the namespace",
                                  status=409, code="model_mismatch")
            resp.warnings.append(msg + "; only the keyword side was searched")
            mode = resp.mode = "keyword"
        else:
            out = embedder.embed([request.query])
            if out.vectors[0] is None:
                raise SearchError(f"the query could not be embedded: {out.errors.get(0, 'unknown error')}")
            qvec = np.asarray(out.vectors[0], dtype=np.float32)
            if qvec.shape[0] != info.dims:
                raise SearchError(f"the query embedding has {qvec.shape[0]} dimensions but namespace "
                                  f"{request.namespace!r} holds {info.dims}", status=409, code="model_mismatch")
    with db.transaction() as cur:
        if mode == "keyword":
            resp.results = keyword_search(cur, request.namespace, request.query, limit=request.limit)
        elif mode == "vector":
            resp.results = vector_search(cur, request.namespace, info.dims, qvec, limit=request.limit,
                                         threshold=request.threshold)
        else:
            resp.results = hybrid_search(cur, request.namespace, info.dims, qvec, request.query,
                                         limit=request.limit, threshold=request.threshold)
    resp.took_ms = (time.perf_counter() - t0) * 1000
    return resp


def search_dict(body: dict[str, Any], *, embedder, allowed_namespaces: Sequence[str] | None = None) -> dict:
    """Parse, scope-check and serve a request body; the task and the HTTP API use this."""
    req = SearchRequest.parse(body)
    if allowed_namespaces is not None and "*" not in allowed_namespaces and req.namespace not in allowed_namespaces:
        raise SearchError(f"this token may not search namespace {req.namespace!r}", status=403, code="forbidden")
    return search(req, embedder=embedder).as_dict()
