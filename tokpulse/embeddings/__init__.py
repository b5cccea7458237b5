"""Embeddings pipeline and hybrid semantic search (the spec's components 5 and 6).

    from tokpulse.embeddings import GatewayEmbedder, IngestOptions, ingest, refresh, search, SearchRequest

    emb = GatewayEmbedder(caller="tokpulse.embed_documents")
    result = ingest("docs", paths=["./docs"], embedder=emb)          # IngestResult
    result.lines()   # ['Total: 150', 'Processed: 120', 'Skipped: 30', 'Failed: 0', 'Cost: $0.0024']
    refresh("docs", embedder=emb)                                    # changed chunks only, stale ones deleted
    search(SearchRequest("deploy to production", "docs"), embedder=GatewayEmbedder(caller="tokpulse.search"))

Modules: reader (files and inline documents), chunking (structure-aware, token budget,
overlap), store (staging queue, COPY upserts, refresh SQL), pipeline (ingest, refresh, the
cross-job batcher), search (vector, keyword, hybrid RRF), embedder (the AI gateway
adapter), cli (`tokpulse embed`, `tokpulse search`)."""

from tokpulse.embeddings.chunking import Chunk, chunk_document, content_hash
from tokpulse.embeddings.embedder import EmbedBatch, Embedder, GatewayEmbedder
from tokpulse.embeddings.pipeline import (
    IngestError,
    IngestOptions,
    IngestResult,
    drain_once,
    ingest,
    refresh,
)
from tokpulse.embeddings.reader import Document, Issue, read_inline, read_paths
from tokpulse.embeddings.search import (
    SearchError,
    SearchRequest,
    SearchResponse,
    SearchResult,
    hybrid_search,
    keyword_search,
    search,
    search_dict,
    vector_search,
)

__all__ = [
    "Chunk", "Document", "EmbedBatch", "Embedder", "GatewayEmbedder", "IngestError", "IngestOptions",
    "IngestResult", "Issue", "SearchError", "SearchRequest", "SearchResponse", "SearchResult", "chunk_document",
    "content_hash", "drain_once", "hybrid_search", "ingest", "keyword_search", "read_inline", "read_paths",
    "refresh", "search", "search_dict", "vector_search",
]
