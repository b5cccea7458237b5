"""Search benchmark: latency p50/p95 at 100k chunks of 384 dimensions, and recall@10 of the
HNSW path against exact search.

    .venv/bin/python bench/search_bench.py                 # 100,000 chunks, 300 queries
    .venv/bin/python bench/search_bench.py --chunks 20000  # quicker

What it does, in one run:
1. Creates a scratch database on the fleet's Postgres (DATABASE_URL, else the embedded
   server it starts in a temporary home), applies the project's migrations.
2. Loads N chunks into `ai_embeddings` in one namespace (plus a second, smaller namespace so
   the namespace filter has something to filter): texts are ~800-character pieces of the
   Python sources and docs installed on this machine, vectors come from a fixed fast
   embedder (hashed bag of words + character trigrams, 384 dimensions, unit length). The
   load is the product's own path for a new namespace (tokpulse.embeddings.store): the
   namespace gets its partition, rows arrive by binary COPY, then the partition's HNSW
   index is built (store.HNSW_M, store.HNSW_EF_CONSTRUCTION) and the partition analysed.
   These vectors are a hard case for HNSW: hashed features spread every text over all 384
   dimensions, so neighbours are far less clustered than a language model's.
3. Times the product's search functions (tokpulse.embeddings.search) on Q queries: the
   vector path (HNSW, the ef_search the product sets), the hybrid path (the vector and full
   text sides at the same time on two connections, then RRF) and the keyword path, each
   measured per query (after a warm-up pass of each) from the call to
   the rows in Python (query embedding excluded: it is the provider's time; the fixed
   embedder takes ~0.1 ms). Reports p50/p95/p99.
4. Recall@10 of the vector path against exact search (numpy over all vectors of the
   namespace, float32, cosine).

The scratch database is dropped at the end (--keep to keep it)."""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIMS = 384
_WORD = re.compile(r"\w+")


# -- shared with the other embeddings benches ---------------------------------------------------


class BenchEmbedder:
    """A fixed embedder for the benches: `vector(text)` in subclasses; implements the
    pipeline's `Embedder` protocol and LangChain's `embed_documents`/`embed_query`."""

    target = "bench/fixed"
    dims = DIMS

    def vector(self, text: str) -> np.ndarray:
        raise NotImplementedError

    # tokpulse.embeddings Embedder protocol
    def embed(self, texts: Sequence[str]):
        from tokpulse.embeddings.embedder import EmbedBatch

        provider, model = self.target.split("/", 1)
        return EmbedBatch([self.vector(t) for t in texts], {}, provider, model, self.dims, 0.0, 0)

    def estimate_cost(self, tokens: int) -> float:
        return 0.0

    # LangChain Embeddings interface
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vector(t).tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vector(text).tolist()


class HashEmbedder(BenchEmbedder):
    """A fixed fast embedder: hashed bag of words + hashed character trigrams (384-d, unit).
    Deterministic; texts sharing words are near each other."""

    target = "bench/hash-384"

    def __init__(self, dims: int = DIMS):
        self.dims = dims
        self._slots: dict[str, tuple[int, float]] = {}

    def _slot(self, feature: str) -> tuple[int, float]:
        s = self._slots.get(feature)
        if s is None:
            h = zlib.crc32(feature.encode("utf-8", "surrogatepass"))
            s = (h % self.dims, 1.0 if (h >> 16) & 1 else -1.0)
            if len(self._slots) < 2_000_000:
                self._slots[feature] = s
        return s

    def vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dims, dtype=np.float32)
        low = text.lower()
        for w in _WORD.findall(low):
            i, sign = self._slot(w)
            v[i] += sign
        for j in range(0, max(0, len(low) - 2), 3):
            i, sign = self._slot("#" + low[j : j + 3])
            v[i] += 0.3 * sign
        n = float(np.linalg.norm(v))
        if n == 0:
            v[0] = 1.0
            return v
        return v / n


def corpus_pieces(n: int, size: int = 800) -> list[str]:
    """n distinct ~size-character pieces of the Python sources/docs on this machine (stable
    order: the stdlib first, then site-packages, files sorted by path)."""
    import sysconfig

    roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
    seen: set[str] = set()
    out: list[str] = []
    for root in roots:
        for path in sorted(
            glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
            + glob.glob(os.path.join(root, "**", "*.md"), recursive=True)
            + glob.glob(os.path.join(root, "**", "*.rst"), recursive=True)
        ):
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            text = text.replace("\x00", "")
            for i in range(0, len(text), size):
                piece = text[i : i + size].strip()
                if len(piece) < 100:
                    continue
                h = hashlib.sha1(piece.encode("utf-8", "surrogatepass")).hexdigest()
                if h in seen:
                    continue
                seen.add(h)
                out.append(piece)
                if len(out) >= n:
                    return out
    return out


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A scratch database (migrated) on the fleet's Postgres; dropped afterwards unless
    BENCH_KEEP_DB is set. Uses DATABASE_URL/REDIS_URL when both are set, else starts the
    embedded services in a temporary home (stopped afterwards)."""
    import psycopg2

    from tokpulse.migrate import migrate

    svc = None
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        from tokpulse.embedded import EmbeddedServices

        home = Path(tempfile.mkdtemp(prefix="tokpulse-bench-"))
        svc = EmbeddedServices(home)
        urls = svc.ensure_started()
        os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = urls.database_url, urls.redis_url
        os.environ["TOKPULSE_HOME"] = str(home)
    base = os.environ["DATABASE_URL"]
    name = f"tokpulse_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(base)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = f"{base.rpartition('/')[0]}/{name}"
    try:
        migrate(url)
        yield url
    finally:
        if not os.environ.get("BENCH_KEEP_DB"):
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        if svc is not None:
            svc.stop()
            shutil.rmtree(svc.home, ignore_errors=True)


def use_database(url: str, *, maxconn: int = 4) -> None:
    """Point this process's pool (workers.db) at `url`."""
    from workers import db

    os.environ["DATABASE_URL"] = url
    db.close_pool()
    db.init_pool(maxconn=maxconn, application_name="tokpulse-bench", dsn=url)


def pct(values: Sequence[float], p: float) -> float:
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


# -- the search bench ------------------------------------------------------------------------------

def load(url: str, texts: list[str], vectors: np.ndarray, namespace: str, other: int) -> float:
    """The product's bulk path for a new namespace (tokpulse.embeddings.store): its own
    partition, binary COPY of the rows, then the HNSW index built over them (plus ANALYZE)."""
    import psycopg2
    from pgvector.psycopg2 import register_vector

    from tokpulse.embeddings import store
    from tokpulse.embeddings.chunking import content_hash

    t0 = time.perf_counter()
    conn = psycopg2.connect(url)
    register_vector(conn)
    for ns, lo, hi in ((namespace + "-other", 0, other), (namespace, other, len(texts))):
        with conn, conn.cursor() as cur:
            assert store.ensure_partition(cur, ns) == store.partition_name(ns)
        with conn, conn.cursor() as cur:
            rows = [(ns, texts[i], content_hash(texts[i]), f"corpus/{i}", {"chunk": i}, "bench", "hash-384", DIMS,
                     vectors[i]) for i in range(lo, hi)]
            store.copy_rows(cur, store.partition_name(ns), store._EMB_COLUMNS, rows)
        with conn, conn.cursor() as cur:
            built = store.ensure_vector_index(cur, ns)
            assert built is not None and built.rows == hi - lo
    conn.close()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--limit", type=int, default=10)
    args = ap.parse_args(argv)

    emb = HashEmbedder()
    t0 = time.perf_counter()
    texts = corpus_pieces(args.chunks)
    if len(texts) < args.chunks:
        print(f"note: only {len(texts)} distinct pieces available on this machine")
    vectors = np.stack([emb.vector(t) for t in texts])
    print(
        f"corpus: {len(texts)} chunks of ~800 chars, {DIMS}-d vectors from the fixed hash embedder "
        f"({time.perf_counter() - t0:.1f}s to read and embed)"
    )
    ns = "bench"
    other = min(5000, len(texts) // 20)  # the first `other` rows go to a second namespace
    rng = np.random.default_rng(7)
    qidx = rng.choice(np.arange(other, len(texts)), size=min(args.queries, len(texts) - other), replace=False)
    queries = []
    for i in qidx:  # a query: a few words from a chunk, so there is something to find
        words = _WORD.findall(texts[i])
        start = int(rng.integers(0, max(1, len(words) - 8)))
        queries.append(" ".join(words[start : start + 8]) or texts[i][:40])

    with bench_database() as url:
        secs = load(url, texts, vectors, ns, other)
        from tokpulse.embeddings import store

        print(f"load: {len(texts)} rows by binary COPY + HNSW build (m={store.HNSW_M}, ef_construction="
              f"{store.HNSW_EF_CONSTRUCTION}) in {secs:.1f}s")
        use_database(url)
        from tokpulse.embeddings.search import hybrid_search, keyword_search, vector_search, vector_sql
        from workers import db

        ns_vecs = vectors[other:]
        qv = [emb.vector(q) for q in queries]
        # exact top-10 by cosine over the namespace (vectors are unit length)
        exact = []
        for q in qv:
            sims = ns_vecs @ q
            top = np.argpartition(-sims, args.limit)[: args.limit]
            exact.append({f"corpus/{other + int(j)}" for j in top})

        def timed(fn):
            lat, got = [], []
            with db.connection() as conn:
                for k, q in enumerate(queries):
                    t = time.perf_counter()
                    with conn.cursor() as cur:
                        res = fn(cur, q, qv[k])
                    conn.commit()
                    lat.append((time.perf_counter() - t) * 1000)
                    got.append(res)
            return lat, got

        for fn in (  # one warm-up pass of each path: steady-state latency, not first touches
            lambda cur, q, v: vector_search(cur, ns, DIMS, v, limit=args.limit),
            lambda cur, q, v: hybrid_search(cur, ns, DIMS, v, q, limit=args.limit),
            lambda cur, q, v: keyword_search(cur, ns, q, limit=args.limit),
        ):
            timed(fn)
        v_lat, v_res = timed(lambda cur, q, v: vector_search(cur, ns, DIMS, v, limit=args.limit))
        h_lat, _ = timed(lambda cur, q, v: hybrid_search(cur, ns, DIMS, v, q, limit=args.limit))
        k_lat, _ = timed(lambda cur, q, v: keyword_search(cur, ns, q, limit=args.limit))
        recall = statistics.mean(
            len({r.source for r in res} & ex) / args.limit for res, ex in zip(v_res, exact, strict=True)
        )
        with db.transaction() as cur:
            cur.execute("EXPLAIN " + vector_sql(DIMS), {"q": qv[0], "ns": ns, "k": args.limit})
            plan = " ".join(r[0] for r in cur.fetchall())
        uses = f"{store.partition_name(ns)}_hnsw" in plan
        print(
            f"queries: {len(queries)} (8-word phrases from random chunks), limit {args.limit}, namespace "
            f"{len(texts) - other} rows of {len(texts)} ({other} in another namespace)"
        )
        print(f"plan uses the HNSW index: {'yes' if uses else 'NO'}")
        for label, lat in (
            ("vector (HNSW)", v_lat),
            ("hybrid (vector+fts+RRF)", h_lat),
            ("keyword (fts)", k_lat),
        ):
            print(f"  {label:<24} p50 {pct(lat, 50):6.2f} ms   p95 {pct(lat, 95):6.2f} ms   p99 {pct(lat, 99):6.2f} ms")
        search_mod = sys.modules["tokpulse.embeddings.search"]

        print(
            f"recall@{args.limit} of the HNSW path vs exact search: {recall:.4f} (hnsw.ef_search "
            f"{search_mod.EF_SEARCH}, the product's setting)"
        )
        product_ef = search_mod.EF_SEARCH
        sweep = []
        for ef in (40, 100, 200, 400, 800):
            search_mod.EF_SEARCH = ef
            lat, res = timed(lambda cur, q, v: vector_search(cur, ns, DIMS, v, limit=args.limit))
            rec = statistics.mean(
                len({r.source for r in rr} & ex) / args.limit for rr, ex in zip(res, exact, strict=True)
            )
            sweep.append(f"ef_search {ef}: recall {rec:.4f}, p95 {pct(lat, 95):.2f} ms")
        search_mod.EF_SEARCH = product_ef
        print("  sweep: " + "; ".join(sweep))
        print(
            f"targets: p95 <= 20 ms (vector: {'met' if pct(v_lat, 95) <= 20 else 'NOT met'}, hybrid: "
            f"{'met' if pct(h_lat, 95) <= 20 else 'NOT met'}); recall@10 >= 0.95 "
            f"({'met' if recall >= 0.95 else 'NOT met'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
