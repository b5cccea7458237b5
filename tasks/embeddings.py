"""Embeddings pipeline and search jobs, on the `embeddings` queue.

Outside callers send them by name:

    send_task("tokpulse.embed_documents", args=["docs"],
              kwargs={"documents": [{"text": "# Deploy\\n...", "source": "deploy.md"}]}, queue="embeddings")
    send_task("tokpulse.embed_documents", args=["docs"], kwargs={"paths": ["/srv/docs"]}, queue="embeddings")
    send_task("tokpulse.refresh_embeddings", args=["docs"], queue="embeddings")
    send_task("tokpulse.search", args=[{"query": "deploy to production", "namespace": "docs"}],
              queue="embeddings")

`paths` are read by the worker (they must exist on its machine). The broker is the trust
boundary: jobs carry no token (the HTTP API is where tokens are checked).

Ingest jobs are idempotent (acks-late, requeued when their process dies): chunks are
staged per (job id, namespace, content hash) and stored with ON CONFLICT on
(namespace, content hash); see tokpulse.embeddings.pipeline for the batcher. A shared
rate limit that would hold a job longer than `ai.max_wait_seconds` re-schedules it
instead of holding the worker slot; its staged chunks wait (or are drained by other
jobs) meanwhile. Such deferrals have their own cap and leave `max_retries` for real
failures (tokpulse.ai.deferral). Documents and queries may be personal data: their arguments are kept out
of events and logs."""

from __future__ import annotations

from typing import Any

import psycopg2

from tokpulse.ai import ProviderUnavailable, RateLimitWait, defer_task
from workers import names
from workers.app import app
from workers.base import fleet_task

LINGER_SECONDS = 0.25  # let chunks of jobs arriving together share the first provider request
# A namespace's first load ends with its HNSW index being built (pgvector: rows first, index
# after). In a worker that is a task of its own: a large namespace's build can outlast an
# ingest job's time limit (600 s), and a build killed there would be redone on every
# redelivery. These limits stay under the broker's visibility timeout (2,520 s).
BUILD_SOFT_TIME_LIMIT = 2100
BUILD_TIME_LIMIT = 2160


def schedule_index_build(namespace: str) -> None:
    """Send tokpulse.build_vector_index for `namespace` (routed to the embeddings queue)."""
    app.send_task(names.BUILD_VECTOR_INDEX, args=[namespace])


def _progress(task):
    def report(done: int, total: int, phase: str) -> None:
        if total:
            task.report_progress(done, total, phase=phase)

    return report


@fleet_task(app, names.EMBED_DOCUMENTS, idempotent=True, record_run=True, bind=True, sensitive_args=True,
            retry_for=(ProviderUnavailable, psycopg2.OperationalError), max_retries=5)
def embed_documents(self, namespace: str, documents: list[Any] | None = None, paths: list[str] | None = None,
                    options: dict[str, Any] | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Embed inline documents and/or worker-readable paths into `namespace`; returns
    {"Total", "Processed", "Skipped", "Failed", "Cost", ...}."""
    from tokpulse.embeddings.embedder import GatewayEmbedder
    from tokpulse.embeddings.pipeline import IngestOptions, ingest

    opts = IngestOptions.from_dict({"linger_seconds": LINGER_SECONDS, **(options or {})})
    try:
        return ingest(namespace, documents=documents, paths=paths, options=opts, dry_run=bool(dry_run),
                      embedder=GatewayEmbedder(caller=names.EMBED_DOCUMENTS), job_id=self.request.id,
                      progress=_progress(self), build_index=schedule_index_build).as_dict()
    except RateLimitWait as exc:
        raise defer_task(self, exc) from None


@fleet_task(app, names.REFRESH_EMBEDDINGS, idempotent=True, record_run=True, bind=True,
            retry_for=(ProviderUnavailable, psycopg2.OperationalError), max_retries=5)
def refresh_embeddings(self, namespace: str, dry_run: bool = False) -> dict[str, Any]:
    """Re-read the namespace's recorded paths, embed what changed, delete what is gone."""
    from tokpulse.embeddings.embedder import GatewayEmbedder
    from tokpulse.embeddings.pipeline import IngestOptions, refresh

    try:
        return refresh(namespace, options=IngestOptions(linger_seconds=LINGER_SECONDS), dry_run=bool(dry_run),
                       embedder=GatewayEmbedder(caller=names.EMBED_DOCUMENTS), job_id=self.request.id,
                       progress=_progress(self), build_index=schedule_index_build).as_dict()
    except RateLimitWait as exc:
        raise defer_task(self, exc) from None


@fleet_task(app, names.SEARCH, idempotent=True, bind=True, sensitive_args=True,
            retry_for=(ProviderUnavailable, psycopg2.OperationalError), max_retries=3)
def search(self, request: dict[str, Any]) -> dict[str, Any]:
    """The spec's search request ({query, namespace, limit, threshold, hybrid}) -> {"results": [...], ...}.
    A bad request fails with SearchError (one line); an unknown namespace gives no results."""
    from tokpulse.embeddings.embedder import GatewayEmbedder
    from tokpulse.embeddings.search import search_dict

    try:
        return search_dict(request, embedder=GatewayEmbedder(caller=names.SEARCH))
    except RateLimitWait as exc:
        raise defer_task(self, exc) from None


@fleet_task(app, names.BUILD_VECTOR_INDEX, idempotent=True, record_run=True,
            retry_for=(psycopg2.OperationalError,), max_retries=3,
            soft_time_limit=BUILD_SOFT_TIME_LIMIT, time_limit=BUILD_TIME_LIMIT)
def build_vector_index(namespace: str) -> dict[str, Any]:
    """Build the HNSW index of a namespace's own partition once its load is drained (a no-op
    when it is built, still loading, or lives in the DEFAULT partition)."""
    from tokpulse.embeddings.pipeline import build_unless_loading

    loading, b = build_unless_loading(namespace)
    if loading:
        return {"namespace": namespace, "built": False, "reason": "still loading"}
    if b is None:
        return {"namespace": namespace, "built": False, "reason": "nothing to build"}
    return {"namespace": namespace, "built": True, "rows": b.rows, "dims": b.dims, "seconds": round(b.seconds, 2)}
