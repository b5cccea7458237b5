"""SQL for the embeddings pipeline: the staging queue, bulk upserts into `ai_embeddings`,
refresh bookkeeping. Every function takes a cursor so the caller owns the transaction.

Bulk writes go through binary COPY into a temporary table followed by one
`INSERT ... SELECT ... ON CONFLICT (namespace, content_hash) DO NOTHING`: one round trip
for the data, no text formatting of 384/1536 floats per row, and the unique key makes a
redelivered batch a no-op instead of a duplicate."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg2.extras

from tokpulse.embeddings.chunking import Chunk

log = logging.getLogger(__name__)

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)


def _field(value: Any, kind: str) -> bytes:
    if value is None:
        return struct.pack("!i", -1)
    if kind == "text":
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
    elif kind == "jsonb":
        data = b"\x01" + json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    elif kind == "int4":
        data = struct.pack("!i", int(value))
    elif kind == "vector":
        arr = np.asarray(value, dtype=">f4")
        data = struct.pack("!HH", arr.shape[0], 0) + arr.tobytes()
    else:  # pragma: no cover - programming error
        raise ValueError(kind)
    return struct.pack("!i", len(data)) + data


def copy_rows(cur, table: str, columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]) -> int:
    """Binary COPY of `rows` into `table` (columns: (name, text|jsonb|int4|vector))."""
    buf = io.BytesIO()
    buf.write(_COPY_HEADER)
    count = struct.pack("!h", len(columns))
    kinds = [k for _, k in columns]
    n = 0
    for row in rows:
        buf.write(count)
        for value, kind in zip(row, kinds, strict=True):
            buf.write(_field(value, kind))
        n += 1
    buf.write(_COPY_TRAILER)
    buf.seek(0)
    cols = ", ".join(c for c, _ in columns)
    cur.copy_expert(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT binary)", buf)
    return n


# -- namespace facts ----------------------------------------------------------------------------

# -- partitions: one table and one HNSW graph per namespace ------------------------------------------
#
# `ai_embeddings` is partitioned by namespace (migration 0004). The pipeline gives every new
# namespace its own partition before it stages the namespace's first chunks, loads it
# without a vector index, and builds the HNSW index once the load is drained (pgvector's
# bulk-load advice: rows first, index afterwards, several times faster than inserting into
# a live graph). Later writes go into the built graph. Namespaces that already have rows in
# the DEFAULT partition (written before 0004, or inserted directly) stay there.

DEFAULT_PARTITION = "ai_embeddings_default"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128  # bench/search_bench.py: recall@10 0.91 -> 0.93 at ef_search 200 over 64
HNSW_MAX_VECTOR_DIMS = 2000  # pgvector: HNSW on `vector` up to 2,000 dimensions,
HNSW_MAX_HALFVEC_DIMS = 4000  # on `halfvec` up to 4,000 (text-embedding-3-large: 3,072)
INDEX_BUILD_WORKERS = 2  # parallel workers besides the leader (the server's max_worker_processes caps them)
# maintenance_work_mem for a build: the graph is built in memory when it fits (~100k chunks of
# 384 dims), else pgvector goes on on disk, slower. A parallel build puts it in shared memory
# (/dev/shm): compose.yaml gives Postgres shm_size 1g.
INDEX_BUILD_MEMORY = "256MB"


def partition_name(namespace: str) -> str:
    return "ai_embeddings_ns_" + hashlib.sha256(namespace.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def vector_expr(dims: int) -> tuple[str, str, str | None]:
    """(indexed expression, query-vector cast, operator class) for `dims`: the HNSW indexes
    are expression indexes on the cast to a fixed dimension, and a query uses an index only
    when it repeats the expression. Above 2,000 dimensions the graph holds half-precision
    copies; above 4,000 there is no index (exact search)."""
    d = int(dims)
    if d <= HNSW_MAX_VECTOR_DIMS:
        return f"(embedding::vector({d}))", f"::vector({d})", "vector_cosine_ops"
    if d <= HNSW_MAX_HALFVEC_DIMS:
        return f"(embedding::halfvec({d}))", f"::halfvec({d})", "halfvec_cosine_ops"
    return "embedding", "::vector", None


def lock_namespace(cur, namespace: str) -> None:
    """Serialise writers that could decide an empty namespace's dimension (transaction lock)."""
    # the same key as the DEFAULT partition's dimension trigger (migration 0002)
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('ai_embeddings:' || %s))", (namespace,))


def partition_of(cur, namespace: str) -> str | None:
    """The namespace's own partition, if it has one."""
    name = partition_name(namespace)
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
    return name if cur.fetchone()[0] else None


def ensure_partition(cur, namespace: str, *, attempts: int = 10, lock_timeout_ms: int = 300) -> str | None:
    """Give `namespace` its own partition unless it has one or already lives in the DEFAULT
    partition. Returns the partition's name (None: the namespace stays in DEFAULT).

    Call it in a short transaction of its own. ATTACH takes a brief exclusive lock on the
    DEFAULT partition (to check it holds no row of the namespace), so it waits for
    transactions reading DEFAULT -- and, queued, would make new readers wait behind it. Each
    attempt therefore waits at most `lock_timeout_ms` (less than Postgres' deadlock timeout:
    a drainer is never the one aborted); after `attempts` the namespace is written to
    DEFAULT instead: slower to load, nothing lost. No advisory lock is held meanwhile: two
    creators of one namespace race on the table name, and ATTACH itself refuses a namespace
    that DEFAULT already holds rows of."""
    import psycopg2.errors

    for attempt in range(attempts):
        name = partition_of(cur, namespace)
        if name is not None:
            return name
        # A namespace DEFAULT already holds stays there: found by an index probe, under a
        # savepoint so its share lock on DEFAULT is released at once (ATTACH would find the
        # same, but only after locking DEFAULT and scanning it).
        cur.execute("SAVEPOINT tp_probe")
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM ONLY {DEFAULT_PARTITION} WHERE namespace = %s)", (namespace,))
        in_default = cur.fetchone()[0]
        cur.execute("ROLLBACK TO SAVEPOINT tp_probe")
        if in_default:
            return None
        name = partition_name(namespace)
        cur.execute("SAVEPOINT tp_partition")
        try:
            cur.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
            cur.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
            cur.execute(f"CREATE TABLE {name} (LIKE ai_embeddings INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                        f"INCLUDING GENERATED)")
            cur.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_namespace CHECK (namespace = %s)", (namespace,))
            cur.execute(f"ALTER TABLE ai_embeddings ATTACH PARTITION {name} FOR VALUES IN (%s)", (namespace,))
            cur.execute("SET LOCAL lock_timeout = 0")
            cur.execute("RELEASE SAVEPOINT tp_partition")
            return name
        except psycopg2.errors.CheckViolation:  # DEFAULT holds rows of this namespace: it stays there
            cur.execute("ROLLBACK TO SAVEPOINT tp_partition")
            return None
        except (psycopg2.errors.LockNotAvailable, psycopg2.errors.DeadlockDetected,
                psycopg2.errors.DuplicateTable, psycopg2.errors.UniqueViolation):
            cur.execute("ROLLBACK TO SAVEPOINT tp_partition")  # busy, or created by someone else: look again
            time.sleep(min(1.0, 0.05 * 2 ** attempt))
    name = partition_of(cur, namespace)
    if name is None:
        log.warning("namespace %r: DEFAULT stayed locked; its chunks go to the DEFAULT partition", namespace)
    return name


def _built(cur, name: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name + "_hnsw",))
    return bool(cur.fetchone()[0])


def unbuilt_namespaces(cur) -> list[str]:
    """Namespaces with rows whose own partition has no vector index yet (a load still
    running, or one whose builder died)."""
    cur.execute(
        """
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'ai_embeddings'::regclass AND c.relname <> %s
           AND to_regclass(c.relname || '_hnsw') IS NULL
         ORDER BY c.relname
        """, (DEFAULT_PARTITION,))
    out = []
    for (rel,) in cur.fetchall():
        cur.execute(f"SELECT namespace, dims FROM {rel} LIMIT 1")
        row = cur.fetchone()
        if row and vector_expr(row[1])[2] is not None:
            out.append(row[0])
    return out


def namespace_loading(cur, namespace: str) -> bool:
    """Whether chunks of the namespace are still staged (pending) by some job."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM ai_embedding_queue WHERE namespace = %s AND status = 'pending')",
                (namespace,))
    return bool(cur.fetchone()[0])


@dataclass(frozen=True)
class IndexBuild:
    namespace: str
    partition: str
    rows: int
    dims: int
    seconds: float


def _settle(cur, name: str) -> None:
    """After a bulk load: merge the full-text index's pending list (GIN fast update keeps
    new entries in a list every query scans until VACUUM merges them) and collect the
    planner statistics the keyword side takes its word frequencies from."""
    cur.execute("SELECT gin_clean_pending_list(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = %s::regclass AND a.amname = 'gin'", (name,))
    cur.execute(f"ANALYZE {name}")


def ensure_vector_index(cur, namespace: str) -> IndexBuild | None:
    """Build the HNSW index of the namespace's own partition if it has none (and rows to
    index): the bulk-load path. Its expression (the cast to the namespace's dimension) makes
    the database refuse a vector of another size from then on. Also refreshes the
    partition's planner statistics (the keyword side's word frequencies come from them).
    Returns what was built, None when there was nothing to do.

    Locking: SHARE ROW EXCLUSIVE on the partition, first -- concurrent builders wait and
    then find the index built; writers wait for the build; searches do not. No advisory lock
    is taken: a drainer holds the namespace lock while it writes, and taking the two in the
    opposite order would deadlock."""
    name = partition_of(cur, namespace)
    if name is None:
        return None
    cur.execute(f"LOCK TABLE {name} IN SHARE ROW EXCLUSIVE MODE")
    if _built(cur, name):
        return None
    cur.execute(f"SELECT dims FROM {name} LIMIT 1")
    row = cur.fetchone()
    if row is None:
        return None
    dims = int(row[0])
    expr, _cast, ops = vector_expr(dims)
    t0 = time.perf_counter()
    if ops is None:  # above pgvector's index limits: searched exactly; the rest still helps
        _settle(cur, name)
        return None
    cur.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
    # The graph is built by the leader and parallel workers (pgvector >= 0.6). Postgres plans
    # no workers for a table under min_parallel_table_scan_size (8 MB: ~8,000 chunks), so the
    # partition asks for them for the build; the option is reset before commit.
    cur.execute(f"SET LOCAL max_parallel_maintenance_workers = {INDEX_BUILD_WORKERS}")
    cur.execute(f"ALTER TABLE {name} SET (parallel_workers = {INDEX_BUILD_WORKERS})")
    cur.execute(f"CREATE INDEX {name}_hnsw ON {name} USING hnsw ({expr} {ops}) "
                f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")
    cur.execute(f"ALTER TABLE {name} RESET (parallel_workers)")
    _settle(cur, name)
    cur.execute(f"SELECT count(*) FROM {name}")
    rows = int(cur.fetchone()[0])
    return IndexBuild(namespace, name, rows, dims, time.perf_counter() - t0)


@dataclass(frozen=True)
class NamespaceInfo:
    provider: str
    model: str
    dims: int


def namespace_info(cur, namespace: str) -> NamespaceInfo | None:
    """Provider, model and dimension of what the namespace holds (None: empty/unknown)."""
    cur.execute("SELECT provider, model, dims FROM ai_embeddings WHERE namespace = %s LIMIT 1", (namespace,))
    row = cur.fetchone()
    return NamespaceInfo(row[0], row[1], int(row[2])) if row else None


def existing(cur, namespace: str, hashes: Sequence[str]) -> dict[str, tuple[str | None, dict]]:
    """content_hash -> (source, metadata) for the hashes already stored in the namespace."""
    if not hashes:
        return {}
    cur.execute("SELECT content_hash, source, metadata FROM ai_embeddings "
                "WHERE namespace = %s AND content_hash = ANY(%s)", (namespace, list(hashes)))
    return {h: (s, m or {}) for h, s, m in cur.fetchall()}


def relocate(cur, namespace: str, moves: Sequence[tuple[str, str | None, dict]]) -> int:
    """Update source/metadata of unchanged chunks that moved (no embedding involved)."""
    if not moves:
        return 0
    cur.execute("CREATE TEMP TABLE IF NOT EXISTS _tp_moves (content_hash text, source text, metadata jsonb) "
                "ON COMMIT DELETE ROWS")
    cur.execute("DELETE FROM _tp_moves")
    copy_rows(cur, "_tp_moves", [("content_hash", "text"), ("source", "text"), ("metadata", "jsonb")], moves)
    cur.execute("UPDATE ai_embeddings AS e SET source = m.source, metadata = m.metadata, updated_at = now() "
                "FROM _tp_moves m WHERE e.namespace = %s AND e.content_hash = m.content_hash", (namespace,))
    return cur.rowcount


# -- staging queue ------------------------------------------------------------------------------

_QUEUE_COLUMNS = [("job_id", "text"), ("target", "text"), ("namespace", "text"), ("content_hash", "text"),
                  ("content", "text"), ("source", "text"), ("metadata", "jsonb"), ("tokens", "int4")]


def enqueue(cur, job_id: str, target: str, namespace: str, chunks: Sequence[tuple[Chunk, str, str]]) -> int:
    """Stage chunks for embedding: (chunk, content hash, stored content). Idempotent per job."""
    if not chunks:
        return 0
    cur.execute("CREATE TEMP TABLE IF NOT EXISTS _tp_enqueue (job_id text, target text, namespace text, "
                "content_hash text, content text, source text, metadata jsonb, tokens int) ON COMMIT DELETE ROWS")
    cur.execute("DELETE FROM _tp_enqueue")
    copy_rows(cur, "_tp_enqueue", _QUEUE_COLUMNS,
              ((job_id, target, namespace, h, content, c.source, c.metadata, c.tokens) for c, h, content in chunks))
    cur.execute("INSERT INTO ai_embedding_queue (job_id, target, namespace, content_hash, content, source, "
                "metadata, tokens) SELECT job_id, target, namespace, content_hash, content, source, metadata, "
                "tokens FROM _tp_enqueue ORDER BY ctid ON CONFLICT (job_id, namespace, content_hash) DO NOTHING")
    return cur.rowcount


@dataclass
class QueuedChunk:
    id: int
    job_id: str
    namespace: str
    content_hash: str
    content: str
    source: str | None
    metadata: dict
    tokens: int
    stored: bool  # already in ai_embeddings (another job got there first); set by the drainer


def claim(cur, target: str, limit: int) -> list[QueuedChunk]:
    """Lock up to `limit` of the oldest pending chunks for `target`, from any job. Rows
    locked by another drainer are skipped, so drainers never wait for each other.

    `stored` is left to the drainer (store.existing per namespace): looking it up here, with
    the namespace taken from each row, would make Postgres lock every partition of
    `ai_embeddings` for the whole batch, and a new namespace's partition could not be
    attached while any drainer is embedding."""
    cur.execute(
        """
        SELECT q.id, q.job_id, q.namespace, q.content_hash, q.content, q.source, q.metadata, q.tokens, false
          FROM ai_embedding_queue q
         WHERE q.status = 'pending' AND q.target = %s
         ORDER BY q.id
         LIMIT %s
           FOR UPDATE OF q SKIP LOCKED
        """,
        (target, limit),
    )
    return [QueuedChunk(*r) for r in cur.fetchall()]


_EMB_COLUMNS = [("namespace", "text"), ("content", "text"), ("content_hash", "text"), ("source", "text"),
                ("metadata", "jsonb"), ("provider", "text"), ("model", "text"), ("dims", "int4"),
                ("embedding", "vector")]


def upsert_embeddings(cur, rows: Sequence[tuple]) -> int:
    """Rows: (namespace, content, content_hash, source, metadata, provider, model, dims, vector).
    Returns how many were inserted (a row already present is left as it is)."""
    if not rows:
        return 0
    cur.execute("CREATE TEMP TABLE IF NOT EXISTS _tp_embed (namespace text, content text, content_hash text, "
                "source text, metadata jsonb, provider text, model text, dims int, embedding vector) "
                "ON COMMIT DELETE ROWS")
    cur.execute("DELETE FROM _tp_embed")
    copy_rows(cur, "_tp_embed", _EMB_COLUMNS, rows)
    cur.execute("INSERT INTO ai_embeddings (namespace, content, content_hash, source, metadata, provider, model, "
                "dims, embedding) SELECT namespace, content, content_hash, source, metadata, provider, model, dims, "
                "embedding FROM _tp_embed ORDER BY ctid ON CONFLICT (namespace, content_hash) DO NOTHING")
    return cur.rowcount


def finish(cur, done: Sequence[tuple[int, float]], failed: Sequence[tuple[int, str]]) -> None:
    """Mark claimed rows done (with their share of the cost) or failed (with the reason)."""
    rows = [(i, "done", None, c) for i, c in done] + [(i, "failed", e[:1000], 0.0) for i, e in failed]
    if not rows:
        return
    psycopg2.extras.execute_values(
        cur,
        "UPDATE ai_embedding_queue AS q SET status = v.status, error = v.error, cost_usd = v.cost, "
        "content = '', finished_at = now() FROM (VALUES %s) AS v(id, status, error, cost) WHERE q.id = v.id",
        rows, template="(%s::bigint, %s, %s, %s::float8)", page_size=2000,
    )


@dataclass
class JobStats:
    pending: int = 0
    done: int = 0
    failed: int = 0
    cost_usd: float = 0.0


def job_stats(cur, job_id: str) -> JobStats:
    cur.execute("SELECT status, count(*), coalesce(sum(cost_usd), 0) FROM ai_embedding_queue WHERE job_id = %s "
                "GROUP BY status", (job_id,))
    st = JobStats()
    for status, n, cost in cur.fetchall():
        setattr(st, status, int(n))
        st.cost_usd += float(cost)
    return st


def job_failures(cur, job_id: str, limit: int = 50) -> list[tuple[str | None, str]]:
    cur.execute("SELECT source, error FROM ai_embedding_queue WHERE job_id = %s AND status = 'failed' "
                "ORDER BY id LIMIT %s", (job_id, limit))
    return [(s, e or "failed") for s, e in cur.fetchall()]


def purge_finished(cur, older_than_seconds: int = 86_400) -> int:
    """Forget finished rows of old jobs (kept a while so a redelivered job counts the same)."""
    cur.execute("DELETE FROM ai_embedding_queue WHERE (status <> 'pending' "
                "AND finished_at < now() - make_interval(secs => %s)) "
                # pending this long: its job is gone for good (no drainer for its target, or
                # never redelivered); a job that comes back stages its chunks again
                "OR (status = 'pending' AND enqueued_at < now() - make_interval(secs => %s))",
                (older_than_seconds, 7 * older_than_seconds))
    return cur.rowcount


# -- roots and refresh --------------------------------------------------------------------------

@dataclass(frozen=True)
class Root:
    id: int
    root: str
    options: dict


def record_root(cur, namespace: str, root: str, options: dict) -> int:
    cur.execute(
        "INSERT INTO ai_embedding_sources (namespace, root, options) VALUES (%s, %s, %s) "
        "ON CONFLICT (namespace, root) DO UPDATE SET options = EXCLUDED.options RETURNING id",
        (namespace, root, psycopg2.extras.Json(options)),
    )
    return int(cur.fetchone()[0])


def roots(cur, namespace: str) -> list[Root]:
    cur.execute("SELECT id, root, options FROM ai_embedding_sources WHERE namespace = %s ORDER BY id", (namespace,))
    return [Root(int(i), r, o or {}) for i, r, o in cur.fetchall()]


def forget_root(cur, root_id: int) -> None:
    cur.execute("DELETE FROM ai_embedding_sources WHERE id = %s", (root_id,))


def mark_refreshed(cur, root_ids: Sequence[int]) -> None:
    cur.execute("UPDATE ai_embedding_sources SET refreshed_at = now() WHERE id = ANY(%s)", (list(root_ids),))


def stale_filter_sql() -> str:
    return ("namespace = %(ns)s AND metadata ->> 'root_id' = ANY(%(roots)s) "
            "AND content_hash NOT IN (SELECT unnest(%(keep)s::text[])) "
            "AND NOT (coalesce(source, '') = ANY(%(protect)s))")


def count_stale(cur, namespace: str, root_ids: Sequence[int], keep: Sequence[str], protect: Sequence[str]) -> int:
    cur.execute(f"SELECT count(*) FROM ai_embeddings WHERE {stale_filter_sql()}",
                {"ns": namespace, "roots": [str(r) for r in root_ids], "keep": list(keep), "protect": list(protect)})
    return int(cur.fetchone()[0])


def delete_stale(cur, namespace: str, root_ids: Sequence[int], keep: Sequence[str], protect: Sequence[str]) -> int:
    """Delete the roots' chunks whose hash is no longer produced by their sources (sources
    in `protect` could not be read this time and keep their chunks)."""
    cur.execute(f"DELETE FROM ai_embeddings WHERE {stale_filter_sql()}",
                {"ns": namespace, "roots": [str(r) for r in root_ids], "keep": list(keep), "protect": list(protect)})
    return cur.rowcount
