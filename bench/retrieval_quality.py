"""Retrieval quality: nDCG@10 of hybrid search against vector-only and keyword-only, on a
labelled query set.

    .venv/bin/python bench/retrieval_quality.py

Data (bench/data/, assembled for this project):
* quality_corpus.jsonl: 100 documents, one per Python standard-library module, each the
  module's docstring and up to 12 of its public functions/classes with their docstrings, as
  Markdown (`# module`, `## name(signature)`). Regenerate with --rebuild-corpus (the text
  then follows the installed Python; the labels refer to module and member names only).
* quality_queries.json: 80 questions a developer would ask, written without copying the
  documents' wording where possible ("copy an entire directory tree recursively"), each
  labelled with the module(s) that answer it and, where the answer is one member, the
  member(s).

Graded relevance per retrieved chunk: 2 when its heading trail names a labelled member of a
labelled module, 1 for any other chunk of a labelled module, 0 otherwise; nDCG@10 against
the ideal ordering of all chunks of the corpus, averaged over queries. Also MRR@10 and
hit@10 (a relevant chunk in the top 10).

The queries are split once, by position: the tuning half (0-based index even) is the one
the hybrid fusion's settings (search.RRF_K, RRF_WEIGHTS, ...) may be chosen on; the
held-out half (odd index) is not to be looked at when choosing. The figures are printed
for all queries, the tuning half and the held-out half side by side, with the target
(hybrid nDCG@10 >= max(vector, keyword)) for all queries and for the held-out half.

Everything goes through the product: the corpus is ingested with `tokpulse.embeddings.ingest`
(structure-aware chunking, default budget) and embedded by the AI gateway's offline model
(all-MiniLM-L6-v2; OPENAI_API_KEY is ignored here so the run is reproducible and free); the
three modes are `tokpulse.embeddings.search` with mode hybrid, vector and keyword."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from search_bench import bench_database, use_database  # noqa: E402

CORPUS = HERE / "data" / "quality_corpus.jsonl"
QUERIES = HERE / "data" / "quality_queries.json"
K = 10


def rebuild_corpus() -> None:
    import importlib
    import inspect

    mods = [json.loads(line)["module"] for line in CORPUS.read_text().splitlines()]
    out = []
    for m in mods:
        mod = importlib.import_module(m)
        parts = [f"# {m}\n\n{(inspect.getdoc(mod) or '')[:2500]}"]
        names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
        k = 0
        for n in names:
            obj = getattr(mod, n, None)
            if obj is None or not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                continue
            d = inspect.getdoc(obj)
            if not d or len(d) < 40:
                continue
            try:
                sig = str(inspect.signature(obj))
            except (TypeError, ValueError):
                sig = "(...)"
            parts.append(f"## {n}{sig if len(sig) < 120 else '(...)'}\n\n{d[:1200]}")
            k += 1
            if k >= 12:
                break
        out.append({"source": f"{m}.md", "module": m, "text": "\n\n".join(parts)})
    CORPUS.write_text("".join(json.dumps(o) + "\n" for o in out))
    print(f"rebuilt {CORPUS} ({len(out)} documents)")


def grade(chunk_source: str, headings: list[str], q: dict) -> int:
    module = chunk_source[:-3] if chunk_source.endswith(".md") else chunk_source
    if module not in q["modules"]:
        return 0
    last = headings[-1] if headings else ""
    if any(last.startswith(f"{s}(") for s in q["symbols"]):
        return 2
    return 1


def dcg(gains: list[int]) -> float:
    return sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(gains))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rebuild-corpus", action="store_true")
    ap.add_argument("--show", type=int, default=0, help="print the N queries where hybrid loses most")
    args = ap.parse_args(argv)
    if args.rebuild_corpus:
        rebuild_corpus()
    os.environ.pop("OPENAI_API_KEY", None)
    os.environ.setdefault("TOKPULSE_LOG_LEVEL", "WARNING")
    docs = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    queries = json.loads(QUERIES.read_text())
    with bench_database() as url:
        use_database(url)
        from tokpulse.ai import reset_gateway
        from tokpulse.embeddings.embedder import GatewayEmbedder
        from tokpulse.embeddings.pipeline import ingest
        from tokpulse.embeddings.search import SearchRequest, search
        from workers import db

        reset_gateway()
        ns = "quality"
        t0 = time.perf_counter()
        res = ingest(
            ns,
            documents=[{"text": d["text"], "source": d["source"], "kind": "markdown"} for d in docs],
            embedder=GatewayEmbedder(caller="bench.retrieval_quality"),
        )
        print(
            f"corpus: {len(docs)} documents -> {res.total} chunks, embedded by {res.model} in "
            f"{time.perf_counter() - t0:.0f}s; {len(queries)} labelled queries"
        )
        with db.transaction() as cur:
            # the statistics autovacuum gathers after a load (the keyword side's IDF comes from them)
            cur.execute("ANALYZE ai_embeddings")
            cur.execute("SELECT source, metadata->'headings' FROM ai_embeddings WHERE namespace = %s", (ns,))
            all_chunks = [(s, h or []) for s, h in cur.fetchall()]
        emb = GatewayEmbedder(caller="bench.retrieval_quality")
        scores: dict[str, list[float]] = {"hybrid": [], "vector": [], "keyword": []}
        mrr: dict[str, list[float]] = {m: [] for m in scores}
        hits: dict[str, list[float]] = {m: [] for m in scores}
        per_query = []
        for q in queries:
            ideal = sorted((grade(s, h, q) for s, h in all_chunks), reverse=True)[:K]
            idcg = dcg(ideal) or 1.0
            row = {"q": q["q"]}
            for mode in scores:
                resp = search(SearchRequest(q["q"], ns, limit=K), embedder=emb, mode=mode)
                gains = [grade(r.source or "", (r.metadata or {}).get("headings") or [], q) for r in resp.results]
                n = dcg(gains) / idcg
                scores[mode].append(n)
                first = next((i for i, g in enumerate(gains) if g > 0), None)
                mrr[mode].append(0.0 if first is None else 1.0 / (first + 1))
                hits[mode].append(1.0 if first is not None else 0.0)
                row[mode] = n
            per_query.append(row)
    subsets = {
        "all": list(range(len(queries))),
        "tuning half": list(range(0, len(queries), 2)),
        "held-out half": list(range(1, len(queries), 2)),
    }

    def mean(values: list[float], idx: list[int]) -> float:
        return statistics.mean(values[i] for i in idx)

    width = 27
    print(f"{'':<10}" + "".join(f"{f'{name} ({len(idx)} queries)':>{width}}" for name, idx in subsets.items()))
    print(f"{'mode':<10}" + f"{'nDCG@10':>9}{'MRR@10':>9}{'hit@10':>9}" * len(subsets))
    for mode in scores:
        print(
            f"{mode:<10}"
            + "".join(
                f"{mean(scores[mode], idx):>9.4f}{mean(mrr[mode], idx):>9.4f}{mean(hits[mode], idx):>9.4f}"
                for idx in subsets.values()
            )
        )
    for name in ("all", "held-out half"):
        idx = subsets[name]
        h = mean(scores["hybrid"], idx)
        v, kw = mean(scores["vector"], idx), mean(scores["keyword"], idx)
        print(
            f"target ({name}): hybrid nDCG@10 >= max(vector, keyword): {h:.4f} vs max({v:.4f}, {kw:.4f}) "
            f"-> {'met' if h >= max(v, kw) else 'NOT met'}"
        )
    if args.show:
        per_query.sort(key=lambda r: r["hybrid"] - max(r["vector"], r["keyword"]))
        for r in per_query[: args.show]:
            print(f"  hybrid {r['hybrid']:.3f} vector {r['vector']:.3f} keyword {r['keyword']:.3f}  {r['q']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
