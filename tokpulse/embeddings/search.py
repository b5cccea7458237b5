"""Search over `ai_embeddings`: vector (cosine, HNSW), keyword (Postgres full text) and
hybrid (reciprocal rank fusion of the two).

Every query filters on the namespace, which prunes it to the namespace's partition
(migration 0004). The vector side repeats the HNSW index's expression, the cast to the
namespace's dimension (`ORDER BY (embedding::vector(384)) <=> $q`; `halfvec` above 2,000
dimensions; see store.vector_expr): a namespace the pipeline created has its own graph,
so no candidate is thrown away by the filter; a namespace in the DEFAULT partition uses
its partial per-dimension index (384, 1536; `WHERE dims = 384` is in every query), where
pgvector's iterative index scan keeps returning candidates when the namespace filter
removes some. A namespace still loading (no index yet) is searched exactly.

The keyword side matches the query's lexemes (English stemming, stop words dropped; a
long natural-language question is not required to match every word) against the stored
`fts` column (GIN) and ranks by the inverse document frequency of the words matched (see
`_keyword_candidates_sql`), with `ts_rank` as a tie-break.

Hybrid: each side returns its top `candidates` (at least 4 x limit); a keyword-side hit
must carry half of the query's IDF (KEYWORD_MIN_COVERAGE). A result's score is weighted
reciprocal rank fusion, sum(w / (RRF_K + rank)) over the sides it appears on, with
RRF_K = 10 and w = 3 for the vector side, 1 for the keyword side. Not Cormack et al.'s
k = 60 with equal weights: there rank 10 scores only 13% less than rank 1 while a second
list doubles the score, so a middling vector hit sharing a word or two with the query
outranked the vector side's best, and on bench/retrieval_quality.py hybrid (nDCG@10 0.735)
lost to vector alone (0.753; keyword alone 0.571). k = 10 makes the rank within the first
page count, and 3 : 1 reflects that the keyword list is the weaker one: keyword rank 1
lifts a vector hit from rank <= 6 to the top, while a keyword-only hit (1/11, as much as
vector rank 23) reaches the first page only when the vector side has few matches (e.g. a
high `threshold`) and otherwise comes further down. The settings were chosen on the
bench's tuning half (even query index) over k in {3..60} x w in {1..8}: w 3-4 with
k 5-10 is a plateau (0.715-0.718, vector 0.714) and 3 : 1, k = 10 lies inside it. Held-out
half: hybrid 0.804, vector 0.792, keyword 0.615; all 80 queries: 0.760, 0.753, 0.571.
Candidate depth (10 to 200) and giving tied keyword scores one rank changed nothing there.
`threshold` is a minimum cosine similarity for vector-side matches; keyword matches are
kept whatever their similarity (they matched the words). Each result says which side(s)
it came from: "vector", "keyword" or "both".

An unknown (or empty) namespace returns no results and costs no embedding call."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokpulse.embeddings import store

MAX_QUERY_CHARS = 2000
MAX_LIMIT = 100
# weighted RRF: score = sum over sides of weight / (RRF_K + rank); see the module docstring
RRF_K = 10
RRF_WEIGHTS = (3.0, 1.0)  # (vector, keyword)


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
    """(indexed expression, query cast) for a dimension (see store.vector_expr)."""
    expr, cast, _ops = store.vector_expr(dims)
    return expr, cast


# all query words (stemmed, stop words dropped), and any of them
_Q_ALL = "plainto_tsquery('english', %(query)s)"
# (the text is cast, not parsed again: a lexeme like `/a?b=c` would be split by to_tsquery)
_Q_ANY = f"replace({_Q_ALL}::text, ' & ', ' | ')::tsquery"
KEYWORD_CANDIDATES = 300  # rows ranked per side at most: bounded work on common words
# In hybrid search a keyword-side hit must contain words carrying half of the query's IDF:
# RRF counts only ranks, so a weak keyword list (one common word in common) would otherwise
# push good vector hits out of the top results (bench/retrieval_quality.py: 0.70 -> 0.735 with
# plain RRF; with the weighted RRF, tuning half: 0.708 without the gate, 0.716 with it).
KEYWORD_MIN_COVERAGE = 0.5
# Keyword-only search takes its candidates from the query's rarest words that together carry
# more than this share of its IDF (hybrid search: 1 - KEYWORD_MIN_COVERAGE, so that no row
# left out could pass the coverage bar); see _keyword_candidates_sql.
KEYWORD_ONLY_RARE_SHARE = 0.8
# HNSW candidate list (and >= 2 x the rows asked for). bench/search_bench.py, 100k chunks: recall@10
# 0.919 at 200, 0.958 at 400 (p95 12 ms), 0.977 at 800 (p95 20 ms)
EF_SEARCH = 400
SIDE_THREADS = 8  # concurrent hybrid searches whose vector sides run in parallel (per process)


def _candidates(limit: int) -> int:
    return min(400, max(40, 4 * limit))


def _session_settings(cur, k: int) -> None:
    # ef_search >= the number of candidates asked for; iterative scans keep the LIMIT filled
    # when the namespace filter drops index candidates (pgvector >= 0.8). No sequential
    # scans: with a LIMIT the planner likes to scan the table for "enough" full-text matches,
    # which reads all of it when the words are rare; the GIN bitmap is bounded either way.
    cur.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, min(1000, 2 * k))}; "
                "SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL enable_seqscan = off")


def _keyword_candidates_sql(min_coverage: float = 0.0, rare_share: float = KEYWORD_ONLY_RARE_SHARE) -> str:
    """Keyword side. Query words are scored by inverse document frequency (ln(1/df);
    Postgres' own ts_rank has no IDF, so a frequent word would outweigh a rare, telling one).
    Document frequencies are the fts column's most-common-element statistics that ANALYZE
    keeps in pg_stats for the namespace's partition (words not listed are rarer than the
    rarest listed one): no extra table, no scan at query time.

    Candidates are rows containing all, then any, of the query's *rarest* words that
    together carry more than `rare_share` of its IDF (at most KEYWORD_CANDIDATES of each;
    when no row has any of them -- a misspelt word is the rarest of all -- rows with any
    query word). A row with none of them contains words worth less than 1 - rare_share:
    in hybrid search below the coverage bar -- while looking up a word that half the
    namespace contains (`self`, `return`) costs a walk of its whole posting list, which is
    what made the keyword side the slow half of hybrid search (bench/search_bench.py,
    100k chunks: keyword p95 22 ms -> 5 ms). Candidates are then scored by the IDF of every
    query word they contain plus a little ts_rank as a tie-break. With `min_coverage`, a
    row must contain words carrying at least that share of the query's total IDF."""
    return f"""
        WITH mc AS (
            SELECT most_common_elems::text::text[] AS elems, most_common_elem_freqs AS freqs
              FROM pg_stats
             WHERE schemaname = current_schema() AND attname = 'fts'
               -- the namespace's own partition (none yet: DEFAULT's)
               AND tablename = CASE WHEN to_regclass(%(part)s) IS NULL THEN 'ai_embeddings_default'
                                    ELSE %(part)s END
             LIMIT 1
        ), terms AS MATERIALIZED (
            SELECT t.lexeme, quote_literal(t.lexeme)::tsquery AS tq,
                   ln(1.0 / greatest(coalesce(
                       (SELECT mc.freqs[array_position(mc.elems, t.lexeme)] FROM mc),
                       (SELECT mc.freqs[cardinality(mc.elems) + 1] / 2 FROM mc),
                       0.01), 1e-6)) AS idf
              FROM unnest(tsvector_to_array(to_tsvector('english', %(query)s))) AS t(lexeme)
        ), rare AS MATERIALIZED (
            SELECT string_agg(quote_literal(lexeme), ' & ')::tsquery AS q_all,
                   string_agg(quote_literal(lexeme), ' | ')::tsquery AS q_any
              FROM (SELECT lexeme, idf, sum(idf) OVER (ORDER BY idf DESC, lexeme ROWS UNBOUNDED PRECEDING) - idf
                           AS before, sum(idf) OVER () AS total
                      FROM terms) x
             WHERE before <= {float(rare_share)} * total + 1e-9  -- until they carry more than the share
        ), c1 AS MATERIALIZED (
            (SELECT id, fts FROM ai_embeddings WHERE namespace = %(ns)s AND fts @@ (SELECT q_all FROM rare)
              LIMIT {KEYWORD_CANDIDATES})
            UNION ALL
            (SELECT id, fts FROM ai_embeddings WHERE namespace = %(ns)s AND fts @@ (SELECT q_any FROM rare)
              LIMIT {KEYWORD_CANDIDATES})
        ), c AS (
            SELECT id, fts FROM c1
            UNION ALL
            -- none has them (a misspelt word is the "rarest" of all): any query word, then
            (SELECT id, fts FROM ai_embeddings WHERE namespace = %(ns)s AND fts @@ {_Q_ANY}
                AND NOT EXISTS (SELECT 1 FROM c1)
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
          FROM kw JOIN ai_embeddings e ON e.namespace = %(ns)s AND e.id = kw.id
         ORDER BY kw.kr DESC, kw.id
        """


def vector_candidates_sql(dims: int) -> str:
    """The vector side of hybrid search: ids and distances only; params q, ns, k."""
    expr, cast = _vec_expr(dims)
    return f"""
        SELECT id, {expr} <=> %(q)s{cast} AS dist
          FROM ai_embeddings
         WHERE dims = {int(dims)} AND namespace = %(ns)s
         ORDER BY {expr} <=> %(q)s{cast}
         LIMIT %(k)s"""


def hybrid_keyword_sql() -> str:
    """The keyword side of hybrid search (coverage bar KEYWORD_MIN_COVERAGE); params query,
    ns, k, part."""
    return _keyword_candidates_sql(KEYWORD_MIN_COVERAGE, 1 - KEYWORD_MIN_COVERAGE)


def _rows_sql(dims: int) -> str:
    """What the fused results show; params q, ns, ids."""
    expr, cast = _vec_expr(dims)
    return f"""
        SELECT id, content, source, metadata, 1 - ({expr} <=> %(q)s{cast})
          FROM ai_embeddings
         WHERE namespace = %(ns)s AND id = ANY(%(ids)s)"""


_sides: tuple[int, ThreadPoolExecutor] | None = None
_sides_lock = threading.Lock()


def _side_executor() -> ThreadPoolExecutor:
    """Threads for the vector side of hybrid searches; made per process (a prefork child
    must not inherit its parent's)."""
    global _sides
    with _sides_lock:
        if _sides is None or _sides[0] != os.getpid():
            _sides = (os.getpid(), ThreadPoolExecutor(SIDE_THREADS, thread_name_prefix="search-vector"))
        return _sides[1]


def _vector_side(namespace: str, dims: int, qvec: np.ndarray, k: int) -> list[tuple[int, float]]:
    from workers import db

    with db.transaction() as cur:
        _session_settings(cur, k)
        cur.execute(vector_candidates_sql(dims), {"q": qvec, "ns": namespace, "k": k})
        return [(int(i), float(d)) for i, d in cur.fetchall()]


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
    cur.execute(keyword_sql(), {"query": query, "ns": namespace, "k": limit,
                                "part": store.partition_name(namespace)})
    return [SearchResult(i, content, source, meta, None, float(r), None, rank, float(r))
            for rank, (i, content, source, meta, r) in enumerate(cur.fetchall(), start=1)]


def fuse(vector: Sequence[tuple[int, float]], keyword: Sequence[tuple[int, float]], *, limit: int,
         threshold: float | None = None) -> list[tuple[int, float | None, int | None, float | None, int | None, float]]:
    """Weighted reciprocal rank fusion of (id, cosine distance) and (id, keyword score)
    lists: [(id, similarity, vector rank, keyword score, keyword rank, rrf)], best first
    (ties by id). Vector matches under `threshold` (a cosine similarity) are dropped."""
    vr = [(i, 1.0 - d) for i, d in sorted(vector, key=lambda x: (x[1], x[0]))
          if threshold is None or 1.0 - d >= threshold]
    vrank = {i: r for r, (i, _sim) in enumerate(vr, start=1)}
    vsim = dict(vr)
    kr = sorted(keyword, key=lambda x: (-x[1], x[0]))
    krank = {i: r for r, (i, _s) in enumerate(kr, start=1)}
    kscore = dict(kr)
    fused = []
    for i in vrank.keys() | krank.keys():
        rrf = (RRF_WEIGHTS[0] / (RRF_K + vrank[i]) if i in vrank else 0.0) + \
              (RRF_WEIGHTS[1] / (RRF_K + krank[i]) if i in krank else 0.0)
        fused.append((i, vsim.get(i), vrank.get(i), kscore.get(i), krank.get(i), rrf))
    fused.sort(key=lambda f: (-f[5], f[0]))
    return fused[:limit]


def hybrid_search(cur, namespace: str, dims: int, qvec: np.ndarray, query: str, *, limit: int,
                  threshold: float | None = None, candidates: int | None = None) -> list[SearchResult]:
    """Top `candidates` of each side, fused by weighted RRF (RRF_K, RRF_WEIGHTS), best
    `limit` returned. The two sides run at the same time, the vector side on a connection
    of its own: a hybrid search takes as long as its slower side, not both (it was one
    statement running one side after the other: p95 ~22 ms on bench/search_bench.py's 100k
    chunks, now ~12 ms)."""
    k = candidates or _candidates(limit)
    side = _side_executor().submit(_vector_side, namespace, dims, qvec, k)
    try:
        _session_settings(cur, k)
        cur.execute(hybrid_keyword_sql(), {"query": query, "ns": namespace, "k": k,
                                           "part": store.partition_name(namespace)})
        keyword = [(int(i), float(r)) for i, r in cur.fetchall()]
    finally:
        vector = side.result()
    fused = fuse(vector, keyword, limit=limit, threshold=threshold)
    if not fused:
        return []
    cur.execute(_rows_sql(dims), {"q": qvec, "ns": namespace, "ids": [f[0] for f in fused]})
    rows = {int(r[0]): r[1:] for r in cur.fetchall()}
    out = []
    for i, sim, vrank, kscore, krank, rrf in fused:
        if i not in rows:  # deleted between the two statements
            continue
        content, source, meta, exact_sim = rows[i]
        r = SearchResult(i, content, source, meta, float(sim if sim is not None else exact_sim), kscore, vrank,
                         krank, float(rrf))
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
