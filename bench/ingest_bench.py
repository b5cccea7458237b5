"""Ingest benchmark: chunks/s into Postgres, the pipeline against LangChain's PGVector and
LlamaIndex's PGVectorStore, side by side in one run, same corpus, same database, same fixed
fast embedder.

    .venv/bin/python bench/ingest_bench.py                 # 5,000 chunks
    .venv/bin/python bench/ingest_bench.py --chunks 20000

The embedder is the same object for everybody: a deterministic unit vector per text
(384-d, seeded by a hash of the text; ~10 us a text), so the figures measure the paths
into Postgres rather than a model. Texts are ~700-character pieces of the Python sources
and docs on this machine, written in batches of 512. Everything writes into one scratch
database (migrated like production).

What each side does per chunk:
* ours (`tokpulse.embeddings.ingest`): normalise and chunk the document (one chunk each
  here), hash it, look it up (dedup), redact it with the privacy guard, stage it (binary
  COPY), drain the staging queue in batches (claim with SKIP LOCKED, embed, binary COPY into
  a temp table, INSERT ... ON CONFLICT into `ai_embeddings`, mark done). A new namespace gets
  its own partition, loaded with its full-text column (generated tsvector, GIN) and unique
  key maintained, and its HNSW index (cosine) built when the load is drained.
* LangChain (`langchain_postgres.PGVector.add_texts`): embed, one multi-row INSERT ... ON
  CONFLICT per call through SQLAlchemy into `langchain_pg_embedding`. As shipped, its table
  has no vector index and no full-text column; the run is repeated with an HNSW index
  (cosine) on its table.
* LlamaIndex (`llama_index.vector_stores.postgres.PGVectorStore.add`, hybrid_search=True,
  hnsw_kwargs): the nodes carry the same vectors; one ORM session per batch. Its table has
  a generated tsvector column with a GIN index and an HNSW index: the same index work as
  ours.

Also reported: a second pass over the unchanged corpus (ours skips every chunk; LangChain
inserts them again under new ids), and ours with two concurrent jobs (the embeddings pool
runs two)."""

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

from search_bench import BenchEmbedder, bench_database, corpus_pieces, use_database  # noqa: E402

BATCH = 512
DIMS = 384


class FastEmbedder(BenchEmbedder):
    """The fixed fast embedder: a unit vector per text from a generator seeded by the text's
    hash (deterministic, ~10 us a text)."""

    target = "bench/fast-384"

    def vector(self, text: str):
        import hashlib

        import numpy as np

        seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
        v = np.random.Generator(np.random.PCG64(seed)).standard_normal(DIMS, dtype=np.float32)
        return v / np.linalg.norm(v)


BUILDS: list = []  # the HNSW builds of our runs (store.IndexBuild), to show their share of the time


def _record_builds() -> None:
    from tokpulse.embeddings import store

    if getattr(store.ensure_vector_index, "_bench", False):
        return
    real = store.ensure_vector_index

    def recording(cur, namespace):
        b = real(cur, namespace)
        if b is not None:
            BUILDS.append(b)
        return b

    recording._bench = True
    store.ensure_vector_index = recording


def run_ours(texts: list[str], namespace: str, emb: FastEmbedder, jobs: int = 1) -> tuple[float, object]:
    from tokpulse.embeddings.chunking import count_tokens
    from tokpulse.embeddings.pipeline import IngestOptions, ingest
    from tokpulse.privacy import get_privacy_guard

    _record_builds()
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


def run_langchain(texts: list[str], url: str, emb: FastEmbedder, *, hnsw: bool, name: str) -> float:
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


def run_llamaindex(texts: list[str], url: str, emb: FastEmbedder) -> float:
    warnings.filterwarnings("ignore")
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.postgres import PGVectorStore

    store = PGVectorStore(
        connection_string=url.replace("postgresql://", "postgresql+psycopg2://"),
        async_connection_string=url.replace("postgresql://", "postgresql+psycopg://"),
        table_name="bench_llamaindex",
        embed_dim=DIMS,
        hybrid_search=True,
        text_search_config="english",
        use_jsonb=True,
        hnsw_kwargs={"hnsw_m": 16, "hnsw_ef_construction": 64, "hnsw_ef_search": 40,
                     "hnsw_dist_method": "vector_cosine_ops"},
    )
    store.add([TextNode(text="warm up", embedding=emb.vector("warm up").tolist())])  # creates the table
    t0 = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        part = texts[i : i + BATCH]
        vecs = emb.embed_documents(part)
        store.add([TextNode(text=t, embedding=v, metadata={"source": f"corpus/{i + j}", "chunk": i + j})
                   for j, (t, v) in enumerate(zip(part, vecs, strict=True))])
    return time.perf_counter() - t0


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
    emb = FastEmbedder()
    t0 = time.perf_counter()
    for t in texts:
        emb.vector(t)
    embed_secs = time.perf_counter() - t0
    print(
        f"corpus: {n} chunks (~700 characters of Python sources/docs each); the fixed embedder alone takes "
        f"{embed_secs:.2f}s for them ({n / embed_secs:,.0f} chunks/s)"
    )
    rows: dict[str, tuple[int, float]] = {}
    with bench_database() as url:
        use_database(url)
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        secs, res = run_ours(texts, ns, emb)
        r = res[0]
        assert r.failed == 0 and r.processed == r.total, r.as_dict()
        rows["ours"] = (r.total, secs)
        build_secs = sum(b.seconds for b in BUILDS if b.namespace == ns)
        secs2, res2 = run_ours(texts, ns, emb)
        assert res2[0].skipped == r.total
        again_ours = secs2

        rows["lc_plain"] = (n, run_langchain(texts, url, emb, hnsw=False, name="bench_plain"))
        rows["lc_hnsw"] = (n, run_langchain(texts, url, emb, hnsw=True, name="bench_hnsw"))
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
        try:
            rows["llama"] = (n, run_llamaindex(texts, url, emb))
        except ImportError:
            print("(llama-index-vector-stores-postgres is not installed: LlamaIndex skipped)")

        ns2 = f"bench-{uuid.uuid4().hex[:6]}"
        secs_par, res_par = run_ours(texts, ns2, emb, jobs=2)
        rows["ours2"] = (sum(x.total for x in res_par), secs_par)

    labels = {
        "ours": "tokpulse ingest (new namespace: fts+GIN, HNSW built)",
        "ours2": "tokpulse ingest, 2 concurrent jobs",
        "lc_plain": "LangChain PGVector.add_texts (no vector index)",
        "lc_hnsw": "LangChain PGVector.add_texts + HNSW index",
        "llama": "LlamaIndex PGVectorStore.add (fts+GIN, HNSW)",
    }
    print(f"{'path':<56}{'chunks':>8}{'seconds':>10}{'chunks/s':>11}")
    for key, label in labels.items():
        if key in rows:
            count, secs = rows[key]
            print(f"{label:<56}{count:>8}{secs:>10.2f}{count / secs:>11,.0f}")

    def rate(key: str) -> float:
        return rows[key][0] / rows[key][1]

    ours = rate("ours")
    for key in ("lc_plain", "lc_hnsw", "llama"):
        if key in rows:
            both = rate("ours2") / rate(key)
            print(f"ratio ours / {labels[key]:<50} {ours / rate(key):6.2f}x   (2 jobs: {both:.2f}x)")
    print(
        f"second pass, unchanged corpus: ours {again_ours:.2f}s ({n / again_ours:,.0f} chunks/s, 0 embedded, "
        f"0 written) vs LangChain {again_lc:.2f}s ({n / again_lc:,.0f} chunks/s, {n} rows inserted again): "
        f"{again_lc / again_ours:.1f}x"
    )
    print(f"of ours {rows['ours'][1]:.2f}s, building the namespace's HNSW index (parallel, m=16, ef_construction=128) "
          f"took {build_secs:.2f}s; 5x the LangChain+HNSW rate leaves {rows['lc_hnsw'][1] / 5:.2f}s for everything")
    same = [k for k in ("llama", "lc_hnsw") if k in rows]
    verdicts = ", ".join(f"{'met' if ours >= 5 * rate(k) else 'NOT met'} against {labels[k]}" for k in same)
    print(f"target: ours >= 5x the LangChain/LlamaIndex path on the same work (vector index): {verdicts}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKPULSE_LOG_LEVEL", "WARNING")
    sys.exit(main())
