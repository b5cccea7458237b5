"""Ingest benchmark: chunks/s into Postgres, the pipeline against LangChain's PGVector,
side by side in one run, same corpus, same database, same fixed fast embedder.

    .venv/bin/python bench/ingest_bench.py                 # 5,000 chunks
    .venv/bin/python bench/ingest_bench.py --chunks 20000

The peer is `langchain_postgres.PGVector.add_texts` (the `bench` extra), fed the same texts
in the same batch size, with the same embedder object (a hashed bag of words, 384-d; see
bench/search_bench.py). Both write into one scratch database (migrated like production).

What each side does per chunk:
* ours (`tokpulse.embeddings.ingest`): normalise and chunk the document (one chunk each
  here), hash it, look it up (dedup), redact it with the privacy guard, stage it
  (binary COPY), drain the staging queue in batches (claim with SKIP LOCKED, embed, binary
  COPY into a temp table, INSERT ... ON CONFLICT into `ai_embeddings`, mark done). The
  table maintains its HNSW index (cosine, 384), the GIN index on the generated tsvector,
  the unique (namespace, content_hash) index and the one-dimension-per-namespace trigger.
* LangChain: embed, one multi-row INSERT ... ON CONFLICT per add_texts call through
  SQLAlchemy into `langchain_pg_embedding`. As shipped, its table has no vector index
  (search is a sequential scan) and no full-text column; the run is repeated with an HNSW
  index (cosine) added to its table, which is the same vector-index work ours does.

Also reported: the embedder's own share of the time, a second pass over the unchanged
corpus (ours skips every chunk; LangChain inserts them again under new ids), and ours with
two concurrent jobs (the embeddings pool runs two)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search_bench import HashEmbedder, bench_database, corpus_pieces, use_database  # noqa: E402

BATCH = 512


def run_ours(texts: list[str], namespace: str, emb: HashEmbedder, jobs: int = 1) -> tuple[float, object]:
    from tokpulse.embeddings.chunking import count_tokens
    from tokpulse.embeddings.pipeline import IngestOptions, ingest
    from tokpulse.privacy import get_privacy_guard

    count_tokens("warm up")  # one-time loads of a long-lived worker, not per-chunk work
    get_privacy_guard().redact("warm up")
    opts = IngestOptions(chunk_tokens=1024, overlap_tokens=0, batch_size=BATCH)
    docs = [{"text": t, "source": f"corpus/{i}", "kind": "text"} for i, t in enumerate(texts)]
    results: list = []
    t0 = time.perf_counter()
    if jobs == 1:
        results.append(ingest(namespace, documents=docs, embedder=emb, options=opts))
    else:
        parts = [docs[i::jobs] for i in range(jobs)]
        threads = [
            threading.Thread(
                target=lambda p=p: results.append(ingest(namespace, documents=p, embedder=emb, options=opts))
            )
            for p in parts
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return time.perf_counter() - t0, results


def run_langchain(texts: list[str], url: str, emb: HashEmbedder, *, hnsw: bool, name: str) -> float:
    warnings.filterwarnings("ignore")
    import psycopg
    from langchain_postgres import PGVector

    store = PGVector(
        embeddings=emb,
        collection_name=name,
        connection=url.replace("postgresql://", "postgresql+psycopg://"),
        use_jsonb=True,
        embedding_length=384,
        pre_delete_collection=True,
    )
    if hnsw:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(
                "CREATE INDEX IF NOT EXISTS bench_lc_hnsw ON langchain_pg_embedding "
                "USING hnsw (embedding vector_cosine_ops)"
            )
    t0 = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        part = texts[i : i + BATCH]
        store.add_texts(part, metadatas=[{"source": f"corpus/{i + j}", "chunk": i + j} for j in range(len(part))])
    secs = time.perf_counter() - t0
    return secs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=5000)
    args = ap.parse_args(argv)
    try:
        import langchain_postgres  # noqa: F401
    except ImportError:
        print("langchain-postgres is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    texts = corpus_pieces(args.chunks, size=700)
    n = len(texts)
    emb = HashEmbedder()
    t0 = time.perf_counter()
    for t in texts:
        emb.vector(t)
    embed_secs = time.perf_counter() - t0
    emb = HashEmbedder()  # cold cache again, the same for everybody
    print(
        f"corpus: {n} chunks (~700 characters of Python sources/docs each); the fixed embedder alone takes "
        f"{embed_secs:.2f}s for them ({n / embed_secs:,.0f} chunks/s)"
    )
    rows = []
    with bench_database() as url:
        use_database(url)
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        secs, res = run_ours(texts, ns, emb)
        r = res[0]
        assert r.failed == 0 and r.processed == r.total, r.as_dict()
        rows.append(("tokpulse ingest (HNSW + GIN fts + dedup, online)", r.total, secs))
        secs2, res2 = run_ours(texts, ns, emb)
        assert res2[0].skipped == r.total
        again_ours = secs2

        lc_plain = run_langchain(texts, url, emb, hnsw=False, name="bench_plain")
        rows.append(("LangChain PGVector.add_texts (no vector index)", n, lc_plain))
        lc_hnsw = run_langchain(texts, url, emb, hnsw=True, name="bench_hnsw")
        rows.append(("LangChain PGVector.add_texts + HNSW index", n, lc_hnsw))
        from langchain_postgres import PGVector

        store = PGVector(
            embeddings=emb,
            collection_name="bench_hnsw",
            connection=url.replace("postgresql://", "postgresql+psycopg://"),
            use_jsonb=True,
            embedding_length=384,
        )
        t0 = time.perf_counter()
        for i in range(0, n, BATCH):
            store.add_texts(texts[i : i + BATCH])
        again_lc = time.perf_counter() - t0

        ns2 = f"bench-{uuid.uuid4().hex[:6]}"
        secs_par, res_par = run_ours(texts, ns2, emb, jobs=2)
        total_par = sum(x.total for x in res_par)
        rows.append(("tokpulse ingest, 2 concurrent jobs", total_par, secs_par))

    print(f"{'path':<52}{'chunks':>8}{'seconds':>10}{'chunks/s':>11}")
    for label, count, secs in rows:
        print(f"{label:<52}{count:>8}{secs:>10.2f}{count / secs:>11,.0f}")
    ours = rows[0][1] / rows[0][2]
    print(f"ratio ours / LangChain (no index):   {ours / (n / lc_plain):.2f}x")
    print(f"ratio ours / LangChain (+HNSW):      {ours / (n / lc_hnsw):.2f}x")
    print(f"ratio ours with 2 jobs / LangChain (+HNSW): {(rows[3][1] / rows[3][2]) / (n / lc_hnsw):.2f}x")
    print(
        f"second pass, unchanged corpus: ours {again_ours:.2f}s ({n / again_ours:,.0f} chunks/s, 0 embedded, "
        f"0 written) vs LangChain {again_lc:.2f}s ({n / again_lc:,.0f} chunks/s, {n} rows inserted again): "
        f"{again_lc / again_ours:.1f}x"
    )
    print(
        f"target: ours >= 5x the LangChain path on the same work: "
        f"{'met' if ours >= 5 * (n / lc_hnsw) else 'NOT met'} (+HNSW peer), "
        f"{'met' if ours >= 5 * (n / lc_plain) else 'NOT met'} (peer without a vector index)"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKPULSE_LOG_LEVEL", "WARNING")
    sys.exit(main())
